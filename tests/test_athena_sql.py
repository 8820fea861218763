"""What the Athena SQL means: each query of queries/, rendered for Athena, returns what the
local engine returns, and the pushdown brings back what the explainer needs.

Athena itself is not here (moto runs no SQL): each rendering is parsed by sqlglot's Trino
dialect, written back as DuckDB, and run over a table with the CloudTrail table's columns
and partitions, built from the same generated delivery files the local engine reads
(tests/support/athena_duckdb.py).  The API flow is tested against moto in
tests/test_athena_engine.py.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
import sqlglot

from tests.support.athena_duckdb import (
    ACCOUNTS,
    ORG,
    REGIONS,
    WINDOW,
    DuckDBRunner,
    load_trail,
    sample_records,
    to_duckdb,
)
from trailscan.athena.engine import run_plan
from trailscan.athena.sql import Scope, detections, pushdown_sql, render_query
from trailscan.athena.table import AthenaTable, TableSpec, TrailLayout, parse_type
from trailscan.errors import QueryError
from trailscan.generate import delivery_files, write_delivery_tree
from trailscan.model import Window
from trailscan.pipeline import InventoryRequest, investigate
from trailscan.queries import load_queries
from trailscan.sources.files import ingest_files
from trailscan.sources.s3 import DELIVERY_LAG, delivery_days
from trailscan.store import Store

@pytest.fixture(scope="module")
def trail(tmp_path_factory):
    """The delivery files, the local store holding them, and the Athena-shaped DuckDB table."""
    records, key = sample_records()
    files = list(delivery_files(records, random.Random(3), org_id=ORG))
    folder = tmp_path_factory.mktemp("trail")
    write_delivery_tree(folder, files)
    local = Store.open(folder / "local.duckdb")
    ingest_files(local, [str(folder / "AWSLogs")])
    spec = TableSpec("cloudtrail", "cloudtrail_logs", TrailLayout("trail-bucket", "", ORG), ACCOUNTS, REGIONS)
    athena = duckdb.connect()
    load_trail(athena, spec, files)
    yield local, athena, spec, key
    local.close()
    athena.close()


def _values(name: str, key: str) -> dict:
    values: dict = {"since": WINDOW.start, "until": WINDOW.end}
    if name == "minted_sessions":
        values = {"since": WINDOW.start - timedelta(hours=12), "until": WINDOW.end, "access_keys": [key]}
    return values


def _normal(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.dumps(json.loads(value), sort_keys=True)
        except ValueError:
            return value
    return value


def _rows(cursor) -> list[tuple]:
    return sorted((tuple(_normal(v) for v in row) for row in cursor.fetchall()), key=repr)


EVENT_QUERIES = [q.name for q in load_queries() if q.reads == {"events"}]


@pytest.mark.parametrize("name", EVENT_QUERIES)
def test_each_query_returns_on_athena_what_it_returns_locally(name, trail):
    local, athena, spec, key = trail
    query = load_queries()[name]
    values = _values(name, key)
    expected = _rows(local.con.execute(query.typed_sql(), query.bind(values)))
    table = AthenaTable.standard(spec.database, spec.name)
    window = Window(values["since"], values["until"])
    rendered = render_query(query, table, Scope(tuple(delivery_days(window, DELIVERY_LAG)), window), values)
    # The rendering is Trino's SQL: sqlglot's Trino dialect reads it.
    assert len(sqlglot.parse(rendered, read="trino")) == 1
    assert "FROM \"cloudtrail\".\"cloudtrail_logs\"" in rendered and "\"delivery_day\" IN (" in rendered
    found = _rows(athena.execute(to_duckdb(rendered)))
    assert found == expected
    if name in ("failed_web_identity", "failed_pod_identity", "denied_calls", "minted_sessions"):
        assert expected, f"{name} found nothing: the comparison would prove little"


def test_a_query_of_the_store_alone_does_not_render_for_athena():
    with pytest.raises(QueryError, match="window_coverage reads coverage, which only the local store holds"):
        render_query(load_queries()["window_coverage"], AthenaTable.standard("d", "t"),
                     Scope((WINDOW.start.date(),), WINDOW), {})


def test_partitions_cover_the_window_with_the_delivery_lag_and_only_it():
    table = AthenaTable.standard("cloudtrail", "logs")
    late = Window(datetime(2026, 11, 27, 6, tzinfo=timezone.utc), datetime(2026, 11, 27, 23, 30, tzinfo=timezone.utc))
    rendered = render_query(load_queries()["failed_web_identity"], table,
                            Scope(tuple(delivery_days(late, DELIVERY_LAG)), late, ("111122223333",), ("eu-west-1",)),
                            {"since": late.start, "until": late.end})
    # 23:30 plus an hour of delivery lag reaches into the next day's folder.
    assert "\"delivery_day\" IN ('2026/11/27', '2026/11/28')" in rendered
    assert "\"account\" IN ('111122223333')" in rendered and "\"region\" IN ('eu-west-1')" in rendered
    assert "FROM_ISO8601_TIMESTAMP('2026-11-27T06:00:00.000000Z')" in rendered


def test_the_detections_are_found_by_their_shape_so_a_new_query_is_pushed_down(tmp_path):
    book = load_queries()
    assert [q.name for q in detections(book)] == ["change_events", "denied_calls", "failed_pod_identity",
                                                  "failed_web_identity"]
    for path in Path(book["denied_calls"].path).parent.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "role_changes.sql").write_text(
        "-- name: role_changes\n-- title: Changes to roles\n-- description: Trust and permission changes.\n"
        "-- param: since TIMESTAMPTZ = NULL  Start\n-- param: until TIMESTAMPTZ = NULL  End\n"
        "SELECT event_id, event_time, event_name, (request_parameters ->> 'roleName') AS role_name FROM events\n"
        "WHERE event_source = 'iam.amazonaws.com' AND event_name IN ('UpdateAssumeRolePolicy', 'PutRolePolicy')\n"
        "  AND error_code IS NULL AND ($since IS NULL OR event_time >= $since) AND ($until IS NULL OR event_time < $until)\n"
    )
    extended = load_queries(tmp_path)
    assert "role_changes" in [q.name for q in detections(extended)]
    table = AthenaTable.standard("cloudtrail", "logs")
    values = {"since": WINDOW.start, "until": WINDOW.end}
    sql = pushdown_sql(table, Scope((WINDOW.start.date(),), WINDOW),
                       [(q, values) for q in detections(extended)]).sql
    assert "'UpdateAssumeRolePolicy'" in sql


def _findings(report) -> list[dict]:
    found = []
    for finding in report.findings:
        document = finding.as_json()
        document["sample_event_ids"] = sorted(document.get("sample_event_ids") or [])
        found.append(document)
    return sorted(found, key=lambda d: json.dumps(d, sort_keys=True))


def test_the_pushdown_brings_back_what_the_explainer_needs(trail, tmp_path):
    local, athena, spec, key = trail
    expected = investigate(local, window=WINDOW, inventory=InventoryRequest(live_iam=False))
    assert expected.findings
    runner = DuckDBRunner(athena)
    with Store.open(":memory:") as store:
        result, coverages = run_plan(store, AthenaTable.standard(spec.database, spec.name, accounts=ACCOUNTS,
                                                                 regions=REGIONS), runner, window=WINDOW)
        found = investigate(store, window=WINDOW, inventory=InventoryRequest(live_iam=False))
        origins = {row[0] for row in store.con.execute("SELECT DISTINCT origin FROM events").fetchall()}
        stored = store.count_events()
        session = store.con.execute("SELECT event_name FROM events WHERE event_name = 'AssumeRoleWithWebIdentity' "
                                    "AND error_code IS NULL").fetchall()
        changed = store.con.execute("SELECT count(*) FROM events WHERE event_name = 'PutRolePolicy'").fetchone()[0]
    assert _findings(found) == _findings(expected)
    # One query per account and region, then the sessions' round: the refused key's account, in
    # the region it was used in and in us-east-1 (where STS's global endpoint records).
    assert len(runner.sql) == len(ACCOUNTS) * len(REGIONS) + 2
    assert all("ASIAPAYMENTSAPI0001" in sql for sql in runner.sql[-2:])
    assert session, "the session behind the refused access key came back"
    assert changed == 1, "the change events came back with the failures"
    assert all(origin.startswith("athena://cloudtrail.cloudtrail_logs/q") for origin in origins)
    # Only what the explainer needs came back; the coverage counts every event of the window.
    in_window = local.con.execute("SELECT count(*) FROM events WHERE event_time >= ? AND event_time < ?",
                                  [WINDOW.start, WINDOW.end]).fetchone()[0]
    assert stored < in_window / 10
    assert sum(c.events for c in coverages) == in_window
    assert {(c.account, c.region) for c in coverages} == {(a, r) for a in ACCOUNTS for r in REGIONS}
    assert all(c.status == "complete" and "scanned in" in c.detail and "$" in c.detail for c in coverages)


def test_a_failed_query_fails_the_coverage_of_what_it_covered(trail):
    _, athena, spec, _ = trail
    runner = DuckDBRunner(athena, fail=[lambda unit: (unit.account, unit.region) == (ACCOUNTS[1], REGIONS[0])])
    with Store.open(":memory:") as store:
        _, coverages = run_plan(store, AthenaTable.standard(spec.database, spec.name, accounts=ACCOUNTS,
                                                            regions=REGIONS), runner, window=WINDOW)
        report = investigate(store, window=WINDOW, inventory=InventoryRequest(live_iam=False))
    failed = [c for c in coverages if c.status == "failed"]
    assert [(c.account, c.region) for c in failed] == [(ACCOUNTS[1], REGIONS[0])]
    assert "HIVE_CURSOR_ERROR" in failed[0].detail
    assert not report.complete


def test_accounts_and_regions_the_table_lacks_are_failed_not_skipped(trail):
    _, athena, spec, _ = trail
    with Store.open(":memory:") as store:
        _, coverages = run_plan(store, AthenaTable.standard(spec.database, spec.name, accounts=ACCOUNTS,
                                                            regions=REGIONS), DuckDBRunner(athena), window=WINDOW,
                                accounts=[ACCOUNTS[0], "999999999999"], regions=[REGIONS[0]])
    by_place = {(c.account, c.region): c for c in coverages}
    assert by_place[("999999999999", REGIONS[0])].status == "failed"
    assert "athena setup" in by_place[("999999999999", REGIONS[0])].detail
    assert by_place[(ACCOUNTS[0], REGIONS[0])].status == "complete"


# -- the DDL and the projection ------------------------------------------------------------------------------


@pytest.mark.parametrize("org_id, prefix, location", [
    (ORG, "", f"s3://trail-bucket/AWSLogs/{ORG}/"),
    (None, "", "s3://trail-bucket/AWSLogs/"),
    (None, "org/trails", "s3://trail-bucket/org/trails/AWSLogs/"),
])
def test_the_ddl_parses_and_its_projection_covers_the_layout(org_id, prefix, location):
    spec = TableSpec("cloudtrail", "logs", TrailLayout("trail-bucket", prefix, org_id), ACCOUNTS, REGIONS)
    statements = sqlglot.parse(spec.ddl(), read="athena")
    assert len(statements) == 2
    create = statements[1]
    assert create.find(sqlglot.exp.Schema) is not None
    properties = spec.table_input()["Parameters"]
    template = properties["storage.location.template"]
    assert template == location + "${account}/CloudTrail/${region}/${delivery_day}"
    assert properties["projection.account.values"] == ",".join(ACCOUNTS)
    assert properties["projection.region.values"] == ",".join(REGIONS)
    assert properties["projection.delivery_day.format"] == "yyyy/MM/dd"
    assert template in spec.ddl() and "'projection.enabled'='true'" in spec.ddl()
    # Every delivery folder of the layout is a partition the projection names.
    for account in ACCOUNTS:
        for region in REGIONS:
            folder = f"{location}{account}/CloudTrail/{region}/2026/11/27"
            assert template.replace("${account}", account).replace("${region}", region).replace(
                "${delivery_day}", "2026/11/27") == folder
    # And the engine reads the table it describes back from Glue.
    table = AthenaTable.from_glue("cloudtrail", spec.table_input())
    assert (table.accounts, table.regions) == (ACCOUNTS, REGIONS)
    assert table.partitioning.day_column == "delivery_day"
    assert table.columns == spec.columns


def test_aws_documented_single_account_table_is_understood():
    """The table of AWS's guide: one account and region in the template, a `timestamp` day."""
    table = {
        "Name": "cloudtrail_logs_pp",
        "PartitionKeys": [{"Name": "timestamp", "Type": "string"}],
        "Parameters": {
            "projection.enabled": "true",
            "projection.timestamp.type": "date",
            "projection.timestamp.format": "yyyy/MM/dd",
            "projection.timestamp.range": "2020/01/01,NOW",
            "storage.location.template": "s3://b/AWSLogs/111122223333/CloudTrail/eu-west-1/${timestamp}",
        },
        "StorageDescriptor": {"Columns": [{"Name": c.sql_name, "Type": c.type.hive()}
                                          for c in TableSpec("d", "t", TrailLayout("b"), (), ()).columns
                                          if c.name != "tlsDetails"]},
    }
    found = AthenaTable.from_glue("default", table)
    assert (found.accounts, found.regions) == (("111122223333",), ("eu-west-1",))
    assert found.day_predicate([WINDOW.start.date()]) == "\"timestamp\" IN ('2026/11/27')"
    # A field the table lacks reads as NULL rather than failing the query.
    rendered = render_query(load_queries()["denied_calls"], found, Scope((WINDOW.start.date(),), WINDOW), {})
    assert "tls_host" not in rendered or "CAST(NULL AS VARCHAR) AS tls_host" in rendered


def test_a_table_without_projection_is_refused_with_the_way_out():
    table = {"Name": "cloudtrail_logs", "StorageDescriptor": {"Columns": [
        {"Name": n, "Type": "string"} for n in ("eventtime", "eventname", "eventsource")] + [
        {"Name": "useridentity", "Type": "struct<arn:string>"}]}}
    with pytest.raises(Exception, match="no partition projection.*athena setup"):
        AthenaTable.from_glue("default", table)


def test_hive_types_round_trip():
    text = "struct<type:string,attributes:map<string,string>,list:array<struct<arn:string>>,n:decimal(10,2)>"
    assert parse_type(text).hive() == text.replace("decimal(10,2)", "decimal")


def test_queries_show_prints_the_athena_rendering():
    from tests.conftest import run_cli

    done = run_cli("queries", "show", "failed_web_identity", "--dialect", "athena", "--param",
                   "since=2026-11-27T00:00:00Z", "--param", "until=2026-11-28T00:00:00Z", "--athena-table", "ct.logs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-- failed_web_identity:")
    assert len(sqlglot.parse(done.stdout, read="trino")) == 1
    assert "FROM \"ct\".\"logs\"" in done.stdout and "'2026/11/28'" in done.stdout
    local_only = run_cli("queries", "show", "window_coverage", "--dialect", "athena")
    assert local_only.returncode == 2 and "only the local store holds" in local_only.stderr
    assert "Traceback" not in local_only.stderr
