"""What changed (issue 20): change events in the store, attached to findings, and each
failure judged against the configuration in force when it happened.

Each scenario writes the CloudTrail records AWS writes (``trailscan.generate``'s builders,
IAM changes recorded in us-east-1 by an IAM user), holds today's inventory as the IAM
inventory would read it, and explains the real DuckDB store.
"""

from __future__ import annotations

import json
import random
import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from trailscan.cli import main
from trailscan.explain.changes import collect_changes
from trailscan.explain.run import explain_store
from trailscan.findings import findings_document
from trailscan.generate import api_call, iam_user_identity, web_identity_call
from trailscan.inventory import IAM, OIDC, Inventory, OidcProvider, Role
from trailscan.model import Window
from trailscan.queries import load_queries

ACCOUNT, REGION = "111122223333", "eu-west-1"
ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/5C1A7E0E5A1B2C3D4E5F60718293A4B5"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
ROLE = "payments-api"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
SUBJECT = "system:serviceaccount:payments:api"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=24), NOW)


def trust(subject: str = SUBJECT) -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER}:sub": subject, f"{ISSUER}:aud": "sts.amazonaws.com"}}}]}


BROKEN = trust("system:serviceaccount:payments:api-old")


def url_encoded(document: dict) -> str:
    """How IAM's CloudTrail records hold a policy document."""
    return urllib.parse.quote(json.dumps(document), safe="")


def change(rng, when, name, params, *, source="iam.amazonaws.com", region="us-east-1", response=None) -> dict:
    return api_call(rng, when=when, region=region, identity=iam_user_identity(ACCOUNT, "alice", "AKIAALICE00000000001"),
                    account=ACCOUNT, event_source=source, event_name=name, read_only=False,
                    request_parameters=params, response_elements=response)


def refused(rng, when) -> dict:
    return web_identity_call(rng, when=when, region=REGION, account=ACCOUNT, provider_arn=PROVIDER, subject=SUBJECT,
                             role_arn=ROLE_ARN, error_code="AccessDenied",
                             error_message="Not authorized to perform sts:AssumeRoleWithWebIdentity")


def failing(rng, start: datetime, end: datetime, every=timedelta(minutes=10)) -> list[dict]:
    out, when = [], start
    while when <= end:
        out.append(refused(rng, when))
        when += every
    return out


def inventory(trust_policy: dict | None, *, provider: bool = True) -> Inventory:
    roles = {ROLE_ARN: Role(ROLE_ARN, ROLE, ACCOUNT, trust_policy)} if trust_policy is not None else {}
    providers = {PROVIDER: OidcProvider(PROVIDER, ISSUER, ["sts.amazonaws.com"])} if provider else {}
    return Inventory(roles=roles, oidc_providers=providers, complete={IAM, OIDC},
                     iam_accounts={ACCOUNT}, oidc_accounts={ACCOUNT})


def explain(store, records, inv):
    store.ingest_documents([json.dumps({"Records": records})], origin="test")
    report = explain_store(store, inv, window=WINDOW)
    assert len(report.findings) == 1, [(f.cause, f.status) for f in report.findings]
    return report.findings[0], findings_document(report, NOW)["findings"][0]


def test_a_trust_policy_broken_by_a_change_is_ongoing_and_names_the_change_and_its_actor(store):
    rng = random.Random(1)
    broke = NOW - timedelta(hours=2)
    records = [
        change(rng, NOW - timedelta(hours=30), "CreateRole",
               {"roleName": ROLE, "assumeRolePolicyDocument": url_encoded(trust())}),
        change(rng, broke, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": url_encoded(BROKEN)}),
        *failing(rng, broke + timedelta(minutes=2), NOW - timedelta(minutes=5)),
    ]
    finding, document = explain(store, records, inventory(BROKEN))
    assert finding.cause == "TRUST_SUBJECT_MISMATCH"
    assert document["status"] == "ongoing"
    assert [c["event_name"] for c in document["changes"]] == ["CreateRole", "UpdateAssumeRolePolicy"]
    assert document["changes"][-1]["actor"] == ALICE and document["changes"][-1]["target"] == ROLE
    assert set(document["changes"][0]) == {"event_time", "event_name", "event_source", "actor", "target", "event_id"}
    assert f"began 2 min after UpdateAssumeRolePolicy on {ROLE} by {ALICE}" in finding.explanation
    assert document["policy_as_of"] is None  # nothing changed since: today's trust policy was in force
    assert finding.decisive_change.startswith("began after UpdateAssumeRolePolicy")


def test_a_failure_fixed_since_keeps_its_real_cause_judged_as_of_the_failure(store):
    rng = random.Random(2)
    broke, fixed = NOW - timedelta(hours=3), NOW - timedelta(minutes=50)
    records = [
        # As a JSON string this time: CloudTrail holds both spellings.
        change(rng, broke, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": json.dumps(BROKEN)}),
        *failing(rng, broke + timedelta(minutes=5), fixed - timedelta(minutes=5)),
        change(rng, fixed, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": url_encoded(trust())}),
    ]
    finding, document = explain(store, records, inventory(trust()))  # today's snapshot is correct
    assert finding.cause == "TRUST_SUBJECT_MISMATCH"
    assert document["status"] == "stopped"
    assert document["policy_as_of"] == "2026-11-28T12:00:00Z"
    assert "stopped after the trust policy was updated at 14:10 UTC" in finding.explanation
    assert finding.stopped_after is not None and finding.stopped_after.event_time == fixed
    assert finding.fix_summary.startswith("Already fixed: the trust policy was updated at 14:10 UTC")
    assert "Judged against the configuration in force at the failure" in finding.explanation


def test_today_alone_cannot_tell_the_fixed_cause(store):
    """The same failures without their change events: today's trust admits the token, so the
    cause is not the trust policy — what judging as of the failure corrects."""
    rng = random.Random(2)
    records = failing(rng, NOW - timedelta(hours=3), NOW - timedelta(hours=1))
    finding, document = explain(store, records, inventory(trust()))
    assert finding.cause != "TRUST_SUBJECT_MISMATCH"
    assert document["status"] == "ongoing" and document["changes"] == [] and document["policy_as_of"] is None
    # Read from eu-west-1 alone, the changes could not be read at all: a note says so.
    from trailscan.explain import collect_failures, explain_failures
    from trailscan.findings import CoverageRow

    failures = collect_failures(store, WINDOW)
    failures.coverage = [CoverageRow("files", ACCOUNT, REGION, "complete", len(records))]
    notes = explain_failures(failures, inventory(trust())).notes
    assert any(note.startswith("changes: no event of us-east-1 was read") for note in notes)
    failures.coverage.append(CoverageRow("files", ACCOUNT, "us-east-1", "empty", 0))
    assert not any(note.startswith("changes: no event of us-east-1")
                   for note in explain_failures(failures, inventory(trust())).notes)


def test_a_day_before_the_window_not_read_is_named(store):
    """Failures under way from the window's start may have begun after a change made the day
    before: when the store holds nothing of that day (a bucket or files read for the window
    only), a note says so; LookupEvents looks that day's change events up by name itself."""
    from trailscan.explain import collect_failures, explain_failures
    from trailscan.findings import CoverageRow
    from trailscan.store import Store

    rng = random.Random(4)

    def notes(into: Store, *sources: str) -> list[str]:
        failures = collect_failures(into, WINDOW)
        failures.coverage = [CoverageRow(source, ACCOUNT, region, "complete", 1)
                             for source in sources for region in (REGION, "us-east-1")]
        return [n for n in explain_failures(failures, inventory(trust("system:serviceaccount:payments:other"))).notes
                if n.startswith("changes: ") and "24 hours before the window" in n]

    def ingest(into: Store, *records: dict) -> None:
        into.ingest_documents([json.dumps({"Records": list(records)})], origin="test")

    ingest(store, *failing(rng, WINDOW.start + timedelta(minutes=30), WINDOW.start + timedelta(hours=2)))
    [note] = notes(store, "s3")
    assert note.startswith("changes: 1 finding failing from the window's start (TRUST_SUBJECT_MISMATCH of "
                           "payments/api) may have begun after a change made before it")
    assert "(2026-11-26T15:00:00Z – 2026-11-27T15:00:00Z)" in note
    assert "--since 2026-11-26T15:00:00Z --until 2026-11-27T15:00:00Z" in note
    assert notes(store, "lookup") == []  # it read that day's change events itself (none were made)
    assert len(notes(store, "lookup", "s3")) == 1
    # Any event of that day in the store: it was read.
    ingest(store, api_call(rng, when=WINDOW.start - timedelta(hours=20), region="us-east-1", account=ACCOUNT,
                           identity=iam_user_identity(ACCOUNT, "alice", "AKIAALICE00000000001"),
                           event_source="iam.amazonaws.com", event_name="GetRole"))
    assert notes(store, "s3") == []
    # Failures that began later in the window began after a change the window holds, if any.
    with Store.open(":memory:") as later:
        ingest(later, *failing(rng, WINDOW.start + timedelta(minutes=70), WINDOW.start + timedelta(hours=2)))
        assert notes(later, "s3") == []

def test_a_deleted_and_recreated_role_did_not_exist_at_the_failure(store):
    rng = random.Random(3)
    deleted, created = NOW - timedelta(hours=3), NOW - timedelta(minutes=30)
    records = [
        change(rng, NOW - timedelta(hours=40), "CreateRole",
               {"roleName": ROLE, "assumeRolePolicyDocument": url_encoded(trust())}),
        change(rng, deleted, "DeleteRole", {"roleName": ROLE}),
        *failing(rng, deleted + timedelta(minutes=1), created - timedelta(minutes=10)),
        change(rng, created, "CreateRole", {"roleName": ROLE, "assumeRolePolicyDocument": url_encoded(trust())}),
    ]
    finding, document = explain(store, records, inventory(trust()))
    assert finding.cause == "ROLE_NOT_FOUND"
    assert document["status"] == "stopped"
    assert document["policy_as_of"] == "2026-11-28T12:00:00Z"
    assert [c["event_name"] for c in document["changes"]] == ["CreateRole", "DeleteRole", "CreateRole"]
    assert "the role did not exist then" in finding.explanation


def test_an_oidc_provider_deleted_with_its_cluster(store):
    rng = random.Random(4)
    gone = NOW - timedelta(hours=2)
    records = [
        change(rng, gone, "DeleteCluster", {"name": "prod"}, source="eks.amazonaws.com", region=REGION,
               response={"cluster": {"name": "prod", "identity": {"oidc": {"issuer": f"https://{ISSUER}"}}}}),
        change(rng, gone + timedelta(minutes=1), "DeleteOpenIDConnectProvider", {"openIDConnectProviderArn": PROVIDER}),
        *failing(rng, gone + timedelta(minutes=3), NOW - timedelta(minutes=5)),
    ]
    finding, document = explain(store, records, inventory(trust(), provider=False))
    assert finding.cause == "OIDC_PROVIDER_MISSING"
    assert document["status"] == "ongoing"
    assert [c["event_name"] for c in document["changes"]] == ["DeleteCluster", "DeleteOpenIDConnectProvider"]
    assert "began 2 min after DeleteOpenIDConnectProvider" in finding.explanation
    assert document["policy_as_of"] is None  # the provider was as missing then as today


def test_change_events_decode_documents_and_reveal_no_secret(store):
    rng = random.Random(6)
    records = [
        change(rng, NOW - timedelta(hours=1), "PutRolePolicy",
               {"roleName": ROLE, "policyName": "s3", "policyDocument": url_encoded({"Statement": []})}),
        change(rng, NOW - timedelta(hours=1), "PutBucketPolicy",
               {"bucketName": "ledger", "bucketPolicy": {"Statement": []}}, source="s3.amazonaws.com"),
        # A refused change changed nothing.
        {**change(rng, NOW - timedelta(hours=1), "DeleteRole", {"roleName": ROLE}), "errorCode": "AccessDenied"},
        # Whatever a response held, credentials never reach the store.
        change(rng, NOW - timedelta(minutes=30), "CreateRole", {"roleName": "x", "assumeRolePolicyDocument": "{}"},
               response={"credentials": {"sessionToken": "IQoJb3JpZ2luX2VjSECRET", "secretAccessKey": "wJalrSECRET"}}),
    ]
    store.ingest_documents([json.dumps({"Records": records})], origin="test")
    found = collect_changes(store, WINDOW)
    assert [(c.name, c.change.target) for c in found] == [
        ("PutRolePolicy", ROLE), ("PutBucketPolicy", "ledger"), ("CreateRole", "x")]
    assert found[0].policy() == {"Statement": []} and found[1].policy() == {"Statement": []}
    query = load_queries()["change_events"]
    text = str(store.query(query.typed_sql(), query.bind({}))[1]) + str(store.query("SELECT raw FROM events")[1])
    assert "SECRET" not in text


def test_changes_command_lists_the_change_events(tmp_path):
    from trailscan.store import Store

    rng = random.Random(7)
    path = tmp_path / "t.duckdb"
    with Store.open(path) as store:
        store.ingest_documents([json.dumps({"Records": [
            change(rng, datetime.now(UTC) - timedelta(hours=1), "UpdateAssumeRolePolicy",
                   {"roleName": ROLE, "policyDocument": url_encoded(trust())}),
            change(rng, datetime.now(UTC) - timedelta(hours=1), "PutRolePolicy",
                   {"roleName": "other", "policyName": "p", "policyDocument": "{}"}),
        ]})], origin="test")
    result = CliRunner().invoke(main, ["changes", "--db", str(path), "--since", "24h", "--role", ROLE,
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["event_name"], r["target"], r["actor"]) for r in rows] == [("UpdateAssumeRolePolicy", ROLE, ALICE)]


def test_the_table_markdown_and_html_show_status_and_the_decisive_change(store):
    import io

    from trailscan.report.html import render_html
    from trailscan.report.terminal import render_findings

    rng = random.Random(2)
    broke, fixed = NOW - timedelta(hours=3), NOW - timedelta(minutes=50)
    store.ingest_documents([json.dumps({"Records": [
        change(rng, broke, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": json.dumps(BROKEN)}),
        *failing(rng, broke + timedelta(minutes=5), fixed - timedelta(minutes=5)),
        change(rng, fixed, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": url_encoded(trust())}),
    ]})], origin="test")
    report = explain_store(store, inventory(trust()), window=WINDOW)
    decisive = f"stopped after UpdateAssumeRolePolicy on {ROLE}"
    table, markdown = io.StringIO(), io.StringIO()
    render_findings(report, "table", table, generated_at=NOW)
    render_findings(report, "markdown", markdown, generated_at=NOW)
    assert "stopped" in table.getvalue() and "UpdateAssumeRolePolicy" in table.getvalue()
    assert f"**Status:** stopped, {decisive} by {ALICE} at 2026-11-28T14:10:00Z" in markdown.getvalue().replace("\\", "")
    assert f"stopped, {decisive} by {ALICE}" in render_html(findings_document(report, NOW))


def test_an_scp_attached_to_the_accounts_ou_is_the_change_the_denial_began_after(tmp_path):
    """The region guardrail of tests/test_denied_layers.py, attached from the management
    account 20 minutes before the first refusal (Organizations records in us-east-1)."""
    from tests.test_denied_layers import EC2_SILENT, Trail, denied, doc
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_layers import MGMT, OU, organization_files

    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
    attached = LAYERS_NOW - timedelta(minutes=61)
    trail.records.append(api_call(
        trail.rng, when=attached, region="us-east-1", account=MGMT,
        identity=iam_user_identity(MGMT, "alice", "AKIAALICE00000000002"), event_source="organizations.amazonaws.com",
        event_name="AttachPolicy", read_only=False, request_parameters={"policyId": "p-guard", "targetId": OU}))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", region="us-east-1")
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY"
    assert finding.status == "ongoing"
    assert [(c.event_name, c.target) for c in finding.changes] == [("AttachPolicy", "p-guard")]
    assert f"began 20 min after AttachPolicy on p-guard by arn:aws:iam::{MGMT}:user/alice" in finding.explanation
    assert finding.policy_as_of is None  # the SCP attached then is the one read today


def explain_with_role_today(store, tmp_path, trail, today: Role, *, extra: Inventory | None = None):
    """The denied-call finding of ``trail``, explained with ``today`` as the role's state now
    (and the organization's layers of ``test_layers``, and *extra*)."""
    from tests.test_denied_layers import PROD, denied
    from tests.test_denied_layers import WINDOW as LAYERS_WINDOW
    from tests.test_layers import organization_files
    from trailscan.explain import collect_failures, explain_failures
    from trailscan.kube import ServiceAccount
    from trailscan.layers import load_policy_file

    inv = Inventory(roles={today.arn: today}, complete={IAM}, iam_accounts={PROD}).with_service_accounts(
        [ServiceAccount("prod", "payments", "api")]).merge(
        *(Inventory(layers=load_policy_file(value)) for value in organization_files(tmp_path)), extra or Inventory())
    store.ingest_documents([json.dumps({"Records": trail.records})], origin="test")
    return denied(explain_failures(collect_failures(store, LAYERS_WINDOW), inv))


def test_a_denial_fixed_by_attaching_a_managed_policy_is_judged_without_it(store, tmp_path):
    """Today the role has ec2-read attached, which allows the refused call; it was attached
    after the refusals, so they are judged without it: their real cause, stopped."""
    from tests.test_denied_layers import EC2_SILENT, PROD, Trail, doc
    from tests.test_denied_layers import NOW as LAYERS_NOW

    trail = Trail()
    arn = trail.role("app")
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    policy_arn = f"arn:aws:iam::{PROD}:policy/ec2-read"
    trail.records.append(api_call(
        trail.rng, when=LAYERS_NOW - timedelta(minutes=20), region="us-east-1", account=PROD,
        identity=iam_user_identity(PROD, "alice", "AKIAALICE00000000003"), event_source="iam.amazonaws.com",
        event_name="AttachRolePolicy", read_only=False, request_parameters={"roleName": "app", "policyArn": policy_arn}))
    today = Role(arn, "app", PROD, trail.roles[0]["AssumeRolePolicyDocument"],
                 policies=[("ec2-read", doc({"Effect": "Allow", "Action": "ec2:DescribeVolumes", "Resource": "*"}))],
                 attached_policy_arns=[policy_arn])
    finding = explain_with_role_today(store, tmp_path, trail, today)
    assert finding.cause == "MISSING_PERMISSION", finding.explanation
    assert finding.status == "stopped"
    assert finding.policy_as_of == finding.first_seen
    assert f"before AttachRolePolicy of {policy_arn}" in finding.explanation
    assert finding.fix_summary.startswith("Already fixed: a managed policy was attached at 05:40 UTC")


def test_a_managed_policy_version_rolled_back_since_is_judged_with_the_version_in_force(store, tmp_path):
    """v2 of ec2-read (recorded by CreatePolicyVersion, made default) dropped ec2:DescribeVolumes;
    SetDefaultPolicyVersion back to v1 fixed it. Today's inventory holds v1: the refusals are
    judged with v2, the version in force then."""
    from tests.test_denied_layers import EC2_SILENT, PROD, Trail, doc
    from tests.test_denied_layers import NOW as LAYERS_NOW

    trail = Trail()
    arn = trail.role("app")
    policy_arn = f"arn:aws:iam::{PROD}:policy/ec2-read"
    alice = iam_user_identity(PROD, "alice", "AKIAALICE00000000004")
    v2 = doc({"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"})
    trail.records.append(api_call(
        trail.rng, when=LAYERS_NOW - timedelta(hours=3), region="us-east-1", account=PROD, identity=alice,
        event_source="iam.amazonaws.com", event_name="CreatePolicyVersion", read_only=False,
        request_parameters={"policyArn": policy_arn, "policyDocument": url_encoded(v2), "setAsDefault": True},
        response_elements={"policyVersion": {"versionId": "v2", "isDefaultVersion": True}}))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation")
    trail.records.append(api_call(
        trail.rng, when=LAYERS_NOW - timedelta(minutes=20), region="us-east-1", account=PROD, identity=alice,
        event_source="iam.amazonaws.com", event_name="SetDefaultPolicyVersion", read_only=False,
        request_parameters={"policyArn": policy_arn, "versionId": "v1"}))
    today = Role(arn, "app", PROD, trail.roles[0]["AssumeRolePolicyDocument"],
                 policies=[("ec2-read", doc({"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"}))],
                 attached_policy_arns=[policy_arn])
    finding = explain_with_role_today(store, tmp_path, trail, today)
    assert finding.cause == "MISSING_PERMISSION", finding.explanation
    assert finding.status == "stopped"
    assert finding.policy_as_of == LAYERS_NOW - timedelta(hours=3)
    assert [c.event_name for c in finding.changes] == ["CreatePolicyVersion", "SetDefaultPolicyVersion"]
    assert "as set by CreatePolicyVersion" in finding.explanation


def test_a_bucket_policy_deleted_since_is_judged_as_it_was(store, tmp_path):
    """The bucket policy that refused the pod (put three hours before, as S3 records it: an
    object) was deleted since; today the bucket has none. The refusals keep their cause."""
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import PROD, VPCE_ONLY, abac_trail
    from tests.test_denied_layers import WINDOW as LAYERS_WINDOW
    from tests.test_layers import organization_files
    from trailscan.explain import collect_failures, explain_failures
    from trailscan.inventory import authorization_details_inventory
    from trailscan.kube import ServiceAccount
    from trailscan.layers import load_policy_file

    trail = abac_trail("payments")
    alice = iam_user_identity(PROD, "alice", "AKIAALICE00000000005")
    for when, name, params in (
        (LAYERS_NOW - timedelta(hours=3), "PutBucketPolicy", {"bucketName": "team-data", "bucketPolicy": VPCE_ONLY}),
        (LAYERS_NOW - timedelta(minutes=20), "DeleteBucketPolicy", {"bucketName": "team-data"}),
    ):
        trail.records.append(api_call(trail.rng, when=when, region="eu-west-1", account=PROD, identity=alice,
                                      event_source="s3.amazonaws.com", event_name=name, read_only=False,
                                      request_parameters=params))
    path = tmp_path / "no-policy.txt"
    path.write_text("An error occurred (NoSuchBucketPolicy) when calling the GetBucketPolicy operation: "
                    "The bucket policy does not exist\n")
    layers = [f"arn:aws:s3:::team-data={path}", *organization_files(tmp_path)]
    inv = authorization_details_inventory({"RoleDetailList": trail.roles, "Policies": []}, source="iam.json")
    inv = inv.with_service_accounts([ServiceAccount("prod", "payments", "api")]).merge(
        *(Inventory(layers=load_policy_file(value)) for value in layers))
    store.ingest_documents([json.dumps({"Records": trail.records})], origin="test")
    [finding] = [f for f in explain_failures(collect_failures(store, LAYERS_WINDOW), inv).findings
                 if f.kind == "denied_call"]
    assert finding.cause == "RESOURCE_POLICY_DENY", finding.explanation
    assert "(Sid 'OnlyThroughTheEndpoint')" in finding.explanation
    assert finding.status == "stopped"
    assert finding.policy_as_of == LAYERS_NOW - timedelta(hours=3)
    assert [c.event_name for c in finding.changes] == ["PutBucketPolicy", "DeleteBucketPolicy"]
    assert finding.fix_summary.startswith("Already fixed: the bucket policy was deleted")


# -- the organization, the OIDC provider, the boundary and the associations, as of the failure ---------------


def org_change(trail, when, name, params, *, response=None) -> None:
    """An Organizations call from the management account (recorded in us-east-1)."""
    from tests.test_layers import MGMT

    trail.records.append(api_call(
        trail.rng, when=when, region="us-east-1", account=MGMT,
        identity=iam_user_identity(MGMT, "alice", "AKIAALICE00000000002"), event_source="organizations.amazonaws.com",
        event_name=name, read_only=False, request_parameters=params, response_elements=response))


def guard_trail():
    from tests.test_denied_layers import EC2_SILENT, Trail, doc

    trail = Trail()
    trail.role("app", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))
    return trail, lambda: trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                                        code="Client.UnauthorizedOperation", region="us-east-1")


def test_an_scp_detached_since_is_judged_as_attached_then_and_other_ous_changes_are_not_its(tmp_path):
    """The region guardrail was attached to the account's OU, refused the pod, and was
    detached since: today's organization has no guard on the path. The refusals keep their
    cause. An SCP attached to another OU meanwhile is not this finding's change."""
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import denied
    from tests.test_layers import OU, organization_files

    trail, refuse = guard_trail()
    attached = LAYERS_NOW - timedelta(minutes=60)
    org_change(trail, attached, "AttachPolicy", {"policyId": "p-guard", "targetId": OU})
    org_change(trail, attached, "AttachPolicy", {"policyId": "p-other", "targetId": "ou-ab12-22222222"})
    refuse()
    org_change(trail, LAYERS_NOW - timedelta(minutes=20), "DetachPolicy", {"policyId": "p-guard", "targetId": OU})
    finding = denied(trail.explain(*organization_files(tmp_path, guard=False)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "DenyOutsideEuWest1" in finding.explanation
    assert finding.status == "stopped"
    assert [(c.event_name, c.target) for c in finding.changes] == [("AttachPolicy", "p-guard"),
                                                                   ("DetachPolicy", "p-guard")]
    assert finding.policy_as_of == attached
    assert finding.fix_summary.startswith("Already fixed: an SCP was detached at 05:40 UTC")


def test_an_scp_detached_since_with_no_record_of_its_attachment_is_judged_as_attached(tmp_path):
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import denied
    from tests.test_layers import OU, organization_files

    trail, refuse = guard_trail()
    refuse()
    org_change(trail, LAYERS_NOW - timedelta(minutes=20), "DetachPolicy", {"policyId": "p-guard", "targetId": OU})
    finding = denied(trail.explain(*organization_files(tmp_path, guard=False)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert finding.policy_as_of == finding.first_seen  # known only from the detach since


def test_an_scp_relaxed_since_is_judged_with_the_content_recorded_before(tmp_path):
    """UpdatePolicy set the guard's content before the refusals (recorded), and relaxed it
    since; today's describe-policy shows the relaxed one."""
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import denied
    from tests.test_layers import GUARD, organization_files, policy_summary, write

    trail, refuse = guard_trail()
    relaxed = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ec2:RunInstances", "Resource": "*"}]}
    set_at = LAYERS_NOW - timedelta(hours=2)
    org_change(trail, set_at, "UpdatePolicy", {"policyId": "p-guard", "content": json.dumps(GUARD)})
    refuse()
    org_change(trail, LAYERS_NOW - timedelta(minutes=20), "UpdatePolicy",
               {"policyId": "p-guard", "content": json.dumps(relaxed)},
               response={"policy": {"policySummary": {"id": "p-guard"}, "content": json.dumps(relaxed)}})
    today = write(tmp_path, "guard-today.json", {"Policy": {"PolicySummary": policy_summary("p-guard", "region-guard"),
                                                            "Content": json.dumps(relaxed)}})
    finding = denied(trail.explain(*organization_files(tmp_path), today))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "DenyOutsideEuWest1" in finding.explanation
    assert finding.status == "stopped" and finding.policy_as_of == set_at
    assert [c.event_name for c in finding.changes] == ["UpdatePolicy", "UpdatePolicy"]


def test_an_scp_whose_earlier_content_is_not_recorded_is_not_taken_as_it_is_today(tmp_path):
    """The guard's content was replaced after the refusals and the earlier content is not in
    the store: today's deny is not the cause of refusals made before it existed."""
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import denied
    from tests.test_layers import GUARD, organization_files

    trail, refuse = guard_trail()
    refuse()
    org_change(trail, LAYERS_NOW - timedelta(minutes=20), "UpdatePolicy",
               {"policyId": "p-guard", "content": json.dumps(GUARD)})
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert "the content of p-guard before an SCP was updated at 05:40 UTC is not in the store; left unread" \
        in finding.explanation
    # Without the change, today's guard would be taken as the cause.
    trail.records.pop()
    assert denied(trail.explain(*organization_files(tmp_path))).cause == "EXPLICIT_DENY"


def test_an_oidc_provider_created_since_fixed_the_failures_it_was_missing_for(store):
    rng = random.Random(11)
    created = NOW - timedelta(minutes=20)
    records = [
        *failing(rng, NOW - timedelta(hours=2), created - timedelta(minutes=5)),
        change(rng, created, "CreateOpenIDConnectProvider",
               {"url": f"https://{ISSUER}", "clientIDList": ["sts.amazonaws.com"], "thumbprintList": []},
               response={"openIDConnectProviderArn": PROVIDER}),
    ]
    finding, document = explain(store, records, inventory(trust()))  # today the provider is there
    assert finding.cause == "OIDC_PROVIDER_MISSING", finding.explanation
    assert document["status"] == "stopped"
    assert document["policy_as_of"] == "2026-11-28T13:00:00Z"
    assert finding.fix_summary.startswith("Already fixed: the OIDC provider was created at 14:40 UTC")


def test_an_oidc_provider_deleted_after_the_failures_was_not_their_cause(store):
    """The subject did not match while the provider existed (created with its audience, as
    recorded); the provider was deleted afterwards. Today it is missing, yet that is not why
    those calls failed."""
    rng = random.Random(12)
    records = [
        change(rng, NOW - timedelta(hours=20), "CreateOpenIDConnectProvider",
               {"url": f"https://{ISSUER}", "clientIDList": ["sts.amazonaws.com"], "thumbprintList": []},
               response={"openIDConnectProviderArn": PROVIDER}),
        *failing(rng, NOW - timedelta(hours=2), NOW - timedelta(hours=1)),
        change(rng, NOW - timedelta(minutes=30), "DeleteOpenIDConnectProvider", {"openIDConnectProviderArn": PROVIDER}),
    ]
    finding, document = explain(store, records, inventory(BROKEN, provider=False))
    assert finding.cause == "TRUST_SUBJECT_MISMATCH", finding.explanation
    assert document["policy_as_of"] == "2026-11-28T13:00:00Z"
    assert "before DeleteOpenIDConnectProvider" in finding.explanation
    # The deletion did not fix anything: the calls stopped before it.
    assert finding.fix_summary.startswith("No failure came after the OIDC provider was deleted at 14:30 UTC")


def test_an_audience_added_to_the_provider_since_was_missing_at_the_failures(store):
    rng = random.Random(13)
    added = NOW - timedelta(minutes=20)
    records = [
        *failing(rng, NOW - timedelta(hours=2), added - timedelta(minutes=5)),
        change(rng, added, "AddClientIDToOpenIDConnectProvider",
               {"openIDConnectProviderArn": PROVIDER, "clientID": "sts.amazonaws.com"}),
    ]
    finding, document = explain(store, records, inventory(trust()))
    assert finding.cause == "TRUST_AUDIENCE_MISMATCH", finding.explanation
    assert document["status"] == "stopped"
    assert "is not among the client ids of the OIDC provider" in finding.explanation
    assert finding.fix_summary.startswith("Already fixed: an audience was added to the OIDC provider at 14:40 UTC")


def test_every_change_the_query_selects_reads_as_a_sentence():
    from trailscan.explain.changes import _WORDS
    from trailscan.sources.lookup import change_event_names

    assert {name for _, name in change_event_names()} == set(_WORDS)


def boundary_case(store, tmp_path, *, recorded: bool):
    """The role's boundary (ec2-boundary, which leaves out ec2:DescribeVolumes) refused the pod
    and was removed since; today the role has none. *recorded*: whether the store holds the
    PutRolePermissionsBoundary that set it."""
    from tests.test_denied_layers import EC2_SILENT, PROD, Trail, doc
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from trailscan.layers import PolicyLayers
    from trailscan.policy import NamedPolicy

    trail = Trail()
    arn = trail.role("app")
    boundary = f"arn:aws:iam::{PROD}:policy/ec2-boundary"
    alice = iam_user_identity(PROD, "alice", "AKIAALICE00000000006")
    calls = [(LAYERS_NOW - timedelta(minutes=20), "DeleteRolePermissionsBoundary", {"roleName": "app"})]
    if recorded:
        calls.insert(0, (LAYERS_NOW - timedelta(hours=4), "PutRolePermissionsBoundary",
                         {"roleName": "app", "permissionsBoundary": boundary}))
    for when, name, params in calls:
        trail.records.append(api_call(trail.rng, when=when, region="us-east-1", account=PROD, identity=alice,
                                      event_source="iam.amazonaws.com", event_name=name, read_only=False,
                                      request_parameters=params))
    trail.refused(trail.pod_session("app"), "ec2.amazonaws.com", "DescribeVolumes", EC2_SILENT,
                  code="Client.UnauthorizedOperation", region="eu-west-1")
    today = Role(arn, "app", PROD, trail.roles[0]["AssumeRolePolicyDocument"],
                 policies=[("ec2", doc({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}))])
    # The boundary policy still exists and was read (get-policy-version), though no longer the role's.
    read = PolicyLayers(managed={boundary: NamedPolicy(boundary, doc(
        {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}))})
    return explain_with_role_today(store, tmp_path, trail, today, extra=Inventory(layers=read))


def test_a_boundary_removed_since_is_judged_as_it_was(store, tmp_path):
    finding = boundary_case(store, tmp_path, recorded=True)
    assert finding.cause == "BOUNDARY_DENY", finding.explanation
    assert "ec2-boundary" in finding.explanation
    assert finding.status == "stopped"
    assert finding.fix_summary.startswith("Already fixed: the permissions boundary was removed at 05:40 UTC")


def test_a_boundary_removed_since_but_not_recorded_is_left_unread(store, tmp_path):
    finding = boundary_case(store, tmp_path, recorded=False)
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert ("the permissions boundary of app before the permissions boundary was removed at 05:40 UTC (no change "
            "before the failure is recorded) is not in the store; left unread") in finding.explanation
    assert finding.fix_summary.startswith("No failure came after the permissions boundary was removed at 05:40 UTC")
    assert "whether that change fixed it is not established" in finding.fix


def test_pod_identity_associations_are_walked_back_to_the_failure(store):
    """Today's associations of cluster prod, and the changes since the failure: one created
    since (gone then), one deleted since (EKS returned it whole: back then), one whose role was
    updated since (its earlier role recorded at creation)."""
    from trailscan.explain.as_of import associations_as_of
    from trailscan.inventory import Cluster, PodIdentityAssociation

    rng = random.Random(21)
    moment = NOW - timedelta(hours=1)
    role = f"arn:aws:iam::{ACCOUNT}:role/"
    eks = {"source": "eks.amazonaws.com", "region": REGION}

    def association(aid, ns, sa, name):
        return {"association": {"associationId": aid, "namespace": ns, "serviceAccount": sa, "roleArn": role + name,
                                "clusterName": "prod"}}

    store.ingest_documents([json.dumps({"Records": [
        change(rng, NOW - timedelta(hours=5), "CreatePodIdentityAssociation",
               {"clusterName": "prod", "namespace": "web", "serviceAccount": "front", "roleArn": role + "front-old"},
               response=association("a-3", "web", "front", "front-old"), **eks),
        change(rng, NOW - timedelta(minutes=40), "CreatePodIdentityAssociation",
               {"clusterName": "prod", "namespace": "payments", "serviceAccount": "api", "roleArn": role + "api"},
               response=association("a-1", "payments", "api", "api"), **eks),
        change(rng, NOW - timedelta(minutes=30), "DeletePodIdentityAssociation",
               {"clusterName": "prod", "associationId": "a-2"}, response=association("a-2", "jobs", "batch", "batch"),
               **eks),
        change(rng, NOW - timedelta(minutes=20), "UpdatePodIdentityAssociation",
               {"clusterName": "prod", "associationId": "a-3", "roleArn": role + "front"},
               response=association("a-3", "web", "front", "front"), **eks),
    ]})], origin="test")
    today = Inventory(clusters=[Cluster("prod", REGION, ACCOUNT, f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/prod", None,
                                        pod_identity_associations=[
                                            PodIdentityAssociation("payments", "api", role + "api", "a-1"),
                                            PodIdentityAssociation("web", "front", role + "front", "a-3")])])
    then, judged = associations_as_of(today, "prod", collect_changes(store, WINDOW), moment)
    assert sorted((a.association_id, a.namespace, a.service_account, a.role_arn)
                  for a in then.cluster("prod").pod_identity_associations) == [
        ("a-2", "jobs", "batch", role + "batch"), ("a-3", "web", "front", role + "front-old")]
    assert judged.as_of == moment and not judged.unread
    # An update whose earlier role is not recorded leaves the associations unread, not today's.
    then, judged = associations_as_of(today, "prod", collect_changes(store, Window(NOW - timedelta(hours=3), NOW),
                                                                     lookback=timedelta(0)), moment)
    assert then.cluster("prod").pod_identity_associations == []
    assert "pod_identity" in then.cluster("prod").gaps and judged.unread


@pytest.mark.parametrize(("last_failure", "expected"), [
    (timedelta(minutes=40), "UNEXPLAINED"),  # every failure came before the change
    (timedelta(minutes=5), "TRUST_SUBJECT_MISMATCH"),  # failures went on under today's policy
])
def test_a_trust_policy_changed_since_with_no_earlier_version_recorded(store, last_failure, expected):
    """The trust policy was replaced at 14:30 and the version in force before is not in the
    store. Today's (which refuses the token) did not refuse failures that all came before the
    change: no cause is asserted. Failures that went on after it were refused by today's."""
    rng = random.Random(31)
    records = [
        *failing(rng, NOW - timedelta(hours=2), NOW - last_failure),
        change(rng, NOW - timedelta(minutes=30), "UpdateAssumeRolePolicy",
               {"roleName": ROLE, "policyDocument": url_encoded(BROKEN)}),
    ]
    store.ingest_documents([json.dumps({"Records": records})], origin="test")
    report = explain_store(store, inventory(BROKEN), window=WINDOW)
    documents = findings_document(report, NOW)["findings"]
    # The failures before the change: no cause asserted, whether or not failures followed.
    [before] = [f for f in report.findings if f.first_seen < NOW - timedelta(minutes=30)]
    assert before.cause == "UNEXPLAINED", before.explanation
    assert before.explanation.startswith(f"Today's configuration would give TRUST_SUBJECT_MISMATCH, but the trust "
                                         f"policy of {ROLE} changed at 14:30 UTC")
    assert f"Would settle it: the trust policy of {ROLE} as it was at 2026-11-28 13:00:00Z" in before.explanation
    assert f"Unknown: the trust policy of {ROLE} before the trust policy was updated at 14:30 UTC" in before.explanation
    assert before.status == ("stopped" if expected == "UNEXPLAINED" else "ongoing")
    assert all(d["policy_as_of"] is None for d in documents)
    # Those after it were refused by today's, which is in force since.
    after = [f for f in report.findings if f.first_seen >= NOW - timedelta(minutes=30)]
    assert [(f.cause, f.status) for f in after] == ([] if expected == "UNEXPLAINED" else [(expected, "ongoing")])


def test_failures_spanning_a_change_are_each_judged_by_the_policy_then(store):
    """Broken at 12:00 (the wrong subject), changed at 13:30 to a policy that drops the web
    identity action, failing throughout: each failure gets the cause of the policy in force
    when it happened, both ongoing (the workload kept failing)."""
    no_action = trust()
    no_action["Statement"][0]["Action"] = "sts:AssumeRole"
    rng = random.Random(33)
    broke, changed = NOW - timedelta(hours=3), NOW - timedelta(minutes=90)
    records = [
        change(rng, broke, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": url_encoded(BROKEN)}),
        *failing(rng, broke + timedelta(minutes=5), NOW - timedelta(minutes=5)),
        change(rng, changed, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": url_encoded(no_action)}),
    ]
    store.ingest_documents([json.dumps({"Records": records})], origin="test")
    report = explain_store(store, inventory(no_action), window=WINDOW)
    found = sorted((f.first_seen, f.last_seen, f.cause, f.status, f.count) for f in report.findings)
    assert found == [
        (broke + timedelta(minutes=5), changed - timedelta(minutes=5), "TRUST_SUBJECT_MISMATCH", "ongoing", 9),
        (changed + timedelta(minutes=5), NOW - timedelta(minutes=5), "TRUST_ACTION_MISSING", "ongoing", 9),
    ]
    earlier = min(report.findings, key=lambda f: f.first_seen)
    assert earlier.policy_as_of == broke


def test_scp_changes_unread_when_the_management_accounts_events_were_not(tmp_path):
    """AWS Organizations records AttachPolicy and its kin in the management account: a member
    account's events alone cannot show an SCP changed since, and a note says so."""
    from tests.test_denied_layers import PROD
    from tests.test_denied_layers import WINDOW as LAYERS_WINDOW
    from tests.test_layers import MGMT, OU, organization_files
    from trailscan.explain import collect_failures, explain_failures
    from trailscan.findings import CoverageRow
    from trailscan.inventory import authorization_details_inventory
    from trailscan.kube import ServiceAccount
    from trailscan.layers import load_policy_file
    from trailscan.store import Store

    trail, refuse = guard_trail()
    refuse()
    inv = authorization_details_inventory({"RoleDetailList": trail.roles, "Policies": []}, source="iam.json")
    inv = inv.with_service_accounts([ServiceAccount("prod", "payments", "api")]).merge(
        *(Inventory(layers=load_policy_file(value)) for value in organization_files(tmp_path)))

    def notes(coverage: list[CoverageRow], records: list[dict]) -> list[str]:
        with Store.open(":memory:") as store:
            store.ingest_documents([json.dumps({"Records": records})], origin="test")
            failures = collect_failures(store, LAYERS_WINDOW)
        failures.coverage = coverage
        return [n for n in explain_failures(failures, inv).notes if "AWS Organizations records" in n]

    member = [CoverageRow("lookup", PROD, region, "complete", 1) for region in ("us-east-1", "eu-west-1")]
    [note] = notes(member, trail.records)
    assert note.startswith(f"changes: AWS Organizations records SCP and RCP changes in the management account ({MGMT}; "
                           "or a delegated administrator's)")
    assert notes([*member, CoverageRow("s3", MGMT, "us-east-1", "complete", 1)], trail.records) == []
    assert notes([CoverageRow("files", "", "", "complete", 1)], trail.records) == []  # whose events: not known
    org_change(trail, LAYERS_WINDOW.start + timedelta(hours=1), "AttachPolicy", {"policyId": "p-x", "targetId": OU})
    assert notes(member, trail.records) == []  # Organizations events were read


def test_local_files_say_whether_us_east_1_was_read_by_their_events(tmp_path):
    """Files do not say their regions in the coverage: the store's events do. The note that
    the changes could not be read holds only when none of the window's events is of us-east-1."""
    from trailscan.sources.files import ingest_files
    from trailscan.store import Store

    rng = random.Random(41)
    failures = failing(rng, NOW - timedelta(hours=3), NOW - timedelta(hours=1))
    elsewhere = api_call(rng, when=NOW - timedelta(hours=2), region="us-east-1", account=ACCOUNT,
                         identity=iam_user_identity(ACCOUNT, "bob", "AKIABOB0000000000001"),
                         event_source="iam.amazonaws.com", event_name="ListRoles")

    def notes(records: list[dict]) -> list[str]:
        path = tmp_path / f"{len(records)}.json"
        path.write_text(json.dumps({"Records": records}))
        with Store.open(":memory:") as store:
            ingest_files(store, [str(path)])
            report = explain_store(store, inventory(trust()), window=WINDOW)
        return [n for n in report.notes if n.startswith("changes: no event of us-east-1 was read")]

    assert len(notes(failures)) == 1
    assert notes([*failures, elsewhere]) == []


def test_an_scp_renamed_since_is_not_a_change_of_its_content(tmp_path):
    """UpdatePolicy returns the policy whole; one that only renamed the guard after the
    refusals says what its content was then (and is now): the deny stands."""
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import denied
    from tests.test_layers import GUARD, organization_files

    trail, refuse = guard_trail()
    refuse()
    org_change(trail, LAYERS_NOW - timedelta(minutes=20), "UpdatePolicy", {"policyId": "p-guard", "name": "guard-v2"},
               response={"policy": {"policySummary": {"id": "p-guard"}, "content": json.dumps(GUARD)}})
    finding = denied(trail.explain(*organization_files(tmp_path)))
    assert finding.cause == "EXPLICIT_DENY", finding.explanation
    assert "left unread" not in finding.explanation


def test_a_key_policy_fixed_since_is_judged_as_it_was(tmp_path):
    """The key policy that refused the pod's Decrypt (it named only the key admins, delegating
    nothing to IAM) was put three hours before, by key id as the caller gave it; a PutKeyPolicy
    by key ARN delegated to IAM since. Today's key policy delegates: the refusals keep their
    cause, judged with the policy KMS recorded."""
    from tests.test_denied_layers import KEY, PROD, denied, doc, kms_trail, role_arn
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_layers import organization_files, write

    admins = doc({"Sid": "KeyAdmins", "Effect": "Allow", "Principal": {"AWS": role_arn("key-admin")},
                  "Action": "kms:*", "Resource": "*"})
    delegating = doc({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PROD}:root"}, "Action": "kms:*",
                      "Resource": "*"})
    trail = kms_trail()
    alice = iam_user_identity(PROD, "alice", "AKIAALICE00000000006")
    for when, key_id, policy in ((LAYERS_NOW - timedelta(hours=3), KEY.rsplit("/", 1)[1], admins),
                                 (LAYERS_NOW - timedelta(minutes=20), KEY, delegating)):
        trail.records.append(api_call(
            trail.rng, when=when, region="eu-west-1", account=PROD, identity=alice, event_source="kms.amazonaws.com",
            event_name="PutKeyPolicy", read_only=False,
            request_parameters={"keyId": key_id, "policyName": "default", "policy": json.dumps(policy),
                                "bypassPolicyLockoutSafetyCheck": False},
            resources=[{"accountId": PROD, "type": "AWS::KMS::Key", "ARN": KEY}]))
    today = f"{KEY}=" + write(tmp_path, "key.json", {"Policy": json.dumps(delegating), "PolicyName": "default"})
    finding = denied(trail.explain(today, *organization_files(tmp_path)))
    assert finding.cause == "RESOURCE_POLICY_DENY", finding.explanation
    assert finding.status == "stopped" and finding.policy_as_of == LAYERS_NOW - timedelta(hours=3)
    assert [c.event_name for c in finding.changes] == ["PutKeyPolicy", "PutKeyPolicy"]
    assert finding.fix_summary.startswith("Already fixed: the key policy was put at ")
    # Without the record of the policy before, today's delegating one is all there is: no cause.
    trail.records = [r for r in trail.records if not (r["eventName"] == "PutKeyPolicy" and r["requestParameters"]
                                                      ["keyId"] != KEY)]
    finding = denied(trail.explain(today, *organization_files(tmp_path)))
    assert finding.cause == "UNEXPLAINED" and finding.status == "stopped", finding.explanation
    assert f"Unknown: the key policy of {KEY} before the key policy was put at 05:40 UTC is not in the store" \
        in finding.explanation
    assert "whether that change fixed it is not established" in finding.fix_summary


@pytest.mark.parametrize("said", [True, False], ids=["aws-said", "evaluated"])
def test_a_permission_added_since_over_an_unrecorded_policy(store, tmp_path, said):
    """PutRolePolicy added the refused permission after the refusals; the inline policy's
    version before is not in the store. When AWS's message said no identity-based policy
    allowed the call, that is the cause, fixed since; when the cause would come only from
    reading the policy, its version then is unknown: no cause is asserted."""
    from tests.test_denied_layers import EC2_SILENT, PROD, Trail, doc
    from tests.test_denied_layers import NOW as LAYERS_NOW

    trail = Trail()
    arn = trail.role("app")
    session = trail.pod_session("app")
    message = (f"User: {session.arn} is not authorized to perform: ec2:DescribeVolumes because no identity-based "
               "policy allows the ec2:DescribeVolumes action") if said else EC2_SILENT
    trail.refused(session, "ec2.amazonaws.com", "DescribeVolumes", message, code="Client.UnauthorizedOperation")
    fixed = doc({"Effect": "Allow", "Action": ["ec2:DescribeSnapshots", "ec2:DescribeVolumes"], "Resource": "*"})
    trail.records.append(api_call(
        trail.rng, when=LAYERS_NOW - timedelta(minutes=20), region="us-east-1", account=PROD,
        identity=iam_user_identity(PROD, "alice", "AKIAALICE00000000007"), event_source="iam.amazonaws.com",
        event_name="PutRolePolicy", read_only=False,
        request_parameters={"roleName": "app", "policyName": "ec2", "policyDocument": json.dumps(fixed)}))
    today = Role(arn, "app", PROD, trail.roles[0]["AssumeRolePolicyDocument"], policies=[("ec2", fixed)])
    finding = explain_with_role_today(store, tmp_path, trail, today)
    assert finding.status == "stopped"
    if said:
        assert finding.cause == "MISSING_PERMISSION", finding.explanation
        assert finding.fix_summary.startswith("Already fixed: an inline policy was put at "), finding.fix_summary
    else:
        assert finding.cause == "UNEXPLAINED", finding.explanation
        assert "Unknown: the inline policy ec2 of app as it was at the failure is not in the store" \
            in finding.explanation


@pytest.mark.parametrize("where", ["identity", "scp"])
def test_an_explicit_deny_read_from_a_policy_changed_since(tmp_path, where):
    """Today the role's inline policy guard denies the refused call, but PutRolePolicy set it
    after the refusals and its version then is not in the store: that deny is not asserted as
    their cause. A deny in an SCP that did not change stands, whatever the role's policies were."""
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_denied_layers import PROD, denied, doc
    from tests.test_layers import organization_files

    trail, refuse = guard_trail()
    refuse()
    deny = doc({"Sid": "NoVolumes", "Effect": "Deny", "Action": "ec2:DescribeVolumes", "Resource": "*"})
    trail.roles[0]["RolePolicyList"].append({"PolicyName": "guard", "PolicyDocument": deny})
    trail.records.append(api_call(
        trail.rng, when=LAYERS_NOW - timedelta(minutes=20), region="us-east-1", account=PROD,
        identity=iam_user_identity(PROD, "alice", "AKIAALICE00000000008"), event_source="iam.amazonaws.com",
        event_name="PutRolePolicy", read_only=False,
        request_parameters={"roleName": "app", "policyName": "guard", "policyDocument": json.dumps(deny)}))
    finding = denied(trail.explain(*organization_files(tmp_path, guard=where == "scp")))
    if where == "scp":
        assert finding.cause == "EXPLICIT_DENY" and "DenyOutsideEuWest1" in finding.explanation, finding.explanation
    else:
        assert finding.cause == "UNEXPLAINED", finding.explanation
        assert finding.explanation.startswith("Today's configuration would give EXPLICIT_DENY, but the permission "
                                              "policies of app changed at 05:40 UTC, after these failures")
        assert "Would settle it: the permission policies of app as it was at " in finding.explanation


def test_a_key_policy_put_since_over_an_unrecorded_one_is_not_the_cause(tmp_path):
    """Today's key policy delegates nothing to IAM, but PutKeyPolicy set it after the
    refusals, and the key policy before is not in the store: it is not asserted as their cause."""
    from tests.test_denied_layers import KEY, PROD, denied, doc, kms_trail, role_arn
    from tests.test_denied_layers import NOW as LAYERS_NOW
    from tests.test_layers import organization_files, write

    admins = doc({"Sid": "KeyAdmins", "Effect": "Allow", "Principal": {"AWS": role_arn("key-admin")},
                  "Action": "kms:*", "Resource": "*"})
    trail = kms_trail()
    trail.records.append(api_call(
        trail.rng, when=LAYERS_NOW - timedelta(minutes=20), region="eu-west-1", account=PROD,
        identity=iam_user_identity(PROD, "alice", "AKIAALICE00000000009"), event_source="kms.amazonaws.com",
        event_name="PutKeyPolicy", read_only=False,
        request_parameters={"keyId": KEY, "policyName": "default", "policy": json.dumps(admins)}))
    today = f"{KEY}=" + write(tmp_path, "key.json", {"Policy": json.dumps(admins), "PolicyName": "default"})
    finding = denied(trail.explain(today, *organization_files(tmp_path)))
    assert finding.cause == "UNEXPLAINED", finding.explanation
    assert finding.explanation.startswith(f"Today's configuration would give RESOURCE_POLICY_DENY, but the key policy "
                                          f"of {KEY} changed at 05:40 UTC")
    assert "AWS Config's history of the resource" in finding.explanation


@pytest.mark.parametrize("said", [False, True], ids=["read-from-trust", "said-by-eks"])
def test_a_pod_identity_trust_changed_since_over_an_unrecorded_one(store, said):
    """The Pod Identity role's trust policy (no sts:TagSession today) was replaced after the
    refusals; its version then is not in the store. Read from today's trust alone, the cause is
    not asserted; said by AWS, it stands."""
    from trailscan.generate import pod_identity_assume_role
    from trailscan.inventory import Cluster, PodIdentityAssociation

    rng = random.Random(41)
    arn = f"arn:aws:iam::{ACCOUNT}:role/orders-pod"
    message = ("Access denied" if not said else
               "An error occurred (AccessDeniedException) when calling the AssumeRoleForPodIdentity operation: "
               "Unauthorized Exception! EKS does not have permissions to assume the associated role.")
    records = [pod_identity_assume_role(rng, when=NOW - timedelta(minutes=50 - i), region=REGION, account=ACCOUNT,
                                        role_arn=arn, cluster="prod", namespace="orders", service_account="worker",
                                        pod="worker-1", error_code="AccessDenied", error_message=message)
               for i in range(3)]
    trust_now = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    records.append(change(rng, NOW - timedelta(minutes=20), "UpdateAssumeRolePolicy",
                          {"roleName": "orders-pod", "policyDocument": json.dumps(trust_now)}))
    inv = Inventory(roles={arn: Role(arn, "orders-pod", ACCOUNT, trust_now)}, complete={IAM}, iam_accounts={ACCOUNT},
                    clusters=[Cluster("prod", REGION, ACCOUNT, f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/prod", None,
                                      pod_identity_associations=[PodIdentityAssociation("orders", "worker", arn,
                                                                                        "a-1")])])
    finding, _ = explain(store, records, inv)
    if said:
        assert finding.cause == "POD_IDENTITY_TRUST", finding.explanation
    else:
        assert finding.cause == "UNEXPLAINED", finding.explanation
        assert finding.explanation.startswith("Today's configuration would give POD_IDENTITY_TRUST, but the trust "
                                              "policy of orders-pod changed at 14:40 UTC")


def test_the_notebook_api_lists_the_changes_and_each_findings_status(tmp_path):
    """From Jupyter: ``ts.changes(...)`` is ``trailscan changes`` as a DataFrame (with the
    document each call set), and a finding's status, configuration time, decisive change and
    changes are columns and a frame of their own."""
    import trailscan
    from trailscan.api import CHANGE_COLUMNS, Explanation

    rng = random.Random(2)
    broke, fixed = NOW - timedelta(hours=3), NOW - timedelta(minutes=50)
    path = tmp_path / "trail.json"
    path.write_text(json.dumps({"Records": [
        change(rng, broke, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": url_encoded(BROKEN)}),
        *failing(rng, broke + timedelta(minutes=5), fixed - timedelta(minutes=5)),
        change(rng, fixed, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": json.dumps(trust())}),
    ]}))
    with trailscan.open(":memory:") as ts:
        ts.ingest_files(path)
        changes = ts.changes(WINDOW.start, WINDOW.end)
        assert tuple(changes.columns[:6]) == CHANGE_COLUMNS and changes.event_time.is_monotonic_increasing
        assert changes.actor.tolist() == [ALICE, ALICE] and changes.target.tolist() == [ROLE, ROLE]
        assert json.loads(changes.document[0]) == BROKEN  # decoded from IAM's URL encoding
        assert ts.changes(WINDOW.start, WINDOW.end, role="another-role").empty
        with ts.opened() as store:
            found = Explanation(ts, explain_store(store, inventory(trust()), window=WINDOW), WINDOW)
        row = found.to_frame().iloc[0]
        assert (row.cause, row.status, row.policy_as_of) == ("TRUST_SUBJECT_MISMATCH", "stopped", broke)
        assert row.decisive_change == f"stopped after UpdateAssumeRolePolicy on {ROLE} by {ALICE} at 2026-11-28T14:10:00Z"
        assert found.changes(0).event_time.tolist() == [broke, fixed]


@pytest.mark.parametrize(("every", "fixed_ago", "expected"), [
    (timedelta(minutes=10), timedelta(minutes=3), "ongoing"),  # 3 quiet minutes: CloudTrail may not have them yet
    (timedelta(minutes=10), timedelta(minutes=16), "stopped"),
    (timedelta(minutes=40), timedelta(minutes=20), "ongoing"),  # they came every 40 min: 20 quiet prove nothing
    (timedelta(minutes=40), timedelta(minutes=45), "stopped"),
])
def test_no_failure_yet_after_a_change_is_stopped_only_after_a_quiet_spell(store, every, fixed_ago, expected):
    """A trust policy fixed after the last failure: `stopped`, "Already fixed", only when the
    silence since the fix to the window's end outlasts CloudTrail's delivery (15 min, as the
    terminal's still-failing rule) and the failures' own cadence."""
    rng = random.Random(51)
    fixed = NOW - fixed_ago
    records = [
        change(rng, NOW - timedelta(hours=5), "UpdateAssumeRolePolicy",
               {"roleName": ROLE, "policyDocument": json.dumps(BROKEN)}),
        *failing(rng, NOW - timedelta(hours=4), fixed - timedelta(minutes=1), every=every),
        change(rng, fixed, "UpdateAssumeRolePolicy", {"roleName": ROLE, "policyDocument": json.dumps(trust())}),
    ]
    finding, document = explain(store, records, inventory(trust()))
    assert finding.cause == "TRUST_SUBJECT_MISMATCH", finding.explanation
    assert document["status"] == expected
    assert [c["event_time"] for c in document["changes"]][-1] == fixed.strftime("%Y-%m-%dT%H:%M:%SZ")
    if expected == "ongoing":
        assert "too soon to say they stopped" in finding.explanation
        assert ("about every 40 min" in finding.explanation) == (every > timedelta(minutes=15))
        assert "Already fixed" not in finding.fix and finding.stopped_after is None
    else:
        assert finding.fix_summary.startswith("Already fixed: the trust policy was updated at ")
