"""The notebook API: ``trailscan.open()`` and its session, over real DuckDB stores, with S3
through moto in server mode and LookupEvents through the loopback server."""

from __future__ import annotations

import inspect
import json
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pytest

import trailscan
from trailscan import api, generate
from trailscan.errors import QueryError, UsageError
from trailscan.findings import SCHEMA

ACCOUNT, REGION = "111122223333", "eu-west-1"
ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/5C1A7E0E5A1B2C3D4E5F60718293A4B5"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
SPEC_COLUMNS = [
    "kind", "cause", "cluster", "namespace", "service_account", "resolution", "role_arn", "event_name",
    "error_code", "count", "first_seen", "last_seen", "explanation", "fix",
]


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def scenario(end: datetime, *, healthy: int = 300, seed: int = 7) -> list[dict]:
    """Healthy traffic over 24 hours, and the refusals of :func:`generate.sample_failures`
    (3 refused web identities of payments/api, 4 sqs:SendMessage denied to orders-worker,
    4 ec2:DescribeSnapshots by the node role) in the last 6 hours."""
    rng = random.Random(seed)
    records = list(generate.healthy_traffic(
        rng, count=healthy, start=end - timedelta(hours=24), end=end, accounts=[ACCOUNT], regions=[REGION, "us-east-1"]
    ))
    records += generate.sample_failures(rng, start=end - timedelta(hours=6), end=end, account=ACCOUNT, region=REGION)
    return records


def write_trail(folder: Path, records: list[dict], seed: int = 7) -> Path:
    generate.write_delivery_tree(folder, generate.delivery_files(records, random.Random(seed)))
    return folder


def write_inventory(folder: Path) -> tuple[Path, Path]:
    """serviceaccounts.json and iam.json as kubectl and the AWS CLI save them: the payments
    role trusts ``payments:payments-api`` (not ``payments:api``), the orders role may not send."""
    def trust(subject: str) -> dict:
        return {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{ISSUER}:sub": subject, f"{ISSUER}:aud": "sts.amazonaws.com"}}}]}

    def role(name: str, document: dict, actions: list[str]) -> dict:
        return {"Path": "/", "RoleName": name, "RoleId": "AROA" + name.upper().replace("-", "")[:17].ljust(17, "X"),
                "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "AssumeRolePolicyDocument": document,
                "RolePolicyList": [{"PolicyName": "inline", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": actions, "Resource": "*"}]}}],
                "AttachedManagedPolicies": [], "Tags": []}

    def sa(namespace: str, name: str, role_name: str | None) -> dict:
        annotations = {"eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/{role_name}"} if role_name else {}
        return {"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"namespace": namespace, "name": name, "annotations": annotations}}

    accounts = folder / "serviceaccounts.json"
    accounts.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        sa("payments", "api", "payments-api"), sa("orders", "worker", "orders-worker"), sa("default", "default", None)]}))
    iam = folder / "iam.json"
    iam.write_text(json.dumps({
        "RoleDetailList": [
            role("payments-api", trust("system:serviceaccount:payments:payments-api"), ["dynamodb:GetItem"]),
            role("orders-worker", trust("system:serviceaccount:orders:worker"), ["sqs:ReceiveMessage"]),
        ],
        "Policies": [], "UserDetailList": [], "GroupDetailList": [], "IsTruncated": False,
        "OpenIDConnectProviderList": [{"Arn": PROVIDER, "Url": ISSUER, "ClientIDList": ["sts.amazonaws.com"],
                                       "ThumbprintList": ["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"]}],
    }))
    return accounts, iam


@pytest.fixture
def end() -> datetime:
    return now()


@pytest.fixture
def trail(tmp_path, end) -> Path:
    return write_trail(tmp_path / "trail", scenario(end))


@pytest.fixture
def inventory(tmp_path) -> tuple[Path, Path]:
    return write_inventory(tmp_path)


@pytest.fixture
def ts(trail):
    with trailscan.open(":memory:") as session:
        session.ingest_files(trail)
        yield session


# -- the package --------------------------------------------------------------------------


def test_importing_trailscan_is_quiet_and_loads_nothing_heavy():
    probe = (
        "import logging, sys\n"
        "import trailscan\n"
        "heavy = [m for m in ('duckdb', 'pandas', 'pyarrow', 'boto3', 'trailscan.api') if m in sys.modules]\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n"
        "sys.stderr.write(repr(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == "[]"


def test_open_and_session_are_exported_lazily():
    from trailscan import Session
    from trailscan import open as opened

    assert opened is api.open and Session is api.Session
    assert {"open", "Session"} <= set(dir(trailscan))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trailscan.nope  # noqa: B018


def test_the_public_api_is_typed():
    public = [api.open, api.make_window, api.workload_label]
    public += [m for name, m in inspect.getmembers(api.Session, inspect.isfunction) if not name.startswith("_")]
    public += [m for name, m in inspect.getmembers(api.Explanation, inspect.isfunction) if not name.startswith("_")]
    for function in public:
        signature = inspect.signature(function)
        assert signature.return_annotation is not inspect.Signature.empty, function.__qualname__
        for name, parameter in signature.parameters.items():
            if name != "self":
                assert parameter.annotation is not inspect.Parameter.empty, f"{function.__qualname__}({name})"
    assert (Path(trailscan.__file__).parent / "py.typed").exists()


# -- windows ------------------------------------------------------------------------------


def test_make_window():
    until = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    assert api.make_window(None, None) is None
    window = api.make_window("24h", until)
    assert (window.start, window.end) == (until - timedelta(hours=24), until)
    window = api.make_window(datetime(2026, 11, 27), "2026-11-28T06:00:00Z")
    assert window.start == datetime(2026, 11, 27, tzinfo=UTC) and window.end == until
    assert api.make_window(None, until).start == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(UsageError, match="at or after it ends"):
        api.make_window("2026-11-29", until)
    with pytest.raises(UsageError):
        api.make_window("yesterday-ish")


# -- ingesting -------------------------------------------------------------------------------


def test_ingest_files_says_what_it_did_and_keeps_going_past_a_bad_file(tmp_path, trail):
    (trail / "broken.json").write_text('{"Records": [{"eventID": ')
    with trailscan.open(":memory:") as ts:
        assert "0 events" in repr(ts)
        done = ts.ingest_files([trail])
        assert done.source == "files" and done.records == done.new_events == 311
        assert done.total_events == 311
        assert len(done.problems) == 1 and "broken.json" in done.problems[0]
        assert not done.complete and done.coverage[0].status == "partial"
        assert "could not be read" in repr(done) and "broken.json" in done._repr_html_()
        again = ts.ingest_files(str(trail / "AWSLogs"))
        assert again.new_events == 0 and again.complete


def test_a_store_on_disk_is_released_when_the_session_closes(tmp_path, trail):
    db = tmp_path / "store.duckdb"
    with trailscan.open(db) as ts:
        ts.ingest_files(trail)
    with trailscan.open(db, read_only=True) as reader:
        assert len(reader.events()) == 311
        assert str(db) in repr(reader)
    writer = trailscan.open(db)  # nobody holds the store any more
    writer.close()


# -- reading -------------------------------------------------------------------------------------


def test_sql_returns_a_relation_with_bound_parameters(ts):
    relation = ts.sql("SELECT event_name, count(*) AS n FROM events WHERE error_code = $code GROUP BY ALL", code="AccessDenied")
    frame = relation.df()
    assert dict(zip(frame.event_name, frame.n)) == {"AssumeRoleWithWebIdentity": 3, "SendMessage": 4}
    table = relation.to_arrow_table()
    assert isinstance(table, pa.Table) and table.num_rows == 2
    assert relation.filter("n > 3").df().event_name.tolist() == ["SendMessage"]
    # Bound, never formatted in: a quote is just a value.
    assert ts.sql("SELECT count(*) AS n FROM events WHERE event_name = $name", name="x' OR '1'='1").df().n[0] == 0
    with pytest.raises(QueryError, match="no_such_table"):
        ts.sql("SELECT * FROM no_such_table")


def test_sql_works_after_the_pipeline_used_the_store(ts, trail):
    # DuckDB 2 refuses new work on a connection holding an unfinished execute() result;
    # the store's own code leaves such results (fetchone), the session reads on its own cursor.
    with ts.opened() as store:
        store.con.execute("SELECT count(*) FROM events").fetchone()
    assert ts.sql("SELECT count(*) AS n FROM events").df().n[0] == 311
    ts.ingest_files(trail)
    assert len(ts.events(limit=3)) == 3
    assert ts.summary().events == 311


def test_events_filters(ts, end):
    everything = ts.events()
    assert len(everything) == 311
    assert list(everything.columns[:4]) == ["event_time", "event_id", "event_source", "event_name"]
    assert "raw" not in everything.columns and "raw" in ts.events(limit=1, raw=True).columns
    assert str(everything.event_time.dtype) == "datetime64[us, UTC]"
    assert everything.event_time.is_monotonic_decreasing  # latest first

    failed = ts.events(errors_only=True)
    assert len(failed) == 11 and failed.error_code.notna().all()
    assert len(ts.events("6h", end + timedelta(seconds=1), errors_only=True)) == 11
    assert len(ts.events(end - timedelta(hours=30), end - timedelta(hours=6), errors_only=True)) == 0
    assert len(ts.events(event_name="SendMessage")) == 4
    assert len(ts.events(event_name=["SendMessage", "DescribeSnapshots"])) == 8
    assert len(ts.events(limit=5)) == 5 and len(ts.events(limit=0)) == 0

    # The caller: a service account (or its NS/SA short form), a role (all its sessions), an access key.
    assert len(ts.events(principal="system:serviceaccount:payments:api")) == 3
    assert len(ts.events(principal="payments/api")) == 3
    assert len(ts.events(principal=f"arn:aws:iam::{ACCOUNT}:role/orders-worker")) == 4
    key = failed.loc[failed.event_name == "DescribeSnapshots", "access_key_id"].iloc[0]
    assert len(ts.events(principal=key)) == 4
    with pytest.raises(UsageError):
        ts.events(limit=-1)


def test_coverage_now_and_in_history(ts, trail):
    ts.ingest_files(trail)
    latest = ts.coverage()
    assert latest[["source", "status"]].values.tolist() == [["files", "complete"]]
    history = ts.coverage(history=True)
    assert history.events.tolist() == [311, 311] and history.recorded_at.is_monotonic_decreasing


# -- explaining --------------------------------------------------------------------------------------


def test_explain_with_the_inventory(ts, inventory, end):
    accounts, iam = inventory
    found = ts.explain("24h", end + timedelta(seconds=1), service_accounts=accounts, iam=iam)
    causes = {f.cause: f for f in found}
    assert set(causes) == {"TRUST_SUBJECT_MISMATCH", "MISSING_PERMISSION", "NODE_ROLE_FALLBACK"}
    assert found.complete and len(found) == 3

    frame = found.to_frame()
    assert list(frame.columns[: len(SPEC_COLUMNS)]) == SPEC_COLUMNS
    assert str(frame["count"].dtype) == "int64" and str(frame.first_seen.dtype) == "datetime64[us, UTC]"
    payments = frame.index[frame.cause == "TRUST_SUBJECT_MISMATCH"][0]
    assert frame.loc[payments, ["namespace", "service_account", "resolution", "count"]].tolist() == ["payments", "api", "exact", 3]
    assert frame.loc[payments, "workload"].endswith("payments/api")
    assert frame.loc[payments, "role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/payments-api"
    assert "system:serviceaccount:payments:api" in frame.loc[payments, "fix"]

    drilled = found.events(payments)
    assert len(drilled) == 3 and set(drilled.user_name) == {"system:serviceaccount:payments:api"}
    assert len(found.events(causes["MISSING_PERMISSION"])) == 4

    timeline = found.timeline()
    assert len(timeline) == 11 and timeline.event_time.is_monotonic_increasing
    assert set(timeline.cause) == set(causes)
    assert timeline.groupby("workload").size().to_dict() == {
        label: count for label, count in zip(frame.workload, frame["count"])
    }

    document = found.document()
    assert document["schema"] == SCHEMA and len(document["findings"]) == 3
    assert set(document) == {"schema", "generated_at", "window", "coverage", "findings"}
    assert found.coverage().status.tolist() == ["complete"]
    assert "TRUST_SUBJECT_MISMATCH" in repr(found) and "payments/api" in found._repr_html_()


def test_findings_without_an_inventory_and_an_empty_window(ts, end):
    frame = ts.findings(live_iam=False)
    assert len(frame) == 3 and frame["count"].sum() == 11
    empty = ts.explain(end - timedelta(days=30), end - timedelta(days=29), live_iam=False)
    assert len(empty) == 0 and list(empty.to_frame().columns) == list(api.FINDING_COLUMNS)
    # A window without a single event is no all-clear (it said "No refused calls" before issue 17).
    assert "No CloudTrail events in the window" in empty._repr_html_()
    assert "No refused calls" not in empty._repr_html_() and not empty.complete
    assert empty.timeline().empty


def people(end: datetime) -> list[dict]:
    """An IAM user refused twice, and a session she assumed refused once: no EKS workload."""
    rng = random.Random(11)
    alice = generate.iam_user_identity(ACCOUNT, "alice", "AKIAALICEEXAMPLE0001")
    admin = generate.RoleSession(ACCOUNT, "admin", "alice", generate.access_key_id(rng))
    records = [generate.assume_role_call(rng, when=end - timedelta(hours=2), region=REGION, account=ACCOUNT,
                                         caller=alice, session=admin)]
    for identity, count in ((alice, 2), (admin.user_identity(end - timedelta(hours=2)), 1)):
        records += [generate.api_call(rng, when=end - timedelta(minutes=5 + n), region=REGION, account=ACCOUNT,
                                      identity=identity, event_source="ce.amazonaws.com", event_name="GetCostAndUsage",
                                      error_code="AccessDenied", error_message="denied") for n in range(count)]
    return records


def test_callers_that_are_no_eks_workload_are_left_out_unless_asked_for(tmp_path, end):
    with trailscan.open(":memory:") as ts:
        ts.ingest_files(write_trail(tmp_path / "trail", scenario(end) + people(end)))
        found = ts.explain(live_iam=False)
        assert found.to_frame()["count"].sum() == 11 and "not_eks" not in set(found.to_frame()["resolution"])
        note = ("left out 3 refused calls by 2 principals that are not EKS workloads (user alice, role admin); "
                "--all-principals (all_principals=True) includes them")
        assert found.report.notes[-1] == note and note in repr(found) and note in found._repr_html_()
        assert [f.principal_arn for f in found.report.left_out] == [
            f"arn:aws:iam::{ACCOUNT}:user/alice", f"arn:aws:sts::{ACCOUNT}:assumed-role/admin/alice"]
        frame = ts.findings(live_iam=False, all_principals=True)
        outside = frame[frame.resolution == "not_eks"]
        assert frame["count"].sum() == 14 and outside["count"].sum() == 3
        assert set(outside.workload) == {"user alice", "role admin"}
        assert not any(note in n for n in ts.explain(live_iam=False, all_principals=True).report.notes)
        # The report says it too.
        location = ts.report(to=tmp_path / "report", findings=found, now=end)
        from trailscan.report import md_text

        assert note in Path(location.html).read_text()
        assert md_text(note) in Path(location.url("report.md")).read_text()


# -- summaries ---------------------------------------------------------------------------------------


def test_the_summary_reads_only_cheap_aggregates(ts, monkeypatch):
    statements: list[str] = []
    rows = ts._rows

    def recording(query, params=None):
        statements.append(query)
        return rows(query, params)

    def refuse(*args, **kwargs):
        raise AssertionError("the summary must not explain the store")

    monkeypatch.setattr(ts, "_rows", recording)
    monkeypatch.setattr("trailscan.pipeline.collect_failures", refuse)
    monkeypatch.setattr("trailscan.pipeline.explain_failures", refuse)
    html = ts._repr_html_()
    text = repr(ts)
    assert statements and not any("raw" in s or "request_parameters" in s for s in statements)
    assert "311" in html and "Coverage" in html and "complete" in html and "AccessDenied" in html
    assert "311 events" in text and "11 failed" in text


def test_the_summary_shows_findings_by_cause_once_explained(ts, inventory):
    accounts, iam = inventory
    assert "Findings by cause" not in ts._repr_html_()
    ts.explain(service_accounts=accounts, iam=iam)
    html = ts._repr_html_()
    assert "Findings by cause" in html and "TRUST_SUBJECT_MISMATCH" in html


def test_an_ingest_forgets_the_last_explanation(ts, trail, inventory):
    accounts, iam = inventory
    ts.explain(service_accounts=accounts, iam=iam)
    ts.ingest_files(trail)
    assert ts.summary().explanation is None


def test_html_summaries_escape_what_cloudtrail_says(tmp_path, end):
    planted = "<script>alert(1)</script>"
    records = scenario(end, healthy=20)
    for record in records:
        if record.get("errorCode"):
            record["errorCode"] = "AccessDenied"
            record["awsRegion"] = planted
            record["userAgent"] = planted
    (tmp_path / "planted.json").write_text(json.dumps({"Records": records}))
    with trailscan.open(":memory:") as ts:
        ingested = ts.ingest_files(tmp_path / "planted.json")
        found = ts.explain(live_iam=False)
        for html in (ts._repr_html_(), found._repr_html_(), ingested._repr_html_()):
            assert "<script>" not in html
        assert "&lt;script&gt;" in ts._repr_html_()


# -- reporting ---------------------------------------------------------------------------------------


def test_report_writes_the_four_artifacts(ts, tmp_path, inventory, end):
    import pyarrow.parquet as pq

    accounts, iam = inventory
    found = ts.explain("24h", end + timedelta(seconds=1), service_accounts=accounts, iam=iam)
    location = ts.report(to=tmp_path / "reports", findings=found, now=end)
    folder = Path(location.folder)
    assert sorted(p.name for p in folder.iterdir()) == ["events.parquet", "findings.json", "report.html", "report.md"]
    document = json.loads((folder / "findings.json").read_text())
    assert document["schema"] == SCHEMA and len(document["findings"]) == 3
    assert pq.read_table(folder / "events.parquet").num_rows == 311
    assert "payments/api" in (folder / "report.md").read_text()

    # Everything stored, explained from CloudTrail alone: the last event is inside the window.
    whole = ts.report(to=tmp_path / "whole", findings=ts.explain(live_iam=False), now=end)
    assert pq.read_table(Path(whole.folder) / "events.parquet").num_rows == 311


def test_report_of_an_empty_store_says_so(tmp_path):
    with trailscan.open(":memory:") as ts, pytest.raises(UsageError, match="no events"):
        ts.report(to=tmp_path / "reports")


# -- AWS sources, through the session's boto3.Session -------------------------------------------------


@pytest.fixture
def moto_endpoint(moto, monkeypatch, tmp_path):
    """The moto server (tests/conftest.py), reached through standard AWS configuration."""
    endpoint = moto.endpoint_url
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "absent-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return endpoint


def test_ingest_s3_reads_the_bucket_through_the_given_session(moto_endpoint, end):
    session = boto3.Session(region_name="us-east-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="trail-bucket")
    records = scenario(end - timedelta(minutes=30))
    for key, body in generate.delivery_files(records, random.Random(5)):
        s3.put_object(Bucket="trail-bucket", Key=key, Body=body)
    start = generate.iso(end - timedelta(hours=24))
    with trailscan.open(":memory:") as ts:
        done = ts.ingest_s3("24h", end, bucket="s3://trail-bucket", session=session)
        assert done.source == "s3" and done.complete
        assert done.new_events == sum(r["eventTime"] >= start for r in records)
        assert {(c.account, c.region) for c in done.coverage} == {(ACCOUNT, REGION), (ACCOUNT, "us-east-1")}
        assert "objects" in repr(done)
        again = ts.ingest_s3("24h", end, bucket="trail-bucket", regions="eu-west-1", session=session)
        assert again.files == 0 and again.new_events == 0  # objects already stored are not fetched again
        assert {row.status for row in ts.coverage().itertuples()} == {"complete"}
    with trailscan.open(":memory:") as ts, pytest.raises(UsageError, match="needs a window"):
        ts.ingest_s3(None, session=session)


def test_ingest_lookup_pages_lookupevents_through_the_given_session(moto_endpoint, monkeypatch, end):
    from tests.support.lookup_server import LookupServer

    records = scenario(end - timedelta(minutes=30), healthy=60)
    with LookupServer(rate=50, burst=50) as server:
        server.add_events(REGION, [r for r in records if r["awsRegion"] == REGION])
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", server.endpoint_url)
        session = boto3.Session(region_name=REGION)
        with trailscan.open(":memory:") as ts:
            done = ts.ingest_lookup("24h", end, regions=[REGION], session=session)
            assert done.source == "lookup" and done.complete
            assert done.new_events == len([r for r in records if r["awsRegion"] == REGION])
            assert [c.region for c in done.coverage] == [REGION]
            assert "pages" in repr(done)
            assert len(ts.findings(live_iam=False)) == 3


# -- side by side with the CLI (issue 22.3) -----------------------------------------------------

OFFLINE = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def test_the_cli_reads_and_writes_while_a_notebook_session_is_open(tmp_path, trail, record_property):
    """`ts = trailscan.open(path)` left open, as in Jupyter: a second process reads and
    ingests, and the session sees what it wrote."""
    from tests.conftest import run_cli

    db = tmp_path / "store.duckdb"
    ts = trailscan.open(db)  # never closed until the end, as a notebook leaves it
    ts.ingest_files(trail)
    assert len(ts.events()) == 311
    read = run_cli("findings", "--db", str(db), "--format", "json", env=OFFLINE)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["findings"]
    more = tmp_path / "more"
    write_trail(more, scenario(datetime(2026, 11, 20, 6, tzinfo=UTC), healthy=20, seed=11), seed=11)
    wrote = run_cli("ingest", "files", str(more), "--db", str(db), env=OFFLINE)
    assert wrote.returncode == 0, wrote.stderr
    assert len(ts.events()) > 311 and ts.sql("SELECT count(*) AS n FROM events").df().n[0] > 311
    # Opening is cheap: one open and close of the file; each call pays one more.
    started = time.perf_counter()
    trailscan.open(db).close()
    opened = time.perf_counter() - started
    started = time.perf_counter()
    ts.events(limit=1)
    call = time.perf_counter() - started
    record_property("open_seconds", round(opened, 4))
    record_property("events_call_seconds", round(call, 4))
    assert opened < 1.0 and call < 1.0, (opened, call)
    ts.close()


def test_a_cli_writer_waits_for_a_notebook_write_not_for_the_notebook_to_close(tmp_path, trail):
    from tests.conftest import run_cli

    db = tmp_path / "store.duckdb"
    ts = trailscan.open(db)
    released = threading.Event()

    def notebook_write() -> None:
        with ts.opened(write=True):  # a write in progress, as ingest_files holds it
            time.sleep(2.0)
        released.set()

    thread = threading.Thread(target=notebook_write)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    ran = run_cli("ingest", "files", str(trail), "--db", str(db), env=OFFLINE)
    thread.join()
    assert ran.returncode == 0, ran.stderr
    assert released.is_set() and time.monotonic() - started >= 1.0  # it waited for the write
    assert len(ts.events()) == 311
    ts.close()


def test_a_closed_session_says_so(tmp_path):
    ts = trailscan.open(tmp_path / "store.duckdb")
    ts.close()
    with pytest.raises(UsageError, match="closed"):
        ts.events()


def test_where_duckdb_cannot_allow_it_the_message_names_ts_close(tmp_path, trail):
    """A notebook call still writing when the CLI's wait runs out: the CLI's one line says
    the notebook holds the store only during a call, and names ts.close()."""
    from tests.conftest import run_cli

    db = tmp_path / "store.duckdb"
    ts = trailscan.open(db)
    with ts.opened(write=True):
        ran = run_cli("findings", "--db", str(db), env={**OFFLINE, "TRAILSCAN_LOCK_WAIT": "0.5"})
    assert ran.returncode != 0 and "in use by another process" in ran.stderr and "ts.close()" in ran.stderr
    ts.close()
