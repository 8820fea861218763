"""`trailscan findings` and `trailscan since` as users run them: over the real corpus with
no inventory, with service accounts read by the real kubectl, with IAM and EKS read live
from moto, and the SPEC §7 document and §8 exit codes."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.kube_api import KubeAPI, service_account
from trailscan.queries import load_queries
from trailscan.store import Store

ARGO_ROLE = "arn:aws:iam::100000000002:role/sm-pipelines-k8s-awf-aws-executor-plugin"
ARGO_ISSUER_ID = "A8242F25BFBB8F98F5321B2AE63C8B5C"
ARGO_ISSUER = f"https://oidc.eks.us-west-2.amazonaws.com/id/{ARGO_ISSUER_ID}"
FINDING_KEYS = {
    "kind", "cause", "workload", "principal_arn", "role_arn", "event_source", "event_name", "error_code",
    "error_message", "count", "first_seen", "last_seen", "regions", "sample_event_ids", "explanation", "fix",
    # SPEC §10 (issue 20): whether it still fails, the changes to its configuration, and
    # when the configuration it was judged against was set.
    "status", "changes", "policy_as_of",
}
OFFLINE = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def findings_json(*args: str, env: dict | None = None) -> tuple[dict, str]:
    ran = run_cli("findings", "--format", "json", *args, env={**OFFLINE, **(env or {})})
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout), ran.stderr


@pytest.fixture(scope="module")
def real_document(real_store) -> tuple[dict, str]:
    return findings_json("--db", str(real_store))


@pytest.fixture(scope="module")
def real_all_document(real_store) -> tuple[dict, str]:
    """Every refused call of the corpus, attack simulations by IAM users included."""
    return findings_json("--db", str(real_store), "--all-principals")


def failed_events_of_the_three_queries(path: Path) -> int:
    book = load_queries()
    with Store.open(path, read_only=True) as store:
        return sum(
            len(store.query(book[name].typed_sql(), book[name].bind({}))[1])
            for name in ("failed_web_identity", "failed_pod_identity", "denied_calls")
        )


def test_document_is_exactly_the_spec_contract(real_document):
    document, _ = real_document
    assert set(document) == {"schema", "generated_at", "window", "coverage", "findings"}
    assert document["schema"] == "trailscan.findings/v1"
    assert set(document["window"]) == {"start", "end"} and document["generated_at"].endswith("Z")
    # events: the events the store holds in the window (3,250 unique of the 3,258 records read).
    assert document["coverage"] == [
        {"source": "files", "account": "", "region": "", "status": "complete", "events": 3250,
         "detail": "132 files, 3250 new events, 2 records without a usable eventTime (in no window), "
                   "4 records dropped: their eventID was kept with other content (the first kept)"}
    ]
    for finding in document["findings"]:
        assert set(finding) == FINDING_KEYS
        assert set(finding["workload"]) == {"cluster", "namespace", "service_account", "resolution", "candidates"}
        assert finding["explanation"] and finding["fix"] and 1 <= len(finding["sample_event_ids"]) <= 5


def test_real_failed_web_identity_is_an_irsa_finding_with_an_exact_workload(real_document):
    document, _ = real_document
    [irsa] = [f for f in document["findings"] if f["kind"] == "irsa"]
    assert irsa["workload"] == {"cluster": ARGO_ISSUER_ID, "namespace": "argo", "service_account": "awf-aws-executor-plugin",
                                "resolution": "exact", "candidates": []}
    assert irsa["role_arn"] == ARGO_ROLE and irsa["count"] == 1 and irsa["error_message"] == "An unknown error occurred"
    # No inventory: the cause is not guessed, and the explanation says what was not checked.
    assert irsa["cause"] == "UNEXPLAINED"
    assert "no IAM inventory" in irsa["explanation"] and "trust policy" in irsa["explanation"]
    assert "--iam" in irsa["fix"] and "--service-accounts" in irsa["fix"]


def test_real_failed_pod_identity_is_trust_from_its_message(real_document):
    document, _ = real_document
    [pod] = [f for f in document["findings"] if f["kind"] == "pod_identity"]
    assert pod["cause"] == "POD_IDENTITY_TRUST" and pod["event_name"] == "AssumeRoleForPodIdentity"
    assert pod["workload"]["cluster"] == "eksworkshop-eksctl" and pod["count"] == 1
    assert '"pods.eks.amazonaws.com"' in pod["fix"] and "sts:TagSession" in pod["fix"]


def test_real_unauthorized_operations_are_denied_calls_and_nothing_else_is(real_all_document, real_store):
    document, _ = real_all_document
    codes = {f["error_code"] for f in document["findings"]}
    assert not any(c and (c.startswith(("NoSuch", "Throttl")) or c.endswith("NotFound")) for c in codes)
    unauthorized = [f for f in document["findings"] if f["error_code"] == "Client.UnauthorizedOperation"]
    assert unauthorized and all(f["kind"] == "denied_call" for f in unauthorized)
    assert sum(f["count"] for f in unauthorized) == 90
    # Every failed event the three detection queries return is in exactly one finding.
    assert sum(f["count"] for f in document["findings"]) == failed_events_of_the_three_queries(real_store) == 113
    samples = [s for f in document["findings"] for s in f["sample_event_ids"]]
    assert len(samples) == len(set(samples))


def test_only_eks_workloads_are_failing_workloads(real_document, real_all_document):
    """Issue 17 point 5: the corpus's attack simulations — IAM users (bert-jan, christophe)
    and the role sessions they assumed — are no EKS workload: left out by default, one line
    on stderr says how many refused calls by how many principals, --all-principals lists them."""
    shown, stderr = real_document
    everything, all_stderr = real_all_document
    assert [(f["kind"], f["workload"]["resolution"]) for f in shown["findings"]] == [
        ("irsa", "exact"), ("pod_identity", "unknown")]
    left_out = [f for f in everything["findings"] if f["workload"]["resolution"] == "not_eks"]
    assert sum(f["count"] for f in shown["findings"]) + sum(f["count"] for f in left_out) == 113
    assert [line for line in stderr.splitlines() if "left out" in line] == [
        "trailscan: note: left out 111 refused calls by 10 principals that are not EKS workloads (role "
        "stratus-red-team-ec2-get-password-data-role, role stratus-red-team-get-usr-data-role, user bert-jan, …); "
        "--all-principals (all_principals=True) includes them"
    ]
    assert "left out" not in all_stderr
    assert {f["kind"] for f in left_out} == {"denied_call"}
    assert {f["workload"]["cluster"] for f in left_out} == {None}
    # The IAM users themselves, and the sessions they started, each with its evidence.
    users = {f["principal_arn"] for f in left_out if ":user/" in (f["principal_arn"] or "")}
    assert users == {"arn:aws:iam::123837392027:user/bert-jan", "arn:aws:iam::321848314756:user/christophe",
                     "arn:aws:iam::457448411975:user/christophe"}
    for finding in left_out:
        if finding["principal_arn"] in users:
            assert "is an IAM user" in finding["explanation"], finding["explanation"]
        else:
            assert "its session was started by user " in finding["explanation"], finding["explanation"]
            assert "Its credentials came from sts:AssumeRole: user " in finding["explanation"]
    # Nothing shown is an IAM user's or a session one started.
    assert not any("user/" in (f["principal_arn"] or "") for f in shown["findings"])


def test_messages_that_name_the_reason_decide_without_inventory(real_all_document):
    document, _ = real_all_document
    leave = [f for f in document["findings"] if f["event_name"] == "LeaveOrganization"]
    assert leave and all(f["cause"] == "MISSING_PERMISSION" for f in leave)
    assert all('"Action": "organizations:LeaveOrganization"' in f["fix"] for f in leave)


def test_json_goes_to_stdout_alone_and_notes_to_stderr(real_document):
    _, stderr = real_document
    assert "no --iam file and no AWS credentials" in stderr


def test_table_and_markdown(real_store):
    table = run_cli("findings", "--db", str(real_store), env=OFFLINE)
    assert table.returncode == 0, table.stderr
    assert "eksworkshop-eksctl" in table.stdout and "argo/awf-aws-executor-plugin" in table.stdout
    assert "POD_IDENTITY_TRUST" in table.stdout and "Coverage" in table.stdout and "complete" in table.stdout
    markdown = run_cli("findings", "--db", str(real_store), "--format", "markdown", env=OFFLINE)
    assert markdown.returncode == 0, markdown.stderr
    # The report's Markdown: findings by cluster, then namespace/service account, then the coverage.
    assert f"### Cluster {ARGO_ISSUER_ID} (" in markdown.stdout and "#### argo/" in markdown.stdout
    assert "## Coverage: what was read" in markdown.stdout
    assert "**Fix:**" in markdown.stdout and "```" in markdown.stdout
    # Left out by default; listed with --all-principals, where each block names the IAM user refused.
    assert "christophe" not in table.stdout and "left out 111 refused calls" in table.stderr
    everything = run_cli("findings", "--db", str(real_store), "--all-principals", env=OFFLINE)
    assert everything.returncode == 0, everything.stderr
    assert "by user christophe" in everything.stdout
    assert "by role christophe" not in everything.stdout and "not an EKS workload" in everything.stdout


def test_window_options_filter(real_store):
    document, _ = findings_json("--db", str(real_store), "--since", "2024-01-01", "--until", "2024-02-01")
    assert document["window"] == {"start": "2024-01-01T00:00:00Z", "end": "2024-02-01T00:00:00Z"}
    assert [(f["kind"], f["cause"]) for f in document["findings"]] == [("pod_identity", "POD_IDENTITY_TRUST")]


def test_exit_codes(real_store, tmp_path):
    failing = run_cli("findings", "--db", str(real_store), "--fail-on-findings", "--format", "json", env=OFFLINE)
    assert failing.returncode == 1 and json.loads(failing.stdout)["findings"]
    copy = tmp_path / "partial.duckdb"
    shutil.copy(real_store, copy)
    inserted = run_cli("sql", "--db", str(copy), "--write",
                       "INSERT INTO coverage VALUES (now(), 'lookup', '100000000002', 'us-west-2', "
                       "'2023-11-01', '2023-12-01', 10, 0, 'partial', 'throttled after 10 pages')")
    assert inserted.returncode == 0, inserted.stderr
    partial = run_cli("findings", "--db", str(copy), "--format", "json", "--fail-on-findings", env=OFFLINE)
    assert partial.returncode == 3, partial.stderr
    document = json.loads(partial.stdout)
    # The ingest said 10 events, but the store holds none of LookupEvents in the window; the
    # detail says what was read of the window (here the span of the store, no window asked).
    [lookup] = [row for row in document["coverage"] if row["source"] == "lookup"]
    assert {k: lookup[k] for k in ("account", "region", "status", "events")} == {
        "account": "100000000002", "region": "us-west-2", "status": "partial", "events": 0}
    assert lookup["detail"] == ("throttled after 10 pages; read in part: 2023-11-01T00:00:00Z – 2023-12-01T00:00:00Z")
    assert "coverage is incomplete" in partial.stderr and "Traceback" not in partial.stderr
    missing = run_cli("findings", "--db", str(tmp_path / "nothing.duckdb"), env=OFFLINE)
    assert missing.returncode == 2 and "no store at" in missing.stderr


def test_since_from_files(real_data, tmp_path):
    db = tmp_path / "since.duckdb"
    ran = run_cli("since", "4000d", "--until", "2024-12-01", "--source", "files", "--path", str(real_data),
                  "--db", str(db), "--format", "json", "--offline", env=OFFLINE)
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert document["window"]["end"] == "2024-12-01T00:00:00Z"
    # 113 refused calls, 111 of them by IAM users and the sessions they started: left out.
    assert sum(f["count"] for f in document["findings"]) == 2
    assert "left out 111 refused calls by 10 principals" in ran.stderr
    assert document["coverage"][0]["status"] == "complete"
    ran = run_cli("since", "4000d", "--until", "2024-12-01", "--source", "files", "--path", str(real_data),
                  "--db", str(db), "--format", "json", "--offline", "--all-principals", env=OFFLINE)
    assert ran.returncode == 0, ran.stderr
    assert sum(f["count"] for f in json.loads(ran.stdout)["findings"]) == 113


def test_since_with_an_unreadable_file_still_explains_the_rest(real_data, tmp_path):
    folder = tmp_path / "trail"
    shutil.copytree(real_data / "greenpau-argo-workflows-aws-plugin", folder)
    (folder / "broken.json").write_text('{"Records": [')
    ran = run_cli("since", "4000d", "--until", "2024-12-01", "--path", str(folder), "--db", str(tmp_path / "s.duckdb"),
                  "--format", "json", env=OFFLINE)
    assert ran.returncode in (2, 3), ran.stderr
    assert "broken.json" in ran.stderr and "Traceback" not in ran.stderr
    assert [f["kind"] for f in json.loads(ran.stdout)["findings"]] == ["irsa"]


def test_since_rejects_a_bad_duration(tmp_path):
    ran = run_cli("since", "yesterday", "--db", str(tmp_path / "x.duckdb"), env=OFFLINE)
    assert ran.returncode == 2, ran.stderr
    assert "'yesterday' is neither a duration nor a date" in ran.stderr and "Traceback" not in ran.stderr


# -- inventory through the real kubectl ------------------------------------------------------------


@pytest.fixture
def kube_env(tmp_path: Path) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    return {"HOME": str(home), "KUBECACHEDIR": str(home / ".kube" / "cache")}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize(
    "accounts, cause, fix",
    [
        ([service_account("argo", "argo-server")], "SA_NOT_FOUND", "kubectl create serviceaccount -n argo awf-aws-executor-plugin"),
        ([service_account("argo", "awf-aws-executor-plugin")], "SA_NOT_ANNOTATED",
         f"eks.amazonaws.com/role-arn={ARGO_ROLE} --overwrite"),
        ([service_account("argo", "awf-aws-executor-plugin", role_arn="arn:aws:iam::100000000002:role/argo-plugin-v2")],
         "ROLE_MISMATCH", "kubectl rollout restart deployment -n argo"),
    ],
)
def test_real_web_identity_against_service_accounts_read_by_kubectl(real_store, tmp_path, kube_env, accounts, cause, fix):
    # The API server announces its cluster's OIDC issuer, as EKS does: the issuer of the token.
    with KubeAPI(accounts, context="argo-prod", directory=tmp_path, issuer=ARGO_ISSUER) as api:
        document, _ = findings_json("--db", str(real_store), "--kube-context", "argo-prod", "--offline",
                                    env={**kube_env, "KUBECONFIG": str(api.kubeconfig)})
    [irsa] = [f for f in document["findings"] if f["kind"] == "irsa"]
    assert irsa["cause"] == cause and fix in irsa["fix"]
    assert irsa["workload"]["resolution"] == "exact"


# -- inventory read live from moto, through the CLI ---------------------------------------------------


def test_findings_reads_iam_and_eks_live_when_credentials_are_set(moto, tmp_path):
    from tests.test_explain import prod_world, trust_subject_mismatch, write_files

    world = prod_world(moto)
    trust_subject_mismatch(world)
    files = write_files(world, tmp_path)
    db = tmp_path / "live.duckdb"
    ingested = run_cli("ingest", "files", str(files["trail"]), "--db", str(db))
    assert ingested.returncode == 0, ingested.stderr
    ran = run_cli("findings", "--db", str(db), "--cluster", "prod", "--service-accounts", str(files["service_accounts"]),
                  "--since", "2026-11-27T06:00:00Z", "--until", "2026-11-28T07:00:00Z", "--format", "json",
                  env={**moto.environ("eu-west-1"), "AWS_EC2_METADATA_DISABLED": "true"})
    assert ran.returncode == 0, ran.stderr
    [finding] = json.loads(ran.stdout)["findings"]
    assert finding["cause"] == "TRUST_SUBJECT_MISMATCH"
    assert finding["workload"]["cluster"] == "prod"
    assert "aws iam update-assume-role-policy --role-name payments-api" in finding["fix"]


def test_since_reads_the_trail_bucket_and_explains(moto, tmp_path):
    """`trailscan since 24h --bucket …`: S3 ingest, live IAM and EKS, explanation — all through moto."""
    import random

    from tests.test_explain import NOW, REGION, missing_permission, prod_world, write_files
    from trailscan.generate import delivery_files, iso

    world = prod_world(moto)
    missing_permission(world)
    files = write_files(world, tmp_path)
    s3 = world.session.client("s3")
    s3.create_bucket(Bucket="org-trail", CreateBucketConfiguration={"LocationConstraint": REGION})
    for key, body in delivery_files(world.records, random.Random(3), prefix="trail"):
        s3.put_object(Bucket="org-trail", Key=key, Body=body)
    ran = run_cli("since", "24h", "--until", iso(NOW + timedelta(minutes=1)), "--bucket", "org-trail",
                  "--prefix", "trail", "--regions", REGION, "--cluster", "prod",
                  "--service-accounts", str(files["service_accounts"]), "--db", str(tmp_path / "s3.duckdb"),
                  "--format", "json", "--fail-on-findings",
                  env={**moto.environ(REGION), "AWS_EC2_METADATA_DISABLED": "true"})
    assert ran.returncode == 1, ran.stderr
    document = json.loads(ran.stdout)
    assert [row["source"] for row in document["coverage"]] == ["s3"]
    assert all(row["status"] == "complete" for row in document["coverage"]), document["coverage"]
    [finding] = document["findings"]
    assert (finding["cause"], finding["workload"]["namespace"], finding["workload"]["service_account"]) == (
        "MISSING_PERMISSION", "orders", "worker")
    assert finding["workload"]["cluster"] == "prod" and finding["count"] == 9
