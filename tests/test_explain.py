"""Correlate and explain: one scenario per SPEC §7 cause, each built the way it happens.

Each scenario creates what AWS holds — IAM roles and policies, OIDC providers, an EKS
cluster with a node group — in moto running in server mode on 127.0.0.1 (real boto3
over HTTP), writes the CloudTrail records AWS writes when the failure happens (shaped
after the real ones in ../shared/data/real, built with ``trailscan.generate``), and the
cluster's service accounts as ``kubectl get serviceaccounts -A -o json`` prints them,
all through the builder ``trailscan demo`` seeds its own account with
(``trailscan.demo.World``).

Every scenario is explained twice:

* **live** — the inventory read through boto3 from moto (``load_iam_live`` for the
  roles the failures involve, ``load_eks_live`` for the cluster), as ``trailscan since``
  does with AWS credentials;
* **offline** — the real ``trailscan since --source files`` command, in process, with
  ``--iam`` (``get-account-authorization-details`` and the OIDC provider list saved from
  moto), ``--service-accounts`` and ``--policies`` (``describe-organization``'s answer: the
  account is in no organization) files, ``--offline``, and no AWS endpoint or credentials
  in the environment.

Both must give the same finding: kind, cause, workload (with its resolution), count and
fix.  Offline there is no EKS inventory, so the cluster is named by its OIDC issuer id
and node roles are known only from the records themselves.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support.moto_server import MotoServer
from trailscan.cli import main
from trailscan.demo import BOTO3, World
from trailscan.findings import findings_document
from trailscan.generate import (
    RoleSession,
    access_key_id,
    api_call,
    iso,
    pod_identity_agent_call,
    pod_identity_assume_role,
)
from trailscan.identity import issuer_id
from trailscan.model import Window
from trailscan.pipeline import InventoryRequest, investigate
from trailscan.sources.files import ingest_files
from trailscan.store import Store

ACCOUNT = "123456789012"  # moto's account
REGION = "eu-west-1"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=24), NOW + timedelta(minutes=1))
OLD_BOTO3 = "Boto3/1.9.100 Python/3.7.3 Linux/4.14.133-113.105.amzn2.x86_64 Botocore/1.12.100"
EC2_SILENT = "You are not authorized to perform this operation."
EC2_ENCODED = EC2_SILENT + " Encoded authorization failure message: 4pZQ0E2hI1tYf7u8-hY3rEXAMPLEencodedMESSAGE"
NODE_ROLE = "prod-node-group-role"
OLD_ISSUER_ID = "0DDC1A57E2B0A3D5C1F0E9D8C7B6A594"


def trust(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def prod_world(moto: MotoServer, *, oidc_provider: bool = True) -> World:
    """One AWS account in moto with an EKS cluster ``prod`` (the demo's builder, with the
    options of these scenarios), and what CloudTrail recorded of failures that are no findings."""
    w = World(moto.session(REGION), now=NOW, rng=random.Random(5))
    w.cluster(
        "prod", node_role=NODE_ROLE, subnets=("subnet-0a1b2c3d",), oidc_provider=oidc_provider,
        node_policy={"node": policy(
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances", "ecr:GetAuthorizationToken"], "Resource": "*"})},
    )
    noise(w)
    return w


def noise(w: World) -> None:
    """Failures that are not authorization failures: never findings."""
    worker = w.session_of(f"arn:aws:iam::{ACCOUNT}:role/batch")
    w.calls(worker, "ec2.amazonaws.com", "DescribeInstances", count=4, code="Client.RequestLimitExceeded",
            message="Request limit exceeded.")
    w.calls(worker, "sts.amazonaws.com", "GetCallerIdentity", count=3, code="ThrottlingException", message="Rate exceeded")
    w.calls(worker, "iam.amazonaws.com", "GetRole", count=2, code="NoSuchEntity",
            message="The role with name missing cannot be found.")
    w.calls(worker, "s3.amazonaws.com", "GetBucketPolicy", count=2, code="NoSuchBucketPolicy",
            message="The bucket policy does not exist")


def write_files(w: World, folder: Path) -> dict[str, Path]:
    """The trail, ``kubectl get serviceaccounts -A -o json``, the IAM document and
    ``describe-organization``'s answer, saved."""
    folder.mkdir(parents=True, exist_ok=True)
    trail = folder / f"{ACCOUNT}_CloudTrail_{REGION}_20261128T0600Z_trailscan.json"
    trail.write_text(json.dumps({"Records": w.records}))
    accounts = folder / "serviceaccounts.json"
    accounts.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": w.service_accounts}))
    iam = folder / "iam.json"
    iam.write_text(json.dumps(authorization_details(w), default=str))
    # `aws organizations describe-organization 2>&1`: AWS's answer for an account in no organization.
    organization = folder / "organization.txt"
    organization.write_text("\nAn error occurred (AWSOrganizationsNotInUseException) when calling the "
                            "DescribeOrganization operation: Your account is not a member of an organization.\n")
    return {"trail": trail, "service_accounts": accounts, "iam": iam, "organization": organization}


def authorization_details(w: World) -> dict:
    """``aws iam get-account-authorization-details`` with the account's OIDC providers
    (``list-open-id-connect-providers`` + ``get-open-id-connect-provider``) beside it."""
    document: dict[str, list] = {"RoleDetailList": [], "Policies": []}
    for page in w.iam.get_paginator("get_account_authorization_details").paginate():
        document["RoleDetailList"].extend(page["RoleDetailList"])
        document["Policies"].extend(page["Policies"])
    providers = []
    for entry in w.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        detail = w.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])
        providers.append({"Arn": entry["Arn"], "Url": detail["Url"], "ClientIDList": detail["ClientIDList"],
                          "ThumbprintList": detail["ThumbprintList"]})
    document["OpenIDConnectProviderList"] = providers
    return document


@dataclass
class Expect:
    kind: str
    cause: str
    count: int
    namespace: str | None = None
    service_account: str | None = None
    resolution: str = "exact"
    role: str | None = None  # role name, when the finding names one
    fix: tuple[str, ...] = ()
    explanation: tuple[str, ...] = ()
    candidates: tuple[str, ...] = ()
    cluster: str | None = "prod"  # live; offline an IRSA cluster is named by its issuer id
    world: dict = field(default_factory=dict)


# -- the scenarios, one per cause ------------------------------------------------------------------


def invalid_role_arn(w: World) -> Expect:
    w.sa("payments", "api", role_arn="payments-api")
    w.refused_web_identity("payments", "api", "payments-api", count=2, code="ValidationError", message="Request ARN is invalid")
    return Expect("irsa", "INVALID_ROLE_ARN", 2, "payments", "api",
                  fix=("kubectl annotate serviceaccount -n payments api eks.amazonaws.com/role-arn=", "--overwrite",
                       "kubectl rollout restart"),
                  explanation=("not a valid role ARN",))


def token_expired(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=3, code="ExpiredTokenException",
                   message="Token expired: current date/time 1764309600 must be before the expiration date/time 1764306000")
    return Expect("irsa", "TOKEN_EXPIRED", 3, "payments", "api", role="payments-api",
                  fix=("re-read its projected token", "kubectl rollout restart"), explanation=("had expired",))


def idp_unreachable(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=1, code="IDPCommunicationError",
                   message="Couldn't retrieve verification key from your identity provider, please reference "
                           "AssumeRoleWithWebIdentity documentation for requirements")
    return Expect("irsa", "IDP_UNREACHABLE", 1, "payments", "api", role="payments-api",
                  fix=("Retry", ".well-known/openid-configuration"))


def oidc_provider_missing(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=4, code="InvalidIdentityToken",
                   message=f"No OpenIDConnect provider found in your account for https://{w.issuer}")
    return Expect("irsa", "OIDC_PROVIDER_MISSING", 4, "payments", "api", role="payments-api",
                  fix=("eksctl utils associate-iam-oidc-provider --cluster", "--approve",
                       f"aws iam create-open-id-connect-provider --url https://{w.issuer} --client-id-list sts.amazonaws.com"),
                  world={"oidc_provider": False})


def oidc_thumbprint_mismatch(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=2, code="InvalidIdentityToken",
                   message="OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint")
    return Expect("irsa", "OIDC_THUMBPRINT_MISMATCH", 2, "payments", "api", role="payments-api",
                  fix=(("aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn "
                       f"{w.provider_arn}"),))


def sa_not_found(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "worker", role_arn=arn)
    w.sa("default", "default")
    w.refused_web_identity("payments", "api", arn, count=2)
    return Expect("irsa", "SA_NOT_FOUND", 2, "payments", "api", role="payments-api",
                  fix=("kubectl create serviceaccount -n payments api",
                       f"kubectl annotate serviceaccount -n payments api eks.amazonaws.com/role-arn={arn} --overwrite"),
                  explanation=("does not have",))


def sa_not_annotated(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "api")
    w.refused_web_identity("payments", "api", arn, count=3)
    return Expect("irsa", "SA_NOT_ANNOTATED", 3, "payments", "api", role="payments-api",
                  fix=(f"kubectl annotate serviceaccount -n payments api eks.amazonaws.com/role-arn={arn} --overwrite",
                       "kubectl rollout restart deployment -n payments"))


def role_mismatch(w: World) -> Expect:
    # The annotation moved to a new role; the old role was re-scoped to another service
    # account, so STS refuses the pods that still ask for it.
    old = w.irsa_role("payments-api-old", "payments", "api-legacy")
    new = w.irsa_role("payments-api", "payments", "api")
    w.sa("payments", "api", role_arn=new)
    w.refused_web_identity("payments", "api", old, count=5)
    return Expect("irsa", "ROLE_MISMATCH", 5, "payments", "api", role="payments-api-old",
                  fix=("kubectl rollout restart deployment -n payments",
                       f"kubectl annotate serviceaccount -n payments api eks.amazonaws.com/role-arn={old} --overwrite"),
                  explanation=(f"annotated with {new}",))


def role_not_found(w: World) -> Expect:
    arn = f"arn:aws:iam::{ACCOUNT}:role/payments-api"
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=2)
    return Expect("irsa", "ROLE_NOT_FOUND", 2, "payments", "api", role="payments-api",
                  fix=("aws iam create-role --role-name payments-api", '"system:serviceaccount:payments:api"'),
                  explanation=("does not exist",))


def trust_provider_mismatch(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api", provider=w.old_provider_arn)
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=6)
    return Expect("irsa", "TRUST_PROVIDER_MISMATCH", 6, "payments", "api", role="payments-api",
                  fix=("aws iam update-assume-role-policy --role-name payments-api", f'"Federated": "{w.provider_arn}"',
                       f'"Federated": "{w.old_provider_arn}"'),
                  explanation=(OLD_ISSUER_ID,))


def trust_action_missing(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api", action="sts:AssumeRole")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=2)
    return Expect("irsa", "TRUST_ACTION_MISSING", 2, "payments", "api", role="payments-api",
                  fix=('"sts:AssumeRoleWithWebIdentity"', "update-assume-role-policy"))


def trust_subject_mismatch(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api", sub="system:serviceaccount:payment:api")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=7)
    return Expect("irsa", "TRUST_SUBJECT_MISMATCH", 7, "payments", "api", role="payments-api",
                  fix=(f'"{w.issuer}:sub": [', '"system:serviceaccount:payments:api"',
                       "# it still admits system:serviceaccount:payment:api",
                       "aws iam update-assume-role-policy --role-name payments-api --policy-document file://trust.json"),
                  explanation=("system:serviceaccount:payment:api",))


def trust_audience_mismatch(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api", aud="system:serviceaccount:payments:api")
    w.sa("payments", "api", role_arn=arn)
    w.refused_web_identity("payments", "api", arn, count=2)
    return Expect("irsa", "TRUST_AUDIENCE_MISMATCH", 2, "payments", "api", role="payments-api",
                  fix=(f'"{w.issuer}:aud": "sts.amazonaws.com"',), explanation=(":aud",))


def pod_identity_trust_from_eks(w: World) -> Expect:
    """The Pod Identity agent's call, refused with EKS's own message (as in the real record)."""
    w.records.append(pod_identity_agent_call(
        w.rng, when=NOW - timedelta(minutes=9), region=REGION, account=ACCOUNT, node=w.node_session(), cluster="prod",
        created=NOW - timedelta(hours=3), error_code="AccessDenied",
    ))
    return Expect("pod_identity", "POD_IDENTITY_TRUST", 1, resolution="unknown",
                  fix=("aws eks list-pod-identity-associations --cluster-name prod", '"pods.eks.amazonaws.com"',
                       '"sts:TagSession"'))


def pod_identity_trust_from_policy(w: World) -> Expect:
    """STS refused pods.eks.amazonaws.com: the role trusts it for AssumeRole but not TagSession."""
    arn = w.role("orders-pod", trust({"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                                      "Action": "sts:AssumeRole"}))
    for when in w.moments(3, since=timedelta(hours=1)):
        w.records.append(pod_identity_assume_role(
            w.rng, when=when, region=REGION, account=ACCOUNT, role_arn=arn, cluster="prod", namespace="orders",
            service_account="worker", pod="worker-6d9f7c6b5-x2x7q", error_code="AccessDenied",
        ))
    return Expect("pod_identity", "POD_IDENTITY_TRUST", 3, "orders", "worker", role="orders-pod",
                  fix=("aws iam update-assume-role-policy --role-name orders-pod", '"sts:TagSession"'),
                  explanation=("sts:TagSession",))


def pod_identity_agent_denied(w: World) -> Expect:
    node = w.node_session()
    for when in w.moments(4, since=timedelta(hours=1)):
        w.records.append(pod_identity_agent_call(
            w.rng, when=when, region=REGION, account=ACCOUNT, node=node, cluster="prod",
            created=NOW - timedelta(hours=3), user_agent="aws-sdk-go-v2/1.21.2 os/linux lang/go#1.19.13 api/eksauth#1.0.0",
            error_code="AccessDenied",
            error_message=(
                f"User: {node.arn} is not authorized to perform: eks-auth:AssumeRoleForPodIdentity on resource: "
                f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/prod because no identity-based policy allows the "
                "eks-auth:AssumeRoleForPodIdentity action"
            ),
        ))
    return Expect("pod_identity", "POD_IDENTITY_AGENT_DENIED", 4, resolution="unknown", role=NODE_ROLE,
                  fix=((f"aws iam attach-role-policy --role-name {NODE_ROLE} --policy-arn "
                       "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"),))


def node_role_fallback(w: World) -> Expect:
    node = w.node_session()
    w.calls(node, "ec2.amazonaws.com", "DescribeSnapshots", count=8, code="Client.UnauthorizedOperation",
           message=EC2_ENCODED, user_agent=OLD_BOTO3)
    return Expect("denied_call", "NODE_ROLE_FALLBACK", 8, resolution="node", role=NODE_ROLE,
                  fix=("upgrade Boto3 from 1.9.100 to 1.9.220", "eks.amazonaws.com/role-arn",
                       "aws eks create-pod-identity-association"),
                  explanation=("Boto3 1.9.100", "too old for IRSA (web identity) credentials (needs 1.9.220 or later)"))


def explicit_deny(w: World) -> Expect:
    arn = w.irsa_role("payments-api", "payments", "api", {"s3": policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})})
    w.sa("payments", "api", role_arn=arn)
    session = w.minted("payments", "api", arn)
    w.calls(session, "s3.amazonaws.com", "PutObject", count=3, code="AccessDenied",
           message=f'User: {session.arn} is not authorized to perform: s3:PutObject on resource: '
                   '"arn:aws:s3:::invoices/2026/11.pdf" with an explicit deny in a service control policy')
    return Expect("denied_call", "EXPLICIT_DENY", 3, "payments", "api", role="payments-api",
                  fix=("SERVICE_CONTROL_POLICY",), explanation=("service control policy",))


def boundary_deny(w: World) -> Expect:
    boundary = w.iam.create_policy(
        PolicyName="developer-boundary",
        PolicyDocument=policy({"Effect": "Allow", "Action": ["s3:*", "sqs:*"], "Resource": "*"}),
    )["Policy"]["Arn"]
    arn = w.irsa_role("reports-exporter", "reports", "exporter",
                      {"ec2": policy({"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"})},
                      boundary=boundary)
    w.sa("reports", "exporter", role_arn=arn)
    # The session's AssumeRoleWithWebIdentity is in CloudTrail, as it is for a pod within a day's
    # window: without it the session's policies are not known, and a layer not read no longer
    # passes for one that allows (tests/test_denied_layers.py has that case, by role).
    session = w.minted("reports", "exporter", arn)
    w.calls(session, "ec2.amazonaws.com", "DescribeSnapshots", count=2, code="Client.UnauthorizedOperation",
           message=EC2_SILENT)
    return Expect("denied_call", "BOUNDARY_DENY", 2, "reports", "exporter", role="reports-exporter",
                  fix=(f"aws iam create-policy-version --policy-arn {boundary}", '"ec2:DescribeSnapshots"'),
                  explanation=("permissions boundary",))


def resource_policy_deny(w: World) -> Expect:
    arn = w.irsa_role("reports-reader", "reports", "reader")
    w.sa("reports", "reader", role_arn=arn)
    session = w.minted("reports", "reader", arn)
    w.calls(session, "s3.amazonaws.com", "GetObject", count=2, code="AccessDenied",
           message=f'User: {session.arn} is not authorized to perform: s3:GetObject on resource: '
                   '"arn:aws:s3:::partner-reports/q3.csv" because no resource-based policy allows the s3:GetObject action')
    return Expect("denied_call", "RESOURCE_POLICY_DENY", 2, "reports", "reader", role="reports-reader",
                  fix=('"Principal": {\n    "AWS": "' + arn + '"', '"Resource": "arn:aws:s3:::partner-reports/q3.csv"'))


def missing_permission(w: World) -> Expect:
    arn = w.irsa_role("orders-worker", "orders", "worker",
                      {"sqs": policy({"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": "*"})})
    w.sa("orders", "worker", role_arn=arn)
    session = w.minted("orders", "worker", arn)
    w.calls(session, "ec2.amazonaws.com", "DescribeVolumes", count=9, code="Client.UnauthorizedOperation",
           message=EC2_SILENT)
    return Expect("denied_call", "MISSING_PERMISSION", 9, "orders", "worker", role="orders-worker",
                  fix=("aws iam put-role-policy --role-name orders-worker", '"Action": "ec2:DescribeVolumes"'),
                  explanation=("No identity-based policy",))


def unexplained(w: World) -> Expect:
    arn = w.irsa_role("orders-worker", "orders", "worker",
                      {"ec2": policy({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"})})
    w.sa("orders", "worker", role_arn=arn)
    session = w.minted("orders", "worker", arn)
    w.calls(session, "ec2.amazonaws.com", "DescribeVolumes", count=2, code="Client.UnauthorizedOperation",
           message=EC2_SILENT)
    return Expect("denied_call", "UNEXPLAINED", 2, "orders", "worker", role="orders-worker",
                  explanation=("allow ec2:DescribeVolumes", "outside the inventory"),
                  fix=("service control, resource control or resource policy",))


SCENARIOS: dict[str, Callable[[World], Expect]] = {
    f.__name__: f
    for f in (
        invalid_role_arn, token_expired, idp_unreachable, oidc_provider_missing, oidc_thumbprint_mismatch,
        sa_not_found, sa_not_annotated, role_mismatch, role_not_found, trust_provider_mismatch,
        trust_action_missing, trust_subject_mismatch, trust_audience_mismatch, pod_identity_trust_from_eks,
        pod_identity_trust_from_policy, pod_identity_agent_denied, node_role_fallback, explicit_deny,
        boundary_deny, resource_policy_deny, missing_permission, unexplained,
    )
}


def healthy_workload(w: World) -> None:
    """A workload of the cluster that gets its credentials, as every real cluster has: the
    evidence that ties an untagged service-account list to the cluster."""
    arn = w.irsa_role("monitoring-agent", "monitoring", "agent")
    w.sa("monitoring", "agent", role_arn=arn)
    w.minted("monitoring", "agent", arn)


def build(moto: MotoServer, name: str) -> tuple[World, Expect]:
    probe = SCENARIOS[name]
    options = {"oidc_provider": False} if name == "oidc_provider_missing" else {}
    world = prod_world(moto, **options)
    expect = probe(world)
    healthy_workload(world)
    return world, expect


def check(finding: dict, expect: Expect, *, offline: bool, world: World) -> None:
    assert (finding["kind"], finding["cause"]) == (expect.kind, expect.cause), finding["explanation"]
    workload = finding["workload"]
    assert (workload["namespace"], workload["service_account"], workload["resolution"]) == (
        expect.namespace, expect.service_account, expect.resolution
    )
    assert [f"{c['namespace']}/{c['service_account']}" for c in workload["candidates"]] == list(expect.candidates)
    if expect.kind == "irsa":
        assert workload["cluster"] == (issuer_id(world.issuer) if offline else "prod")
    elif expect.kind == "pod_identity":
        assert workload["cluster"] == "prod"
    elif expect.resolution == "node":
        assert workload["cluster"] == (None if offline else "prod")
    assert finding["count"] == expect.count
    if expect.role:
        assert (finding["role_arn"] or "").rsplit("/", 1)[-1] == expect.role
    for text in expect.fix:
        assert text in finding["fix"], f"{text!r} not in fix:\n{finding['fix']}"
    for text in expect.explanation:
        assert text in finding["explanation"], f"{text!r} not in explanation:\n{finding['explanation']}"
    assert finding["explanation"] and finding["fix"]
    assert len(finding["sample_event_ids"]) == min(5, expect.count)


def explain_live(world: World, files: dict[str, Path]) -> dict:
    """The inventory read live through boto3 from moto, as `trailscan since` does with credentials;
    the service-account file tagged with the cluster it was saved from."""
    with Store.open(":memory:") as store:
        ingest_files(store, [str(files["trail"])])
        report = investigate(
            store,
            window=WINDOW,
            inventory=InventoryRequest(service_account_files=(f"prod={files['service_accounts']}",), clusters=("prod",),
                                       regions=(REGION,), live_iam=True),
            session=world.session,
        )
    assert report.complete
    return findings_document(report, NOW)


def explain_offline(files: dict[str, Path], folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """`trailscan since --source files --iam … --service-accounts … --offline`, with no AWS endpoint
    or credentials in the environment; the service-account file untagged, tied to the cluster by
    CloudTrail's evidence."""
    for variable in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(
        main,
        ["since", "24h", "--until", iso(NOW + timedelta(minutes=1)), "--source", "files", "--path", str(files["trail"]),
         "--iam", str(files["iam"]), "--service-accounts", str(files["service_accounts"]),
         "--policies", f"{ACCOUNT}={files['organization']}", "--offline",
         "--db", str(folder / "store.duckdb"), "--format", "json"],
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_cause(moto, name, tmp_path, monkeypatch):
    """One cause, built the way it happens, explained live and offline to the same finding."""
    world, expect = build(moto, name)
    files = write_files(world, tmp_path)
    for offline, document in ((False, explain_live(world, files)), (True, explain_offline(files, tmp_path, monkeypatch))):
        assert document["schema"] == "trailscan.findings/v1"
        found = [(f["kind"], f["cause"], f["error_code"]) for f in document["findings"]]
        assert len(found) == 1, f"{'offline' if offline else 'live'}: {found}"
        check(document["findings"][0], expect, offline=offline, world=world)


def test_every_cause_has_a_scenario():
    from trailscan.explain.causes import CAUSES

    covered = set()
    for probe in SCENARIOS.values():
        # The expectation names the cause; read it without building a world.
        source = probe.__code__.co_consts
        covered |= {c for c in source if isinstance(c, str) and c.isupper() and "_" in c}
    assert {c.code for c in CAUSES} <= covered | {"UNEXPLAINED"}


def test_pod_identity_association_names_the_role_eks_could_not_assume(real_store):
    """The real failed AssumeRoleForPodIdentity names no role; the cluster's associations and
    their roles' trust policies do (moto has no Pod Identity API, so the inventory is built here)."""
    from trailscan.explain import explain_store
    from trailscan.inventory import Cluster, PodIdentityAssociation, authorization_details_inventory

    good = "arn:aws:iam::753273931759:role/eks-pod-s3-read-access-role"
    bad = "arn:aws:iam::753273931759:role/eks-pod-dynamodb-role"
    pods = {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}}
    iam = authorization_details_inventory(
        {"RoleDetailList": [
            {"Arn": good, "RoleName": "eks-pod-s3-read-access-role",
             "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{**pods, "Action": ["sts:AssumeRole", "sts:TagSession"]}]}},
            {"Arn": bad, "RoleName": "eks-pod-dynamodb-role",
             "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                 {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}},
        ]},
        source="test",
    )
    cluster = Cluster(
        "eksworkshop-eksctl", "us-west-2", "753273931759", "arn:aws:eks:us-west-2:753273931759:cluster/eksworkshop-eksctl",
        "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE",
        pod_identity_associations=[
            PodIdentityAssociation("ns-a", "sa1", good, "a-1"),
            PodIdentityAssociation("ns-b", "sa2", bad, "a-2"),
        ],
    )
    with Store.open(real_store, read_only=True) as store:
        report = explain_store(store, iam.with_clusters([cluster]))
    [finding] = [f for f in report.findings if f.kind == "pod_identity"]
    assert finding.cause == "POD_IDENTITY_TRUST" and finding.role_arn == bad
    assert finding.workload.resolution == "by_role"
    assert [str(c) for c in finding.workload.candidates] == ["ns-b/sa2"]
    assert "aws iam update-assume-role-policy --role-name eks-pod-dynamodb-role" in finding.fix
    assert '"ec2.amazonaws.com"' in finding.fix and '"sts:TagSession"' in finding.fix  # the other statement is kept


# -- whose session was it: role chains, and callers that are no EKS workload -------------------------
#
# Built from the records alone (no inventory): the chain is CloudTrail's own evidence.

CHAIN_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/{OLD_ISSUER_ID}"
DENIED_SQS = "because no identity-based policy allows the sqs:sendmessage action"


def _role_session(role: str, name: str, rng: random.Random, **kw: Any) -> RoleSession:
    return RoleSession(ACCOUNT, role, name, access_key_id(rng), **kw)


def _refused(rng: random.Random, session: RoleSession | None = None, *, identity: dict | None = None,
             count: int = 2) -> list[dict]:
    """sqs:SendMessage refused *count* times to a session (or any identity), AWS saying why."""
    arn = session.arn if session else (identity or {}).get("arn", "")
    return [
        api_call(rng, when=NOW - timedelta(minutes=10 + n), region=REGION, account=ACCOUNT,
                 identity=identity or session.user_identity(NOW - timedelta(minutes=30)),
                 event_source="sqs.amazonaws.com", event_name="SendMessage", read_only=False, user_agent=BOTO3,
                 error_code="AccessDenied",
                 error_message=f"User: {arn} is not authorized to perform: sqs:sendmessage on resource: "
                               f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders {DENIED_SQS}")
        for n in range(count)
    ]


def _explain(records: list[dict], **options: Any):
    from trailscan.explain import explain_store

    with Store.open(":memory:") as store:
        store.ingest_documents([json.dumps({"Records": records})], origin="test")
        return explain_store(store, None, window=WINDOW, **options)


def test_a_role_chain_from_a_pod_is_the_pods_and_names_the_chain():
    """payments/api's web-identity session assumes shared-reader, whose session assumes
    partner-writer; partner-writer is refused: the call is payments/api's (``exact``)."""
    from trailscan.generate import assume_role_call, web_identity_call

    rng = random.Random(21)
    pod = _role_session("payments-api", "botocore-session-1764290000", rng)
    hop = _role_session("shared-reader", "payments-hop", rng)
    last = _role_session("partner-writer", "payments-last", rng)
    records = [
        # Minted 13 hours before the window: IRSA sessions may last 12 hours, and each chained one 1 hour.
        web_identity_call(rng, when=WINDOW.start - timedelta(hours=13), region=REGION, account=ACCOUNT,
                          provider_arn=CHAIN_PROVIDER, subject="system:serviceaccount:payments:api",
                          role_arn=pod.role_arn, session=pod),
        assume_role_call(rng, when=WINDOW.start - timedelta(minutes=90), region=REGION, account=ACCOUNT,
                         caller=pod.user_identity(WINDOW.start - timedelta(hours=13)), session=hop),
        assume_role_call(rng, when=NOW - timedelta(minutes=40), region=REGION, account=ACCOUNT,
                         caller=hop.user_identity(WINDOW.start - timedelta(minutes=90)), session=last),
        *_refused(rng, last, count=3),
    ]
    [finding] = _explain(records).findings
    assert (finding.kind, finding.cause, finding.count) == ("denied_call", "MISSING_PERMISSION", 3)
    assert finding.workload.as_json() == {"cluster": OLD_ISSUER_ID, "namespace": "payments", "service_account": "api",
                                          "resolution": "exact", "candidates": []}
    assert finding.role_arn == last.role_arn
    assert ("through a role chain: payments/api → role payments-api → role shared-reader → role partner-writer"
            in finding.explanation)


def test_a_role_chain_from_a_pod_identity_session_is_the_pods():
    from trailscan.generate import assume_role_call, pod_identity_assume_role

    rng = random.Random(22)
    pod = _role_session("orders-pod", "eks-prod-worker-6d9f7c6b5-x2x7q", rng)
    last = _role_session("orders-archive", "orders-archive", rng)
    records = [
        pod_identity_assume_role(rng, when=NOW - timedelta(hours=3), region=REGION, account=ACCOUNT,
                                 role_arn=pod.role_arn, cluster="prod", namespace="orders", service_account="worker",
                                 pod="worker-6d9f7c6b5-x2x7q", session=pod),
        assume_role_call(rng, when=NOW - timedelta(minutes=50), region=REGION, account=ACCOUNT,
                         caller=pod.user_identity(NOW - timedelta(hours=3)), session=last),
        *_refused(rng, last),
    ]
    [finding] = _explain(records).findings
    assert (finding.workload.cluster, finding.workload.label(), finding.workload.resolution) == (
        "prod", "orders/worker", "exact")
    assert "orders/worker → role orders-pod → role orders-archive" in finding.explanation


def test_callers_that_are_no_eks_workload_are_not_eks_with_the_evidence():
    from trailscan.generate import assume_role_call, iam_user_identity

    rng = random.Random(23)
    alice = iam_user_identity(ACCOUNT, "alice", "AKIAALICEEXAMPLE0001")
    admin = _role_session("admin", "alice", rng)
    chained = _role_session("breakglass", "alice-breakglass", rng)
    slr = _role_session("AWSServiceRoleForAmazonInspector2", "MandoService1", rng)
    slr_identity = slr.user_identity(NOW - timedelta(hours=1))
    slr_identity["sessionContext"]["sessionIssuer"]["arn"] = (
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/inspector2.amazonaws.com/AWSServiceRoleForAmazonInspector2")
    records = [
        *_refused(rng, identity=alice),
        # alice assumes admin, and admin's session assumes breakglass: a chain that starts at a person.
        assume_role_call(rng, when=NOW - timedelta(hours=2), region=REGION, account=ACCOUNT, caller=alice, session=admin),
        assume_role_call(rng, when=NOW - timedelta(minutes=45), region=REGION, account=ACCOUNT,
                         caller=admin.user_identity(NOW - timedelta(hours=2)), session=chained),
        *_refused(rng, chained),
        *_refused(rng, identity=slr_identity),
        *_refused(rng, identity={"type": "Root", "principalId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:root",
                                 "accountId": ACCOUNT, "accessKeyId": "AKIAROOTEXAMPLE00001"}),
    ]
    # Left out by default, and counted in a note; all_principals lists them.
    default = _explain(records)
    assert default.findings == [] and sum(f.count for f in default.left_out) == 8
    assert default.notes == [
        "left out 8 refused calls by 4 principals that are not EKS workloads (role AWSServiceRoleForAmazonInspector2, "
        f"role breakglass, root of {ACCOUNT}, …); --all-principals (all_principals=True) includes them"
    ]
    findings = _explain(records, all_principals=True).findings
    assert {f.workload.resolution for f in findings} == {"not_eks"} and sum(f.count for f in findings) == 8
    text = {(f.principal_arn or "").rsplit(":", 1)[-1]: f.explanation for f in findings}
    assert "Not an EKS workload: user alice is an IAM user" in text["user/alice"]
    assert ("Not an EKS workload: its session was started by user alice, an IAM user"
            in text["assumed-role/breakglass/alice-breakglass"])
    assert "through a role chain: user alice → role admin → role breakglass" in text["assumed-role/breakglass/alice-breakglass"]
    assert "service-linked role of inspector2.amazonaws.com" in text["assumed-role/AWSServiceRoleForAmazonInspector2/MandoService1"]
    assert f"Not an EKS workload: root of {ACCOUNT} is the account's root user" in text["root"]
    assert all("make sure the refusal was not intended" in f.fix for f in findings)


def test_a_session_whose_origin_is_not_in_the_store_stays_unknown():
    """No evidence either way is no all-clear: these stay ``unknown`` (or ``node``), and shown."""
    from trailscan.generate import assume_role_call

    rng = random.Random(24)
    orphan = _role_session("reports-exporter", "botocore-session-1", rng)  # minted before anything was read
    hop = _role_session("reports-hop", "hop", rng)  # minted by a session the store never saw minted
    stranger = _role_session("reports-upstream", "upstream", rng)
    node = _role_session(NODE_ROLE, "i-0a1b2c3d4e5f60718", rng, ec2_role_delivery=True)
    from_node = _role_session("kube2iam-target", "kube2iam", rng)  # assumed with the node's credentials
    from_ec2 = _role_session("batch-instance", "i-0fedcba9876543210", rng)
    loop_a, loop_b = _role_session("loop-a", "a", rng), _role_session("loop-b", "b", rng)
    ec2 = {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}
    records = [
        *_refused(rng, orphan),
        assume_role_call(rng, when=NOW - timedelta(minutes=50), region=REGION, account=ACCOUNT,
                         caller=stranger.user_identity(NOW - timedelta(hours=2)), session=hop),
        *_refused(rng, hop),
        assume_role_call(rng, when=NOW - timedelta(minutes=50), region=REGION, account=ACCOUNT,
                         caller=node.user_identity(NOW - timedelta(hours=2)), session=from_node),
        *_refused(rng, from_node),
        # EC2 handing an instance its role: how nodes get theirs, so no evidence against a pod.
        assume_role_call(rng, when=NOW - timedelta(hours=2), region=REGION, account=ACCOUNT, caller=ec2,
                         session=from_ec2),
        *_refused(rng, from_ec2),
        # A cycle (impossible in AWS): the walk ends, and says nothing.
        assume_role_call(rng, when=NOW - timedelta(minutes=50), region=REGION, account=ACCOUNT,
                         caller=loop_b.user_identity(NOW), session=loop_a),
        assume_role_call(rng, when=NOW - timedelta(minutes=50), region=REGION, account=ACCOUNT,
                         caller=loop_a.user_identity(NOW), session=loop_b),
        *_refused(rng, loop_a),
        # A caller from another account: perhaps a pod there.
        *_refused(rng, identity={"type": "AWSAccount", "principalId": "AIDAEXAMPLE:x", "accountId": "444455556666"}),
    ]
    findings = _explain(records).findings
    by_role = {(f.role_arn or f.principal_arn or "").rsplit("/", 1)[-1]: f for f in findings}
    assert {name: f.workload.resolution for name, f in by_role.items()} == {
        "reports-exporter": "unknown", "reports-hop": "unknown", "kube2iam-target": "unknown",
        "batch-instance": "node", "loop-a": "unknown", "": "unknown",
    }
    assert "role reports-upstream → role reports-hop" in by_role["reports-hop"].explanation
    assert "the node's role prod-node-group-role → role kube2iam-target" in by_role["kube2iam-target"].explanation
    assert not any("Not an EKS workload" in f.explanation for f in findings)


def test_a_refused_github_actions_token_is_no_eks_workload():
    """A GitHub Actions job refused by a role's trust policy is a web identity too, but no
    pod's: left out by default like any caller that is no EKS workload, with its reason."""
    from trailscan.generate import web_identity_call

    rng = random.Random(24)
    github = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    records = [web_identity_call(rng, when=NOW - timedelta(minutes=10 + i), region=REGION, account=ACCOUNT,
                                 provider_arn=github, subject="repo:acme/shop:ref:refs/heads/main",
                                 role_arn=f"arn:aws:iam::{ACCOUNT}:role/deploy", error_code="AccessDenied",
                                 error_message="Not authorized to perform sts:AssumeRoleWithWebIdentity")
               for i in range(3)]
    default = _explain(records)
    assert default.findings == [] and sum(f.count for f in default.left_out) == 3
    assert default.notes[-1].startswith("left out 3 refused calls by 1 principal that are not EKS workloads (role deploy)")
    [finding] = _explain(records, all_principals=True).findings
    assert finding.kind == "irsa" and finding.workload.resolution == "not_eks"
    assert ("Not an EKS workload: a web identity from token.actions.githubusercontent.com (subject "
            "repo:acme/shop:ref:refs/heads/main), no Kubernetes service-account token.") in finding.explanation
