"""Causes asserted only on evidence that covers the case (issue: never a confident wrong answer).

- A service-account list speaks only for its own cluster: an empty list, or one saved from
  another cluster, never yields SA_NOT_FOUND, SA_NOT_ANNOTATED or ROLE_MISMATCH.
- What AWS and IAM already say is evidence: an empty OpenIDConnectProviderList, and STS's
  error codes and explicit messages in every spelling.
- Cross-account IRSA is not a role mismatch: the requested role's trust policy decides.

Records come from trailscan.generate's builders, the store is real DuckDB, and the
explanation runs through the same pipeline the CLI runs.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from trailscan.explain import collect_failures, explain_failures
from trailscan.explain.irsa import sts_code
from trailscan.generate import RoleSession, access_key_id, web_identity_call
from trailscan.inventory import Inventory, authorization_details_inventory, merge_inventories
from trailscan.kube import ServiceAccount, ServiceAccountSet, split_service_accounts_option
from trailscan.model import Window
from trailscan.store import Store

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=24), NOW)
REGION = "eu-west-1"
PROD, STAGING = "111122223333", "444455556666"
ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/PRODPRODPRODPRODPRODPRODPRODPROD"
OTHER_ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/STAGINGSTAGINGSTAGINGSTAGING0000"


def provider(account: str = PROD, issuer: str = ISSUER) -> str:
    return f"arn:aws:iam::{account}:oidc-provider/{issuer}"


def role_arn(name: str, account: str = PROD) -> str:
    return f"arn:aws:iam::{account}:role/{name}"


def trust(namespace: str, name: str, *, federated: str | None = None, issuer: str = ISSUER) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Federated": federated or provider(issuer=issuer)},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:{namespace}:{name}",
                                       f"{issuer}:aud": "sts.amazonaws.com"}},
    }]}


def iam(*roles: tuple[str, dict], providers: list[str] | None = None, account: str = PROD) -> Inventory:
    document: dict = {"RoleDetailList": [
        {"Arn": role_arn(name, account), "RoleName": name, "AssumeRolePolicyDocument": policy,
         "RolePolicyList": [], "AttachedManagedPolicies": []}
        for name, policy in roles
    ], "Policies": []}
    if providers is not None:
        document["OpenIDConnectProviderList"] = [{"Arn": arn} for arn in providers]
    return authorization_details_inventory(document, source=f"iam-{account}.json")


def sa(namespace: str, name: str, role: str | None = None, cluster: str = "") -> ServiceAccount:
    return ServiceAccount(cluster, namespace, name, role_arn=role)


class Trail:
    """Refused and accepted web identities of one or two clusters, in a real store."""

    def __init__(self) -> None:
        self.rng = random.Random(7)
        self.records: list[dict] = []

    def refused(self, namespace: str, name: str, role: str, *, count: int = 2, issuer: str = ISSUER,
                code: str = "AccessDenied", message: str = "An unknown error occurred", account: str = PROD) -> None:
        for index in range(count):
            self.records.append(web_identity_call(
                self.rng, when=NOW - timedelta(minutes=5 + index), region=REGION, account=account,
                provider_arn=provider(account, issuer), subject=f"system:serviceaccount:{namespace}:{name}",
                role_arn=role, error_code=code, error_message=message,
            ))

    def accepted(self, namespace: str, name: str, role: str, *, issuer: str = ISSUER, account: str = PROD) -> None:
        session = RoleSession(account, role.rsplit("/", 1)[-1], "botocore-session-1", access_key_id(self.rng))
        self.records.append(web_identity_call(
            self.rng, when=NOW - timedelta(hours=2), region=REGION, account=account,
            provider_arn=provider(account, issuer), subject=f"system:serviceaccount:{namespace}:{name}",
            role_arn=role, session=session,
        ))

    def explain(self, inventory: Inventory):
        with Store.open(":memory:") as store:
            store.ingest_documents([orjson.dumps({"Records": self.records})], origin="test")
            return explain_failures(collect_failures(store, WINDOW), inventory)


def with_lists(base: Inventory, *lists: ServiceAccountSet) -> Inventory:
    return base.with_service_account_sets(lists)


def irsa_finding(report):
    [finding] = [f for f in report.findings if f.kind == "irsa"]
    return finding


@pytest.fixture
def prod_trail() -> Trail:
    """prod: payments/api refused for its role; three other workloads get credentials."""
    trail = Trail()
    for namespace, name in (("monitoring", "agent"), ("orders", "worker"), ("kube-system", "ebs-csi")):
        trail.accepted(namespace, name, role_arn(f"{namespace}-{name}"))
    trail.refused("payments", "api", role_arn("payments-api"))
    return trail


def prod_accounts(*extra: ServiceAccount) -> tuple[ServiceAccount, ...]:
    return (
        sa("monitoring", "agent", role_arn("monitoring-agent")),
        sa("orders", "worker", role_arn("orders-worker")),
        sa("kube-system", "ebs-csi", role_arn("kube-system-ebs-csi")),
        sa("payments", "default"),
        *extra,
    )


PROD_IAM = iam(("payments-api", trust("payments", "api")), providers=[provider()])


# -- 2. an inventory only speaks for its own cluster ------------------------------------------------


def test_the_own_clusters_untagged_list_is_evidence(prod_trail):
    report = prod_trail.explain(with_lists(PROD_IAM, ServiceAccountSet("sa.json", prod_accounts())))
    finding = irsa_finding(report)
    assert finding.cause == "SA_NOT_FOUND", finding.explanation
    assert any("sa.json taken as the service accounts of cluster" in note for note in report.notes)


@pytest.mark.parametrize("listing", [
    ServiceAccountSet("empty.json", ()),
    ServiceAccountSet("empty.json", (), tag="prod"),
    ServiceAccountSet("empty.json", (), issuer=f"https://{ISSUER}"),
])
def test_an_empty_list_is_a_warning_never_evidence(prod_trail, listing):
    report = prod_trail.explain(with_lists(PROD_IAM, listing))
    finding = irsa_finding(report)
    assert finding.cause == "UNEXPLAINED"
    assert "whether payments/api exists" in finding.explanation
    assert any("holds no service account" in note for note in report.notes)


def test_a_list_from_another_cluster_is_not_evidence(prod_trail):
    """staging's list, saved from the wrong kube context: none of prod's workloads in it."""
    staging = ServiceAccountSet("staging.json", (
        sa("search", "indexer", role_arn("search-indexer", STAGING)),
        sa("payments", "default"),
        sa("payments", "api-v2", role_arn("payments-api-v2", STAGING)),
    ))
    report = prod_trail.explain(with_lists(PROD_IAM, staging))
    assert irsa_finding(report).cause == "UNEXPLAINED"
    assert any("staging.json is not tied to a cluster" in note for note in report.notes)


def test_a_clone_clusters_list_with_the_same_names_is_not_evidence(prod_trail):
    """The same charts deployed in staging: the same service accounts, annotated with staging's roles."""
    clone = ServiceAccountSet("staging.json", tuple(
        sa(a.namespace, a.name, a.role_arn.replace(PROD, STAGING) if a.role_arn else None) for a in prod_accounts()
    ))
    assert irsa_finding(prod_trail.explain(with_lists(PROD_IAM, clone))).cause == "UNEXPLAINED"


def test_a_list_that_fits_two_clusters_is_not_evidence():
    trail = Trail()
    shared = role_arn("shared-agent")
    trail.accepted("monitoring", "agent", shared, issuer=ISSUER)
    trail.accepted("monitoring", "agent", shared, issuer=OTHER_ISSUER)
    trail.refused("payments", "api", role_arn("payments-api"))
    listing = ServiceAccountSet("sa.json", (sa("monitoring", "agent", shared), sa("payments", "default")))
    report = trail.explain(with_lists(PROD_IAM, listing))
    assert irsa_finding(report).cause == "UNEXPLAINED"
    assert any("fits 2 clusters" in note for note in report.notes)


def test_a_list_tagged_with_another_cluster_does_not_speak_for_this_one(prod_trail):
    tagged = ServiceAccountSet("sa.json", prod_accounts(), tag=OTHER_ISSUER)
    assert irsa_finding(prod_trail.explain(with_lists(PROD_IAM, tagged))).cause == "UNEXPLAINED"


def test_a_tagged_list_is_its_clusters_without_other_evidence():
    """No workload of the cluster obtained credentials in the window: the tag alone decides."""
    trail = Trail()
    trail.refused("payments", "api", role_arn("payments-api"))
    listing = ServiceAccountSet("sa.json", (sa("payments", "default"),), tag=ISSUER)
    assert irsa_finding(trail.explain(with_lists(PROD_IAM, listing))).cause == "SA_NOT_FOUND"
    untagged = ServiceAccountSet("sa.json", (sa("payments", "default"),))
    assert irsa_finding(trail.explain(with_lists(PROD_IAM, untagged))).cause == "UNEXPLAINED"


def test_a_tagged_list_that_cloudtrail_contradicts_is_not_evidence(prod_trail):
    """Tagged prod, but none of prod's working service accounts is in it: the wrong file."""
    wrong = ServiceAccountSet("sa.json", (sa("search", "indexer"), sa("payments", "default")), tag=ISSUER)
    report = prod_trail.explain(with_lists(PROD_IAM, wrong))
    assert irsa_finding(report).cause == "UNEXPLAINED"
    assert any("not used as evidence" in note for note in report.notes)


def test_a_namespace_the_list_does_not_cover_is_not_evidence(prod_trail):
    """Every namespace has its default service account: a list without payments' does not cover it."""
    partial = ServiceAccountSet("sa.json", prod_accounts()[:3])
    finding = irsa_finding(prod_trail.explain(with_lists(PROD_IAM, partial)))
    assert finding.cause == "UNEXPLAINED" and "none in namespace payments" in finding.explanation


REFUSING_IAM = iam(("payments-api", trust("payments", "legacy")), providers=[provider()])


@pytest.mark.parametrize("accounts, cause", [
    (prod_accounts(sa("payments", "api")), "SA_NOT_ANNOTATED"),
    (prod_accounts(sa("payments", "api", role_arn("payments-api-v2"))), "ROLE_MISMATCH"),
])
def test_the_other_service_account_causes_need_the_own_clusters_list(prod_trail, accounts, cause):
    own = ServiceAccountSet("sa.json", accounts)
    assert irsa_finding(prod_trail.explain(with_lists(REFUSING_IAM, own))).cause == cause
    other = ServiceAccountSet("sa.json", accounts, issuer=f"https://{OTHER_ISSUER}")
    assert irsa_finding(prod_trail.explain(with_lists(REFUSING_IAM, other))).cause != cause


@pytest.mark.parametrize("value, expected", [
    ("prod=sa.json", ("prod", "sa.json")),
    ("sa.json", ("", "sa.json")),
    ("oidc.eks.eu-west-1.amazonaws.com/id/ABC=dir/sa.json", ("oidc.eks.eu-west-1.amazonaws.com/id/ABC", "dir/sa.json")),
    ("=sa.json", ("", "=sa.json")),
])
def test_service_accounts_option_takes_a_cluster_tag(value, expected):
    assert split_service_accounts_option(value) == expected


def test_a_file_whose_name_holds_an_equals_sign_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a=b.json").write_text("[]")
    assert split_service_accounts_option("a=b.json") == ("", "a=b.json")


# -- 3. what AWS and IAM already say -----------------------------------------------------------------


def test_an_empty_provider_list_is_evidence_that_there_is_none(prod_trail):
    roles = iam(("payments-api", trust("payments", "api")))
    listed = authorization_details_inventory({"OpenIDConnectProviderList": []}, source="oidc.json")
    report = prod_trail.explain(merge_inventories([roles, listed]))
    assert irsa_finding(report).cause == "OIDC_PROVIDER_MISSING"
    # Without the list, a missing provider cannot be told.
    assert irsa_finding(prod_trail.explain(roles)).cause == "UNEXPLAINED"


def test_an_empty_provider_list_is_not_evidence_when_its_account_is_unknown(prod_trail):
    roles = merge_inventories([
        iam(("payments-api", trust("payments", "api"))),
        iam(("search", trust("search", "indexer")), account=STAGING),
    ])
    listed = authorization_details_inventory({"OpenIDConnectProviderList": []}, source="oidc.json")
    report = prod_trail.explain(merge_inventories([roles, listed]))
    assert irsa_finding(report).cause == "UNEXPLAINED"
    assert any("does not say whose it is" in note for note in report.notes)


@pytest.mark.parametrize("spelling, canonical", [
    ("InvalidIdentityToken", "InvalidIdentityToken"),
    ("InvalidIdentityTokenException", "InvalidIdentityToken"),
    ("Client.InvalidIdentityToken", "InvalidIdentityToken"),
    ("ExpiredToken", "ExpiredToken"),
    ("ExpiredTokenException", "ExpiredToken"),
    ("IDPCommunicationError", "IDPCommunicationError"),
    ("IdpCommunicationErrorException", "IDPCommunicationError"),
    ("IDPRejectedClaimException", "IDPRejectedClaim"),
    ("AccessDenied", "AccessDenied"),
    ("SomethingNew", "SomethingNew"),
])
def test_sts_codes_in_every_spelling(spelling, canonical):
    assert sts_code(spelling) == canonical


THUMBPRINT = "OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint"
NO_PROVIDER = f"No OpenIDConnect provider found in your account for https://{ISSUER}"
NO_KEYS = ("Couldn't retrieve verification key from your identity provider,  please reference "
           "AssumeRoleWithWebIdentity documentation for requirements")
EXPIRED = "Token expired: current date/time 1764309600 must be before the expiration date/time 1764306000"


@pytest.mark.parametrize("code", ["InvalidIdentityToken", "InvalidIdentityTokenException", "AccessDenied", ""])
@pytest.mark.parametrize("message, cause", [
    (THUMBPRINT, "OIDC_THUMBPRINT_MISMATCH"),
    (NO_PROVIDER, "OIDC_PROVIDER_MISSING"),
    (NO_KEYS, "IDP_UNREACHABLE"),
    (EXPIRED, "TOKEN_EXPIRED"),
    ("Incorrect token audience", "TRUST_AUDIENCE_MISMATCH"),
])
def test_an_explicit_sts_message_decides_whatever_the_code(code, message, cause):
    trail = Trail()
    trail.refused("payments", "api", role_arn("payments-api"), code=code or "InvalidIdentityToken", message=message)
    # Nothing in the inventory: only AWS's own words can decide.
    assert irsa_finding(trail.explain(Inventory())).cause == cause


@pytest.mark.parametrize("code, cause", [
    ("ExpiredTokenException", "TOKEN_EXPIRED"),
    ("ExpiredToken", "TOKEN_EXPIRED"),
    ("IDPCommunicationErrorException", "IDP_UNREACHABLE"),
    ("IDPCommunicationError", "IDP_UNREACHABLE"),
])
def test_the_code_decides_when_the_message_says_nothing(code, cause):
    trail = Trail()
    trail.refused("payments", "api", role_arn("payments-api"), code=code, message="")
    assert irsa_finding(trail.explain(Inventory())).cause == cause


# -- 4. cross-account IRSA is not a role mismatch -------------------------------------------------------


def test_cross_account_irsa_is_judged_by_the_requested_roles_trust():
    """The pod asks STS for a role of account B directly (the documented cross-account
    pattern); B's role trusts A's OIDC provider, which STS never accepts for B's roles."""
    trail = Trail()
    target = role_arn("reports-reader", STAGING)
    trail.accepted("monitoring", "agent", role_arn("monitoring-agent"))
    trail.refused("reports", "exporter", target, account=STAGING)
    accounts = ServiceAccountSet("sa.json", (
        sa("monitoring", "agent", role_arn("monitoring-agent")),
        sa("reports", "exporter", role_arn("reports-exporter")),  # the source account's role
    ))
    target_iam = iam(("reports-reader", trust("reports", "exporter", federated=provider(PROD))),
                     providers=[provider(STAGING)], account=STAGING)
    report = trail.explain(with_lists(merge_inventories([PROD_IAM, target_iam]), accounts))
    finding = irsa_finding(report)
    assert finding.cause == "TRUST_PROVIDER_MISMATCH", finding.explanation
    assert "cross-account" in finding.explanation
    assert provider(STAGING) in finding.fix


def test_a_same_account_mismatch_whose_role_admits_the_token_is_not_the_cause(prod_trail):
    """The requested role trusts the token: asking for it is not why STS refused."""
    accounts = ServiceAccountSet("sa.json", prod_accounts(sa("payments", "api", role_arn("payments-api-v2"))))
    finding = irsa_finding(prod_trail.explain(with_lists(PROD_IAM, accounts)))
    assert finding.cause == "UNEXPLAINED"
    assert "the mismatch is not why STS refused" in finding.explanation


def test_a_same_account_mismatch_whose_role_refuses_the_token_is_the_cause(prod_trail):
    accounts = ServiceAccountSet("sa.json", prod_accounts(sa("payments", "api", role_arn("payments-api-v2"))))
    finding = irsa_finding(prod_trail.explain(with_lists(REFUSING_IAM, accounts)))
    assert finding.cause == "ROLE_MISMATCH"
    assert "kubectl rollout restart deployment -n payments" in finding.fix


def test_tagging_by_cli_and_a_kube_context_announcing_another_issuer(tmp_path):
    """End to end: a kube context whose API server announces another cluster's issuer never
    yields SA_NOT_FOUND; tagging the saved file with the right cluster does."""
    import shutil
    import subprocess
    import sys

    from tests.support.kube_api import KubeAPI, service_account

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    trail = Trail()
    trail.refused("payments", "api", role_arn("payments-api"))
    (tmp_path / "trail.json").write_text(json.dumps({"Records": trail.records}))
    (tmp_path / "iam.json").write_text(json.dumps({
        "RoleDetailList": [{"Arn": role_arn("payments-api"), "RoleName": "payments-api",
                            "AssumeRolePolicyDocument": trust("payments", "api")}],
        "Policies": [], "OpenIDConnectProviderList": [{"Arn": provider()}]}))
    (tmp_path / "sa.json").write_text(json.dumps({"kind": "List", "items": [
        {"metadata": {"namespace": "payments", "name": "default"}}]}))

    def since(*extra: str, env: dict | None = None) -> dict:
        done = subprocess.run(
            [sys.executable, "-m", "trailscan", "since", "24h", "--until", "2026-11-28T06:00:00Z", "--source", "files",
             "--path", str(tmp_path / "trail.json"), "--iam", str(tmp_path / "iam.json"), "--offline",
             "--db", ":memory:", "--format", "json", *extra],
            capture_output=True, text=True, env=env, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    import os

    accounts = [service_account("payments", "default")]
    with KubeAPI(accounts, context="staging", directory=tmp_path, issuer=f"https://{OTHER_ISSUER}") as api:
        env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "AWS_EC2_METADATA_DISABLED": "true"}
        [finding] = since("--kube-context", "staging", env=env)["findings"]
        assert finding["cause"] == "UNEXPLAINED"
    [finding] = since("--service-accounts", f"{ISSUER}={tmp_path / 'sa.json'}")["findings"]
    assert finding["cause"] == "SA_NOT_FOUND"
    [finding] = since("--service-accounts", str(tmp_path / "sa.json"))["findings"]
    assert finding["cause"] == "UNEXPLAINED" and "--service-accounts CLUSTER=" in finding["fix"]
