"""The AWS side of the inventory: IAM roles and policies, OIDC providers, EKS clusters.

Live loading runs real boto3 against moto in server mode on 127.0.0.1 (SPEC §9).  What
moto 5.2 does here, and what the tests rely on:

* ``describe_cluster`` returns ``identity.oidc.issuer`` as
  ``https://oidc.eks.REGION.amazonaws.com/id/<10 random letters>`` (AWS uses 32 hex
  digits), but creates no IAM OIDC provider: tests create it, as ``eksctl`` would;
* node groups: ``list_nodegroups``/``describe_nodegroup`` with ``nodeRole``;
* EKS Pod Identity is not implemented: the API answers HTTP 404 with an HTML page,
  which the loader must report as "not available", not as "no associations";
* ``get_account_authorization_details`` is implemented (roles, inline and managed
  policies with every version, boundaries, tags), without AWS managed policies unless
  moto is configured to load them;
* IAM authorization is enforced after ``/moto-api/reset-auth``, so a refused
  ``AccessDenied`` comes from moto itself; EKS under enforced auth answers
  ``SignatureDoesNotMatch`` as a bare HTTP 403;
* ``sts:AssumeRole`` into another account yields credentials moto files under that
  account, which gives a genuine second account.

``tests/data/iam/`` holds a saved ``aws iam get-account-authorization-details`` document
for account 111122223333 and the matching OIDC provider list; regenerate them from moto
with ``python -m tests.test_inventory``.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import boto3
import botocore.session
import pytest

from tests.support.moto_server import MotoServer
from trailscan.arn import issuer_of
from trailscan.errors import InputError
from trailscan.inventory import (
    EKS,
    IAM,
    KUBERNETES,
    NODE_ROLES,
    OIDC,
    POD_IDENTITY,
    Cluster,
    Inventory,
    OidcProvider,
    load_eks_live,
    load_iam_file,
    load_iam_live,
    merge_inventories,
)
from trailscan.kube import ServiceAccount

DATA = Path(__file__).parent / "data" / "iam"
MOTO_ACCOUNT = "123456789012"
FIXTURE_ACCOUNT = "111122223333"
FIXTURE_ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
GONE_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/DELETEDCLUSTER"


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource="*") -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def irsa_trust(account: str, issuer: str, namespace: str, name: str, operator: str = "StringEquals") -> dict:
    return policy(
        {
            "Effect": "Allow",
            "Principal": {"Federated": f"arn:aws:iam::{account}:oidc-provider/{issuer}"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                operator: {
                    f"{issuer}:sub": f"system:serviceaccount:{namespace}:{name}",
                    f"{issuer}:aud": "sts.amazonaws.com",
                }
            },
        }
    )


SERVICE_TRUST = {
    service: policy(
        {"Effect": "Allow", "Principal": {"Service": f"{service}.amazonaws.com"}, "Action": "sts:AssumeRole"}
    )
    for service in ("eks", "ec2")
}
SERVICE_TRUST |= {
    "pods": policy(
        {
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
        }
    ),
}


# --------------------------------------------------------------------------
# moto
# --------------------------------------------------------------------------


# The account is seeded once for the module (``world``): its tests only add to it.
pytestmark = pytest.mark.usefixtures("moto_module")


@pytest.fixture(scope="module")
def aws(moto_module: MotoServer) -> boto3.Session:
    return moto_module.session("eu-west-1")


@pytest.fixture(scope="module")
def world(aws: boto3.Session) -> dict[str, str]:
    """Built once per module (moto's first node group costs seconds): tests only add to it."""
    return build_world(aws)


def keyed_session(
    moto: MotoServer, region: str, access_key: str, secret: str, token: str | None = None
) -> boto3.Session:
    """A session on the moto server with other credentials than the default test ones."""
    return boto3.Session(
        botocore_session=moto.session(region)._session,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def account_session(moto: MotoServer, session: boto3.Session, account: str) -> boto3.Session:
    """A session in another moto account, reached through sts:AssumeRole as in real life."""
    credentials = session.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole", RoleSessionName="setup"
    )["Credentials"]
    keys = (credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"])
    return keyed_session(moto, session.region_name, *keys)


@contextmanager
def enforced_iam(moto: MotoServer) -> Iterator[None]:
    """moto checks every request against IAM while inside (a process-wide moto setting)."""

    def reset_auth(value: str) -> None:
        request = urllib.request.Request(
            f"{moto.endpoint_url}/moto-api/reset-auth",
            data=value.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    reset_auth("0")
    try:
        yield
    finally:
        reset_auth("inf")


def make_policy(iam, name: str, document: dict) -> str:
    return iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]


def make_role(iam, name: str, trust: dict, **extra) -> str:
    return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), **extra)["Role"]["Arn"]


def build_account_iam(iam, account: str, issuer_url: str, role_path: str = "/") -> dict[str, str]:
    """An account's IAM side of EKS: the cluster's OIDC provider, IRSA, node and Pod Identity roles."""
    issuer = issuer_url.removeprefix("https://")
    provider = iam.create_open_id_connect_provider(
        Url=issuer_url, ClientIDList=["sts.amazonaws.com"], ThumbprintList=[THUMBPRINT]
    )["OpenIDConnectProviderArn"]
    boundary = make_policy(iam, "workload-boundary", policy(allow(["s3:*", "sqs:*"])))
    data_policy = make_policy(iam, "payments-data", policy(allow("s3:*")))
    iam.create_policy_version(  # v2 becomes the default: v1 must not be read
        PolicyArn=data_policy,
        PolicyDocument=json.dumps(policy(allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::payments/*"))),
        SetAsDefault=True,
    )
    payments = make_role(
        iam,
        "payments-api",
        irsa_trust(account, issuer, "payments", "api"),
        Path=role_path,
        PermissionsBoundary=boundary,
        Tags=[{"Key": "team", "Value": "payments"}],
    )
    queue = json.dumps(policy(allow("sqs:SendMessage")))
    iam.put_role_policy(RoleName="payments-api", PolicyName="queue", PolicyDocument=queue)
    iam.attach_role_policy(RoleName="payments-api", PolicyArn=data_policy)
    make_role(iam, "reports", irsa_trust(account, issuer, "reports", "*", "StringLike"))
    read = json.dumps(policy(allow("s3:GetObject")))
    iam.put_role_policy(RoleName="reports", PolicyName="read", PolicyDocument=read)
    node_policy = make_policy(iam, "node-basics", policy(allow(["ec2:Describe*", "ecr:GetAuth*"])))
    node = make_role(iam, "prod-nodes", SERVICE_TRUST["ec2"])
    iam.attach_role_policy(RoleName="prod-nodes", PolicyArn=node_policy)
    make_role(iam, "reports-pod-identity", SERVICE_TRUST["pods"])
    return {
        "account": account,
        "issuer_url": issuer_url,
        "issuer": issuer,
        "provider": provider,
        "payments": payments,
        "node": node,
        "data_policy": data_policy,
        "boundary": boundary,
    }


def build_world(session: boto3.Session) -> dict[str, str]:
    """One account with an EKS cluster (two node groups), its OIDC provider and roles."""
    iam = session.client("iam")
    eks = session.client("eks")
    account = session.client("sts").get_caller_identity()["Account"]
    cluster_role = make_role(iam, "eks-cluster", SERVICE_TRUST["eks"])
    cluster = eks.create_cluster(
        name="prod", roleArn=cluster_role, resourcesVpcConfig={"subnetIds": ["subnet-1"]}
    )["cluster"]
    world = build_account_iam(iam, account, cluster["identity"]["oidc"]["issuer"], role_path="/workloads/")
    for group in ("general", "spot"):
        eks.create_nodegroup(
            clusterName="prod", nodegroupName=group, nodeRole=world["node"], subnets=["subnet-1"]
        )
    return {**world, "cluster_role": cluster_role, "cluster_arn": cluster["arn"]}


def authorization_details(session: boto3.Session) -> dict:
    """What ``aws iam get-account-authorization-details --output json`` prints."""
    answer = session.client("iam").get_account_authorization_details()
    answer.pop("ResponseMetadata", None)
    return json.loads(json.dumps(answer, default=lambda value: value.isoformat()))


def oidc_provider_list(session: boto3.Session, *, details: bool = True) -> dict:
    """``aws iam list-open-id-connect-providers`` output; with *details*, each entry
    extended by its ``get-open-id-connect-provider`` fields."""
    iam = session.client("iam")
    entries = []
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        if details:
            got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])
            entry = {
                "Arn": entry["Arn"],
                "Url": got["Url"],
                "ClientIDList": got["ClientIDList"],
                "ThumbprintList": got["ThumbprintList"],
            }
        entries.append(entry)
    return {"OpenIDConnectProviderList": entries}


def url_encoded(details: dict) -> dict:
    """The same document as the raw IAM API returns it: every policy URL-encoded JSON."""
    encoded = json.loads(json.dumps(details))
    for role in encoded["RoleDetailList"]:
        role["AssumeRolePolicyDocument"] = quote(json.dumps(role["AssumeRolePolicyDocument"]))
        for inline in role.get("RolePolicyList", []):
            inline["PolicyDocument"] = quote(json.dumps(inline["PolicyDocument"]))
    for managed in encoded["Policies"]:
        for version in managed["PolicyVersionList"]:
            version["Document"] = quote(json.dumps(version["Document"]))
    return encoded


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------
# IAM live
# --------------------------------------------------------------------------


def test_named_roles_are_read_with_every_policy(aws, world):
    missing = f"arn:aws:iam::{world['account']}:role/payments-apii"
    elsewhere = "arn:aws:iam::999988887777:role/payments-api"

    inventory = load_iam_live(aws, role_arns=[world["payments"], missing, elsewhere, "payments-api"])

    role = inventory.role(world["payments"])
    assert role is not None
    assert (role.name, role.account) == ("payments-api", world["account"])
    assert role.trust_policy == irsa_trust(world["account"], world["issuer"], "payments", "api")
    assert [name for name, _ in role.policies] == ["queue", "payments-data"]
    # The managed policy's default version (v2), not its first.
    assert dict(role.policies)["payments-data"]["Statement"][0]["Resource"] == "arn:aws:s3:::payments/*"
    assert role.attached_policy_arns == [world["data_policy"]]
    assert role.boundary_arn == world["boundary"]
    assert role.permissions_boundary == policy(allow(["s3:*", "sqs:*"]))
    assert role.tags == {"team": "payments"}
    assert role.policies_complete

    assert inventory.missing_roles == {missing}
    assert inventory.role_status(missing) == "missing"
    assert inventory.role_status(elsewhere) == "unknown"  # another account: never looked
    assert any("999988887777" in note for note in inventory.notes)
    assert any("'payments-api' is not a role ARN" in note for note in inventory.notes)
    assert {IAM, OIDC} <= inventory.complete
    assert inventory.gaps == {}

    provider = inventory.oidc_providers[world["provider"]]
    assert provider.url == world["issuer"]
    assert provider.client_ids == ["sts.amazonaws.com"]
    assert provider.thumbprints == [THUMBPRINT]
    assert provider.issuer_host_path == world["issuer"]
    assert inventory.provider_for_issuer(world["issuer_url"]) == provider
    assert inventory.provider_status(world["issuer_url"], world["account"]) == "found"
    assert inventory.provider_status(GONE_ISSUER, world["account"]) == "missing"


def test_role_lookup_by_name_and_by_arn_without_path(aws, world):
    inventory = load_iam_live(aws, role_arns=[world["payments"]])
    by_arn = inventory.role(world["payments"])
    assert world["payments"].endswith(":role/workloads/payments-api")
    assert inventory.role(f"arn:aws:iam::{world['account']}:role/payments-api") is by_arn
    assert inventory.role("payments-api") is by_arn
    assert inventory.role("nobody") is None
    assert inventory.role(f"arn:aws:iam::{world['account']}:user/payments-api") is None


def test_whole_account_makes_absence_evidence(aws, world):
    inventory = load_iam_live(aws)
    assert sorted(role.name for role in inventory.roles.values()) == [
        "eks-cluster", "payments-api", "prod-nodes", "reports", "reports-pod-identity"
    ]
    assert world["payments"] in inventory.roles
    assert inventory.iam_accounts == {world["account"]}
    assert inventory.role_status(f"arn:aws:iam::{world['account']}:role/deleted") == "missing"
    assert inventory.role_status("arn:aws:iam::999988887777:role/deleted") == "unknown"
    node = inventory.role(world["node"])
    assert [name for name, _ in node.policies] == ["node-basics"]
    payments = inventory.role(world["payments"])
    assert dict(payments.policies)["payments-data"]["Statement"][0]["Resource"] == "arn:aws:s3:::payments/*"
    assert payments.permissions_boundary is not None
    assert {IAM, OIDC} <= inventory.complete
    assert inventory.notes == []  # OIDC providers were listed for the account


def test_refusals_become_gaps_never_crashes(moto, aws, world):
    iam = aws.client("iam")
    keys = {}
    grants = {
        # may read roles but not inline policy documents, nor OIDC providers
        "auditor": ["iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
                    "iam:GetPolicy", "iam:GetPolicyVersion"],
        "nobody": ["iam:ListOpenIDConnectProviders"],
    }
    for user, actions in grants.items():
        iam.create_user(UserName=user)
        grant = json.dumps(policy(allow(actions)))
        iam.put_user_policy(UserName=user, PolicyName="grant", PolicyDocument=grant)
        keys[user] = iam.create_access_key(UserName=user)["AccessKey"]

    def as_user(user: str) -> boto3.Session:
        return keyed_session(moto, "eu-west-1", keys[user]["AccessKeyId"], keys[user]["SecretAccessKey"])

    with enforced_iam(moto):
        auditor = load_iam_live(as_user("auditor"), role_arns=[world["payments"]])
        nobody = load_iam_live(as_user("nobody"), role_arns=[world["payments"]])
        whole = load_iam_live(as_user("auditor"))
        clusters = load_eks_live(as_user("auditor"), ["prod"], ["eu-west-1"])

    role = auditor.role(world["payments"])
    assert role is not None and not role.policies_complete
    assert [name for name, _ in role.policies] == ["payments-data"]  # the managed one was readable
    assert role.unresolved == [
        "inline policy queue: refused: AccessDenied: User: arn:aws:iam::123456789012:user/auditor "
        "is not authorized to perform: iam:GetRolePolicy"
    ]
    assert IAM not in auditor.complete and OIDC not in auditor.complete
    assert "role payments-api: inline policy queue: refused: AccessDenied" in auditor.gaps[IAM][0]
    assert auditor.gaps[OIDC] == [
        "iam:ListOpenIDConnectProviders: refused: AccessDenied: User: arn:aws:iam::123456789012:user/auditor "
        "is not authorized to perform: iam:ListOpenIDConnectProviders"
    ]

    # Refused get_role: the role is unknown, never "not found".
    assert nobody.roles == {} and nobody.missing_roles == set()
    assert nobody.role_status(world["payments"]) == "unknown"
    assert "iam:GetRole payments-api: refused: AccessDenied" in nobody.gaps[IAM][0]
    # Listed but not readable: the provider's issuer is known from its ARN, its thumbprints are not.
    provider = nobody.provider_for_issuer(world["issuer_url"])
    assert provider is not None and not provider.details_known and provider.thumbprints == []
    assert nobody.provider_status(world["issuer_url"], world["account"]) == "found"
    assert OIDC not in nobody.complete
    assert "iam:GetOpenIDConnectProvider" in nobody.gaps[OIDC][0]

    assert whole.roles == {} and whole.iam_accounts == set()
    assert "iam:GetAccountAuthorizationDetails: refused: AccessDenied" in whole.gaps[IAM][0]

    # EKS under moto's enforced auth answers a bare 403: a gap, not a crash, not "no cluster".
    (cluster,) = clusters
    assert cluster.oidc_issuer is None and not cluster.described
    assert cluster.gaps[EKS] == "eks:DescribeCluster prod: refused: HTTP 403"
    inventory = Inventory().with_clusters(clusters)
    assert inventory.clusters == [] and EKS not in inventory.complete
    assert inventory.gaps[EKS] == ["cluster prod: eks:DescribeCluster prod: refused: HTTP 403"]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_endpoint_is_a_gap(tmp_path):
    closed = f"http://127.0.0.1:{closed_port()}"
    config = tmp_path / "config"
    config.write_text(
        f"[profile down]\nendpoint_url = {closed}\nregion = eu-west-1\n"
        "aws_access_key_id = testing\naws_secret_access_key = testing\n"
        "retry_mode = standard\nmax_attempts = 1\n"
    )
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(config))
    core.set_config_variable("credentials_file", str(tmp_path / "none"))
    core.set_config_variable("profile", "down")
    session = boto3.Session(botocore_session=core)

    inventory = load_iam_live(session, role_arns=["arn:aws:iam::111122223333:role/x"])
    assert inventory.complete == set()
    assert inventory.gaps[IAM] == [
        "arn:aws:iam::111122223333:role/x not read: the session's account is unknown "
        f'(sts:GetCallerIdentity: Could not connect to the endpoint URL: "{closed}/")'
    ]
    assert inventory.gaps[OIDC][0].startswith("iam:ListOpenIDConnectProviders: Could not connect")
    (cluster,) = load_eks_live(session, ["prod"])
    assert cluster.gaps[EKS].startswith("eks:DescribeCluster prod: Could not connect")


# --------------------------------------------------------------------------
# EKS live
# --------------------------------------------------------------------------


def test_cluster_issuer_node_roles_and_pod_identity(aws, world):
    eks = aws.client("eks")
    try:
        eks.create_pod_identity_association(
            clusterName="prod",
            namespace="reports",
            serviceAccount="nightly",
            roleArn=f"arn:aws:iam::{world['account']}:role/reports-pod-identity",
        )
        pod_identity_implemented = True
    except eks.exceptions.ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404  # moto 5.2: not implemented
        pod_identity_implemented = False

    (cluster,) = load_eks_live(aws, ["prod"], ["us-east-1", "eu-west-1"])

    assert (cluster.name, cluster.region, cluster.account) == ("prod", "eu-west-1", world["account"])
    assert cluster.arn == world["cluster_arn"]
    assert cluster.oidc_issuer == world["issuer_url"]
    assert cluster.oidc_issuer.startswith("https://oidc.eks.eu-west-1.amazonaws.com/id/")
    assert cluster.issuer_host_path == world["issuer"]
    assert cluster.node_role_arns == [world["node"]]  # two node groups, one role
    if pod_identity_implemented:
        (association,) = cluster.pod_identity_associations
        assert (association.namespace, association.service_account) == ("reports", "nightly")
        assert POD_IDENTITY not in cluster.gaps
    else:
        assert cluster.pod_identity_associations == []
        assert cluster.gaps == {
            POD_IDENTITY: "Pod Identity associations of prod: not available at this endpoint (HTTP 404)"
        }

    inventory = load_iam_live(aws, role_arns=[world["payments"]]).with_clusters([cluster])
    assert {IAM, OIDC, EKS, NODE_ROLES} <= inventory.complete
    assert (POD_IDENTITY in inventory.complete) is pod_identity_implemented
    assert inventory.node_role_arns() == {world["node"]}
    assert inventory.cluster_for_issuer(world["issuer_url"]) is cluster
    assert inventory.cluster_for_issuer(world["provider"]) is cluster
    assert inventory.cluster_for_issuer(world["issuer"] + "/") is cluster
    assert inventory.cluster_for_issuer("https://oidc.eks.eu-west-1.amazonaws.com/id/OTHER") is None
    assert inventory.cluster("prod") is cluster and inventory.cluster(world["cluster_arn"]) is cluster


def test_clusters_by_arn_by_listing_and_not_found(aws, world):
    us = aws.client("eks", region_name="us-east-1")
    us.create_cluster(name="edge", roleArn=world["payments"], resourcesVpcConfig={})

    namesake = world["cluster_arn"].replace(world["account"], "999988887777")
    by_arn, edge, ghost, foreign = load_eks_live(
        aws, [world["cluster_arn"], "edge", "ghost", namesake], ["eu-west-1", "us-east-1"]
    )
    assert (foreign.account, foreign.arn, foreign.oidc_issuer) == ("999988887777", namesake, None)
    assert foreign.gaps[EKS] == (
        f"{namesake} is not readable with this session (it reads {world['account']})"
    )
    assert (by_arn.name, by_arn.region) == ("prod", "eu-west-1")
    assert (edge.name, edge.region, edge.node_role_arns) == ("edge", "us-east-1", [])
    assert edge.oidc_issuer.startswith("https://oidc.eks.us-east-1.amazonaws.com/id/")
    assert not ghost.described and ghost.gaps[EKS] == "not found in eu-west-1, us-east-1"

    listed = load_eks_live(aws, [], ["eu-west-1", "us-east-1"])
    assert [(c.name, c.region) for c in listed] == [("prod", "eu-west-1"), ("edge", "us-east-1")]

    inventory = Inventory().with_clusters([by_arn, edge, ghost])
    assert [c.name for c in inventory.clusters] == ["prod", "edge"]
    assert EKS not in inventory.complete
    assert inventory.gaps[EKS] == ["cluster ghost: not found in eu-west-1, us-east-1"]
    assert inventory.cluster(namesake) is None


# --------------------------------------------------------------------------
# IAM from files
# --------------------------------------------------------------------------


def test_authorization_details_file_from_moto(aws, tmp_path, world):
    path = write_json(tmp_path / "iam.json", authorization_details(aws))

    inventory = load_iam_file(path)
    live = load_iam_live(aws)

    assert inventory.roles == live.roles
    assert inventory.complete == {IAM}  # no OIDC providers in this output…
    assert inventory.oidc_providers == {}
    assert inventory.notes == [  # …and it says so
        f"OIDC providers of account {world['account']} were not read, so a missing provider cannot be told: "
        "get-account-authorization-details does not include them (add the `aws iam "
        "list-open-id-connect-providers` output (or an OpenIDConnectProviderList with "
        "Url/ClientIDList/ThumbprintList) as another --iam file, or read IAM live)"
    ]
    assert inventory.provider_status(world["issuer_url"], world["account"]) == "unknown"
    assert inventory.role_status(f"arn:aws:iam::{world['account']}:role/deleted") == "missing"

    # With the provider list beside it, a missing provider becomes a fact.
    providers = write_json(tmp_path / "oidc.json", oidc_provider_list(aws))
    both = merge_inventories([inventory, load_iam_file(providers)])
    assert {IAM, OIDC} <= both.complete and both.notes == []
    assert both.provider_status(world["issuer_url"], world["account"]) == "found"
    assert both.provider_status(GONE_ISSUER, world["account"]) == "missing"


def test_url_encoded_documents_read_the_same(aws, tmp_path, world):
    details = authorization_details(aws)
    plain = load_iam_file(write_json(tmp_path / "plain.json", details))
    encoded_details = url_encoded(details)
    trust = encoded_details["RoleDetailList"][0]["AssumeRolePolicyDocument"]
    assert isinstance(trust, str) and trust.startswith("%7B%22Version%22")
    encoded = load_iam_file(write_json(tmp_path / "encoded.json", encoded_details))
    assert encoded.roles == plain.roles


def test_saved_fixture_for_account_111122223333():
    inventory = merge_inventories(
        [load_iam_file(DATA / "authorization-details.json"), load_iam_file(DATA / "oidc-providers.json")]
    )
    assert inventory.complete == {IAM, OIDC}
    assert inventory.iam_accounts == {FIXTURE_ACCOUNT} == inventory.oidc_accounts
    payments = inventory.role(f"arn:aws:iam::{FIXTURE_ACCOUNT}:role/payments-api")
    assert payments.trust_policy == irsa_trust(FIXTURE_ACCOUNT, FIXTURE_ISSUER, "payments", "api")
    assert [name for name, _ in payments.policies] == ["queue", "payments-data"]
    assert payments.boundary_arn == f"arn:aws:iam::{FIXTURE_ACCOUNT}:policy/workload-boundary"
    reports = inventory.role("reports")
    assert reports.trust_policy == irsa_trust(FIXTURE_ACCOUNT, FIXTURE_ISSUER, "reports", "*", "StringLike")
    assert inventory.role("prod-nodes").trust_policy == SERVICE_TRUST["ec2"]
    provider = inventory.provider_for_issuer(f"https://{FIXTURE_ISSUER}", FIXTURE_ACCOUNT)
    assert provider is not None and provider.thumbprints == [THUMBPRINT] and provider.details_known


def test_files_of_several_accounts_merge(moto, aws, tmp_path, world):
    other = account_session(moto, aws, FIXTURE_ACCOUNT)
    make_role(other.client("iam"), "payments-api", SERVICE_TRUST["ec2"])
    first = load_iam_file(write_json(tmp_path / "a.json", authorization_details(aws)))
    second = load_iam_file(write_json(tmp_path / "b.json", authorization_details(other)))
    providers = load_iam_file(write_json(tmp_path / "oidc.json", oidc_provider_list(aws)))

    inventory = merge_inventories([first, second, providers])

    assert inventory.iam_accounts == {world["account"], FIXTURE_ACCOUNT}
    assert inventory.role(f"arn:aws:iam::{FIXTURE_ACCOUNT}:role/payments-api").account == FIXTURE_ACCOUNT
    assert inventory.role(world["payments"]).account == world["account"]
    assert inventory.role("payments-api") is None  # two accounts: a bare name is ambiguous
    assert inventory.role_status(f"arn:aws:iam::{FIXTURE_ACCOUNT}:role/gone") == "missing"
    # OIDC providers were listed for the moto account only.
    assert inventory.provider_status(world["issuer_url"], world["account"]) == "found"
    assert inventory.provider_status(world["issuer_url"], FIXTURE_ACCOUNT) == "unknown"
    assert inventory.oidc_accounts == {world["account"]}
    (note,) = inventory.notes
    assert note.startswith(f"OIDC providers of account {FIXTURE_ACCOUNT} were not read")


def test_provider_list_without_details(aws, tmp_path, world):
    listed = oidc_provider_list(aws, details=False)
    assert listed == {"OpenIDConnectProviderList": [{"Arn": world["provider"]}]}
    inventory = load_iam_file(write_json(tmp_path / "list.json", listed))
    provider = inventory.provider_for_issuer(world["issuer_url"])
    assert provider == OidcProvider(world["provider"], world["issuer"], [], [], details_known=False)
    assert inventory.complete == {OIDC} and inventory.oidc_accounts == {world["account"]}


def test_truncated_page_and_missing_policy_documents_are_gaps(aws, tmp_path, world):
    details = authorization_details(aws)
    details["IsTruncated"] = True
    details["Marker"] = "next-page"
    page = load_iam_file(write_json(tmp_path / "page.json", details))
    assert IAM not in page.complete and page.iam_accounts == set()
    assert "is one page of a paginated answer" in page.gaps[IAM][0]
    assert page.role_status(f"arn:aws:iam::{world['account']}:role/deleted") == "unknown"

    # `--filter Role` leaves managed policies out: their documents are unknown, not empty.
    roles_only = authorization_details(aws)
    roles_only["Policies"] = []
    inventory = load_iam_file(write_json(tmp_path / "roles.json", roles_only))
    payments = inventory.role(world["payments"])
    assert payments.unresolved == [world["data_policy"], world["boundary"]]
    assert payments.permissions_boundary is None and payments.boundary_arn == world["boundary"]
    assert [name for name, _ in payments.policies] == ["queue"]
    assert IAM not in inventory.complete
    assert "policy document(s) not in the file" in inventory.gaps[IAM][0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "IAM file is not valid JSON (Expecting property name enclosed in double quotes"),
        (b'{"RoleDetailList": ["\x80"]}', "IAM file is not UTF-8 JSON text"),
        (b"[]", "IAM file holds a JSON array, not an object"),
        (b'{"UserDetailList": []}', "no RoleDetailList or OpenIDConnectProviderList"),
        (b'{"RoleDetailList": {}}', "RoleDetailList is a JSON object, not a list"),
        (b'{"RoleDetailList": [{"RoleName": "x"}]}', "RoleDetailList[0] is not a role (no Arn)"),
        (
            b'{"RoleDetailList": [{"Arn": "arn:aws:iam::111122223333:role/x", "RoleName": "x",'
            b' "AssumeRolePolicyDocument": "%7B%22Statement%22%3A"}]}',
            "RoleDetailList[0] (x) trust policy is not valid JSON",
        ),
        (
            b'{"RoleDetailList": [], "Policies": [{"Arn": "arn:aws:iam::111122223333:policy/p",'
            b' "PolicyVersionList": [{"IsDefaultVersion": true,'
            b' "Document": {"Statement": [{"Effect": "Maybe"}]}}]}]}',
            'Policies[0] (arn:aws:iam::111122223333:policy/p) default version statement #0 has Effect',
        ),
        (b'{"OpenIDConnectProviderList": [{"Arn": "arn:aws:iam::1:role/x"}]}', "is not an OIDC provider"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "iam.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_iam_file(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_unreadable_file(tmp_path):
    with pytest.raises(InputError, match=r"absent\.json: cannot read IAM file \(No such file or directory\)"):
        load_iam_file(tmp_path / "absent.json")
    with pytest.raises(InputError, match="cannot read IAM file"):
        load_iam_file(tmp_path)


# --------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        "https://OIDC.EKS.eu-west-1.amazonaws.com/id/ABC/",
        "oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC",
    ],
)
def test_issuer_forms(value):
    assert issuer_of(value) == "oidc.eks.eu-west-1.amazonaws.com/id/ABC"


def test_issuer_id_stays_case_sensitive():
    assert issuer_of("https://oidc.eks.eu-west-1.amazonaws.com/id/abc").endswith("/id/abc")


def test_service_accounts_are_held_and_merge_keeps_completeness():
    role = "arn:aws:iam::111122223333:role/payments-api"
    accounts = [
        ServiceAccount("prod", "payments", "api", role_arn=role),
        ServiceAccount("prod", "payments", "worker"),
    ]
    cluster = Cluster(
        "prod",
        "eu-west-1",
        "111122223333",
        "arn:aws:eks:eu-west-1:111122223333:cluster/prod",
        "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        ["arn:aws:iam::111122223333:role/nodes"],
        gaps={POD_IDENTITY: "not available"},
    )
    inventory = Inventory().with_service_accounts(accounts).with_clusters([cluster])
    assert inventory.complete == {KUBERNETES, EKS, NODE_ROLES}
    assert inventory.service_accounts_for_role(role) == [accounts[0]]
    assert inventory.gap_reasons(POD_IDENTITY) == ["cluster prod: not available"]
    assert inventory.node_role_arns() == {"arn:aws:iam::111122223333:role/nodes"}
    # Merging the same parts again changes nothing.
    assert inventory.merge(inventory) == inventory


# --------------------------------------------------------------------------
# Regenerating tests/data/iam/
# --------------------------------------------------------------------------


def regenerate_fixtures() -> None:
    """Rebuild the saved documents from moto: account 111122223333, cluster prod in eu-west-1."""
    with MotoServer() as server:
        session = account_session(server, server.session("eu-west-1"), FIXTURE_ACCOUNT)
        build_account_iam(session.client("iam"), FIXTURE_ACCOUNT, f"https://{FIXTURE_ISSUER}")
        DATA.mkdir(parents=True, exist_ok=True)
        write_json(DATA / "authorization-details.json", authorization_details(session))
        write_json(DATA / "oidc-providers.json", oidc_provider_list(session))


if __name__ == "__main__":
    regenerate_fixtures()
    print(f"wrote {DATA}", file=sys.stderr)
