"""The Athena engine's API flow, against moto in server mode on 127.0.0.1.

Glue holds the table `trailscan athena setup` creates; Athena's StartQueryExecution,
GetQueryExecution (polled while moto's state machine holds queries QUEUED and RUNNING),
paginated GetQueryResults, StopQueryExecution and GetWorkGroup are real calls over HTTP.
moto runs no SQL: each query's result is queued through moto's results API, computed
beforehand by running the very same SQL in DuckDB over the Athena-shaped table built from
the bucket's files (tests/support/athena_duckdb.py).  What moto lacks — pages, bytes
scanned, a failing query, throttling — tests/support/athena_moto.py adds in front of it.
"""

from __future__ import annotations

import json
import random

import duckdb
import pytest
from botocore.config import Config

from tests.conftest import run_cli
from tests.support import athena_moto
from tests.support.athena_duckdb import ACCOUNTS, END, ORG, REGIONS, WINDOW, DuckDBRunner, load_trail, sample_records
from tests.support.moto_server import MotoServer
from trailscan.athena.client import AthenaRunner
from trailscan.athena.engine import describe_table, run_plan
from trailscan.athena.setup import SetupRequest, setup_table
from trailscan.errors import SourceError, UsageError
from trailscan.generate import delivery_files
from trailscan.iam_policy import PolicyRequest, required_policy
from trailscan.pipeline import InventoryRequest, investigate
from trailscan.store import Store

REGION = "eu-west-1"
BUCKET, RESULTS, WORKGROUP = "trail-bucket", "athena-results", "trailscan"
TABLE = "cloudtrail.cloudtrail_logs"


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer() as server:
        server.shim = athena_moto.install(server)
        server.cli_env = {**server.environ(REGION),
                          **athena_moto.speak_json_protocol(server, tmp_path_factory.mktemp("models"))}
        yield server


@pytest.fixture(scope="module")
def trail():
    records, key = sample_records()
    return list(delivery_files(records, random.Random(3), org_id=ORG)), key


@pytest.fixture
def aws(moto, trail):
    """A fresh account: the trail's bucket, a results bucket, a workgroup, the table."""
    moto.reset()
    athena_moto.release_queries(moto)
    moto.shim.scanned_bytes, moto.shim.failing, moto.shim.throttle_starts = 0, {}, 0
    session = moto.session(REGION)
    s3 = session.client("s3")
    for name in (BUCKET, RESULTS):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    # Setup lists folders; Athena (here: the queued results) reads the files.  One file per
    # account and region makes the folders.
    firsts = {}
    for key, body in trail[0]:
        firsts.setdefault(key.split("/CloudTrail/")[0] + key.split("/CloudTrail/")[1].split("/")[0], (key, body))
    for key, body in firsts.values():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    session.client("athena").create_work_group(
        Name=WORKGROUP, Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{RESULTS}/trailscan/"}})
    result = setup_table(session, SetupRequest(bucket=BUCKET, database="cloudtrail"))
    assert result.action == "created"
    yield session
    athena_moto.release_queries(moto)


@pytest.fixture(scope="module")
def expected(trail):
    """What Athena would answer to each query of the plan, in order (DuckDB's answers)."""
    files, _ = trail
    con = duckdb.connect()
    from trailscan.athena.table import TableSpec, TrailLayout

    load_trail(con, TableSpec("cloudtrail", "cloudtrail_logs", TrailLayout(BUCKET, "", ORG), ACCOUNTS, REGIONS), files)
    runner = DuckDBRunner(con)
    with Store.open(":memory:") as store:
        from trailscan.athena.table import AthenaTable

        run_plan(store, AthenaTable.standard("cloudtrail", "cloudtrail_logs", accounts=ACCOUNTS, regions=REGIONS),
                 runner, window=WINDOW)
        report = investigate(store, window=WINDOW, inventory=InventoryRequest(live_iam=False))
    con.close()
    return runner, report


def _runner(session, **options) -> AthenaRunner:
    return AthenaRunner(session, workgroup=WORKGROUP, database="cloudtrail", polls=(0.01, 0.05), page_rows=4, **options)


def _calls(session) -> list[str]:
    """Every AWS call made through *session*, as ``service:Operation``."""
    made: list[str] = []

    def note(model, **_):
        made.append(f"{model.service_model.endpoint_prefix}:{model.name}")

    session.events.register("before-call", note)
    return made


def test_setup_discovers_the_organization_layout_and_creates_the_table(aws, moto):
    table = aws.client("glue").get_table(DatabaseName="cloudtrail", Name="cloudtrail_logs")["Table"]
    parameters = table["Parameters"]
    assert parameters["storage.location.template"] == (
        f"s3://{BUCKET}/AWSLogs/{ORG}/${{account}}/CloudTrail/${{region}}/${{delivery_day}}")
    assert parameters["projection.account.values"] == ",".join(ACCOUNTS)
    assert parameters["projection.region.values"] == ",".join(REGIONS)
    described = describe_table(aws, TABLE)
    assert (described.accounts, described.regions) == (ACCOUNTS, REGIONS)
    # Again: nothing to do; with a new account's folder: brought up to date.
    assert setup_table(aws, SetupRequest(bucket=BUCKET, database="cloudtrail")).action == "unchanged"
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"AWSLogs/{ORG}/777788889999/CloudTrail/{REGION}/2026/11/28/x.json.gz",
                                Body=b"")
    assert setup_table(aws, SetupRequest(bucket=BUCKET, database="cloudtrail")).action == "updated"
    assert describe_table(aws, TABLE).accounts == (*ACCOUNTS, "777788889999")


def test_setup_dry_run_prints_the_ddl_and_creates_nothing(aws):
    result = setup_table(aws, SetupRequest(bucket=BUCKET, database="other", dry_run=True))
    assert result.action == "printed"
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `other`.`cloudtrail_logs`" in result.ddl
    assert f"s3://{BUCKET}/AWSLogs/{ORG}/${{account}}/CloudTrail/${{region}}/${{delivery_day}}" in result.ddl
    with pytest.raises(SourceError, match="no table other.cloudtrail_logs"):
        describe_table(aws, "other.cloudtrail_logs")


def test_setup_refuses_a_bucket_with_two_layouts(aws):
    aws.client("s3").put_object(Bucket=BUCKET, Key=f"AWSLogs/111122223333/CloudTrail/{REGION}/2026/11/28/x.json.gz",
                                Body=b"")
    with pytest.raises(UsageError, match="a table reads one layout"):
        setup_table(aws, SetupRequest(bucket=BUCKET, database="cloudtrail", table="plain"))


def test_the_engine_against_athena_in_moto(aws, moto, expected):
    runner_duckdb, local_report = expected
    athena_moto.queue_results(moto, runner_duckdb.results, REGION)
    athena_moto.hold_queries(moto, 2)  # QUEUED for two polls, RUNNING for two
    moto.shim.scanned_bytes = 3 * 1024**3
    calls = _calls(aws)
    with Store.open(":memory:") as store:
        runner = _runner(aws)
        runner.check()
        _, coverages = run_plan(store, describe_table(aws, TABLE), runner, window=WINDOW)
        report = investigate(store, window=WINDOW, inventory=InventoryRequest(live_iam=False))
    calls = list(calls)  # trailscan's; the test's own calls below are not
    assert [f.as_json() for f in report.findings] == [f.as_json() for f in local_report.findings]
    # The queries Athena was given are the ones DuckDB answered, in the same order.
    athena = aws.client("athena")
    sent = [athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]["Query"]
            for q in athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]]
    assert sorted(sent) == sorted(runner_duckdb.sql)
    assert calls.count("athena:GetQueryExecution") >= 4 * len(sent)  # polled through QUEUED and RUNNING
    assert moto.shim.pages > len(sent)  # results read a page of four rows at a time
    assert {c.status for c in coverages} == {"complete"}
    assert all("3.0 GB scanned in 1.5 s, $0.0146 at $5.00/TB" in c.detail for c in coverages)
    # Every call trailscan made is one the printed policy allows.
    policy = required_policy(PolicyRequest(bucket=BUCKET, org_id=ORG, engine="athena", athena_table=TABLE,
                                           workgroup=WORKGROUP, output=f"s3://{RESULTS}/trailscan/", live_iam=False))
    actions = {f"{call.split(':')[0]}:{call.split(':')[1]}" for call in calls}
    assert actions <= policy.actions, actions - policy.actions


def test_a_failed_query_fails_the_coverage_of_its_account_and_region(aws, moto, expected):
    runner_duckdb, _ = expected
    athena_moto.queue_results(moto, runner_duckdb.results, REGION)
    moto.shim.failing["\"account\" IN ('444455556666')\n    AND \"region\" IN ('eu-west-1')"] = (
        "HIVE_BAD_DATA: Error parsing field value")
    with Store.open(":memory:") as store:
        _, coverages = run_plan(store, describe_table(aws, TABLE), _runner(aws), window=WINDOW)
        report = investigate(store, window=WINDOW, inventory=InventoryRequest(live_iam=False))
    failed = [c for c in coverages if c.status == "failed"]
    assert [(c.account, c.region) for c in failed] == [("444455556666", "eu-west-1")]
    assert "HIVE_BAD_DATA" in failed[0].detail and failed[0].events == 0
    assert not report.complete


def test_throttled_starts_wait_and_are_tried_again(aws, moto, expected):
    runner_duckdb, _ = expected
    athena_moto.queue_results(moto, runner_duckdb.results, REGION)
    moto.shim.throttle_starts = 3
    runner = _runner(aws)
    # Without botocore's own retries, so that the runner's waiting is what is tested.
    runner.client = aws.client("athena", config=Config(retries={"mode": "standard", "max_attempts": 1}))
    with Store.open(":memory:") as store:
        _, coverages = run_plan(store, describe_table(aws, TABLE), runner, window=WINDOW)
    assert {c.status for c in coverages} == {"complete"}
    assert moto.shim.throttle_starts == 0


def test_ctrl_c_cancels_every_running_query_and_fails_the_coverage(aws, moto):
    athena_moto.hold_queries(moto, 10_000)
    sleeps = []

    def interrupt(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    with Store.open(":memory:") as store:
        with pytest.raises(KeyboardInterrupt):
            run_plan(store, describe_table(aws, TABLE), _runner(aws, sleep=interrupt), window=WINDOW)
        recorded = store.con.execute("SELECT status, detail FROM coverage").fetchall()
    athena = aws.client("athena")
    ids = athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]
    states = {athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]["Status"]["State"] for q in ids}
    assert len(ids) == len(ACCOUNTS) * len(REGIONS) and states == {"CANCELLED"}
    assert len(recorded) == len(ids) and {status for status, _ in recorded} == {"failed"}
    assert all("interrupted" in detail for _, detail in recorded)


def test_a_query_cancelled_elsewhere_is_failed_coverage(aws, moto, expected):
    runner_duckdb, _ = expected
    athena_moto.queue_results(moto, runner_duckdb.results, REGION)
    athena_moto.hold_queries(moto, 3)
    athena = aws.client("athena")
    stopped = []

    def stop_one(seconds):
        if not stopped:
            first = athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"][0]
            athena.stop_query_execution(QueryExecutionId=first)
            stopped.append(first)

    with Store.open(":memory:") as store:
        _, coverages = run_plan(store, describe_table(aws, TABLE), _runner(aws, sleep=stop_one), window=WINDOW)
    failed = [c for c in coverages if c.status == "failed"]
    assert len(failed) == 1 and "cancelled" in failed[0].detail and stopped[0] in failed[0].detail


def test_a_workgroup_without_a_result_location_needs_output(aws):
    aws.client("athena").create_work_group(Name="bare", Configuration={})
    with pytest.raises(UsageError, match="no query result location.*--output"):
        AthenaRunner(aws, workgroup="bare").check()
    AthenaRunner(aws, workgroup="bare", output=f"s3://{RESULTS}/x/").check()
    with pytest.raises(SourceError, match="Athena workgroup missing.*not found"):
        AthenaRunner(aws, workgroup="missing").check()


def test_since_with_the_athena_engine_end_to_end(aws, moto, expected, tmp_path):
    """The command a user runs: the table read from Glue, the workgroup checked, queries
    started, polled and read, findings printed; the store's events come from athena://."""
    runner_duckdb, local_report = expected
    athena_moto.queue_results(moto, runner_duckdb.results, REGION)
    db = tmp_path / "athena.duckdb"
    done = run_cli("since", "24h", "--until", END.isoformat(), "--engine", "athena", "--athena-table", TABLE,
                   "--workgroup", WORKGROUP, "--offline", "--format", "json", "--db", str(db),
                   env=moto.cli_env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert len(document["findings"]) == len(local_report.findings)
    assert {row["source"] for row in document["coverage"]} == {"athena"}
    with Store.open(db, read_only=True) as store:
        origins = {o for (o,) in store.con.execute("SELECT DISTINCT origin FROM events").fetchall()}
    assert origins and all(o.startswith("athena://cloudtrail.cloudtrail_logs/") for o in origins)


def test_ingest_s3_with_the_athena_engine(aws, moto, expected, tmp_path):
    runner_duckdb, _ = expected
    athena_moto.queue_results(moto, runner_duckdb.results, REGION)
    moto.shim.failing["\"account\" IN ('111122223333')\n    AND \"region\" IN ('us-east-1')"] = "HIVE_BAD_DATA: x"
    done = run_cli("ingest", "s3", "--since", WINDOW.start.isoformat(), "--until", END.isoformat(), "--engine",
                   "athena", "--athena-table", TABLE, "--workgroup", WORKGROUP, "--db", str(tmp_path / "s.duckdb"),
                   env=moto.cli_env)
    # One account and region failed: named, the rest stored, exit 3 (incomplete coverage).
    assert done.returncode == 3, done.stderr
    assert "111122223333 us-east-1: failed: Athena query" in done.stderr and "HIVE_BAD_DATA" in done.stderr
    assert "Athena read" in done.stderr and "new events stored" in done.stderr
    assert "Traceback" not in done.stderr


def test_athena_options_without_the_engine_are_refused():
    done = run_cli("since", "24h", "--bucket", BUCKET, "--athena-table", TABLE)
    assert done.returncode == 2 and "--athena-table and --output go with --engine athena" in done.stderr


def test_iam_policy_for_the_athena_engine():
    done = run_cli("iam-policy", "--engine", "athena", "--bucket", BUCKET, "--org-id", ORG, "--athena-table", TABLE,
                   "--workgroup", WORKGROUP, "--output", f"s3://{RESULTS}/trailscan/", "--offline")
    assert done.returncode == 0, done.stderr
    statements = {s["Sid"]: s for s in json.loads(done.stdout)["Statement"]}
    assert statements["RunAthenaQueries"]["Resource"] == f"arn:aws:athena:*:*:workgroup/{WORKGROUP}"
    assert "glue:GetTable" in statements["ReadTheCloudTrailTable"]["Action"]
    assert statements["ReadTrailLogFiles"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/AWSLogs/{ORG}/*"]
    assert statements["WriteAndReadQueryResults"]["Resource"] == f"arn:aws:s3:::{RESULTS}/trailscan/*"
    assert not any("*" == a or a.endswith(":*") for s in statements.values() for a in s["Action"])
    assert "athena setup" in done.stderr
