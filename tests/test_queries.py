"""queries/*.sql: every file loads, validates and runs; the loader rejects bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trailscan.errors import QueryError
from trailscan.queries import load_queries, parse_query
from trailscan.store import Store

# What each shipped query returns over the real corpus; a new .sql file must be added here.
EXPECTED_ROWS = {
    "denied_calls": 111,  # 90 Client.UnauthorizedOperation + 23 AccessDenied, less AWRWI and Pod Identity
    "errors_by_code": 33,
    "failed_pod_identity": 1,
    "failed_web_identity": 1,
    "failure_context": 355,  # every failed event, throttling and NoSuch* included
    "issued_sessions": 50,  # 49 AssumeRole (some with session policies, as RDS passes them) + GetFederationToken
    "minted_sessions": 2,  # the AssumeRole calls pods.eks.amazonaws.com made for pods
    "window_coverage": 1,  # the one ingest of the corpus
}


def test_every_query_file_is_exercised():
    assert sorted(q.name for q in load_queries()) == sorted(EXPECTED_ROWS)


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_query_runs_over_the_real_corpus(name, real_store):
    query = load_queries()[name]
    assert query.title and query.description
    with Store.open(real_store, read_only=True) as store:
        columns, rows = store.query(query.typed_sql(), query.bind({}))
    assert len(rows) == EXPECTED_ROWS[name]
    assert len(set(columns)) == len(columns)


def test_the_real_failures_come_back(real_store):
    book = load_queries()
    with Store.open(real_store, read_only=True) as store:
        cols, rows = store.query(book["failed_web_identity"].typed_sql(), book["failed_web_identity"].bind({}))
        web = dict(zip(cols, rows[0]))
        cols, rows = store.query(book["failed_pod_identity"].typed_sql(), book["failed_pod_identity"].bind({}))
        pod = dict(zip(cols, rows[0]))
        cols, rows = store.query(book["denied_calls"].typed_sql(), book["denied_calls"].bind({}))
        codes = {dict(zip(cols, r))["error_code"] for r in rows}
    assert web["subject"] == "system:serviceaccount:argo:awf-aws-executor-plugin"
    assert web["role_arn"] == "arn:aws:iam::100000000002:role/sm-pipelines-k8s-awf-aws-executor-plugin"
    assert pod["event_name"] == "AssumeRoleForPodIdentity" and pod["cluster"] == "eksworkshop-eksctl"
    assert "EKS does not have permissions" in pod["error_message"]
    assert codes == {"AccessDenied", "Client.UnauthorizedOperation"}


def test_window_parameters_filter(real_store):
    query = load_queries()["denied_calls"]
    with Store.open(real_store, read_only=True) as store:
        _, rows = store.query(query.typed_sql(), query.bind({"since": "2024-01-01T00:00:00Z"}))
        _, none = store.query(query.typed_sql(), query.bind({"until": "2020-01-01"}))
    assert 0 < len(rows) < 111 and none == []


def test_unknown_parameter_is_an_error():
    with pytest.raises(QueryError, match="no parameter 'sinse'"):
        load_queries()["denied_calls"].bind({"sinse": "1"})


HEADER = "-- name: q\n-- title: T\n-- description: D\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("-- title: T\n-- description: D\nSELECT 1", r"q.sql:1: missing `-- name:`"),
        ("-- name: other\n-- title: T\n-- description: D\nSELECT 1", "differs from the file name"),
        (HEADER + "SELECT $x", r"q.sql:4: parameter \$x is used but not declared"),
        (HEADER + "-- param: x INTEGER = 1  doc\nSELECT 1", "declared but never used"),
        (HEADER + "SELECT 1; SELECT 2", "more than one statement"),
        (HEADER + "-- param: bad line\nSELECT 1", r"q.sql:4: bad param line"),
        (HEADER, "no SQL after the header"),
    ],
)
def test_loader_rejects_bad_files_pointing_at_file_and_line(tmp_path, text, message):
    path = tmp_path / "q.sql"
    path.write_text(text)
    with pytest.raises(QueryError, match=message):
        parse_query(text, path)


def test_placeholders_inside_strings_and_comments_are_not_parameters(tmp_path):
    path = tmp_path / "q.sql"
    text = HEADER + "SELECT '$notparam' AS a -- $neither\n"
    assert parse_query(text, path).params == ()


def test_duplicate_names_are_rejected(tmp_path):
    (tmp_path / "a.sql").write_text(HEADER.replace("name: q", "name: a") + "SELECT 1")
    (tmp_path / "b.sql").write_text(HEADER.replace("name: q", "name: a") + "SELECT 1")
    with pytest.raises(QueryError):
        load_queries(tmp_path)


def test_cli_queries_list_show_run(real_store):
    listed = run_cli("queries", "list")
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(EXPECTED_ROWS)
    shown = run_cli("queries", "show", "failed_web_identity")
    assert "since (TIMESTAMPTZ, default NULL)" in shown.stdout and "AssumeRoleWithWebIdentity" in shown.stdout
    ran = run_cli("queries", "run", "failed_web_identity", "--db", str(real_store), "--format", "json")
    assert ran.returncode == 0, ran.stderr
    rows = json.loads(ran.stdout)
    assert rows[0]["event_time"] == "2023-11-08T15:09:08Z" and ran.stderr == ""
    missing = run_cli("queries", "run", "nope", "--db", str(real_store))
    assert missing.returncode == 2 and "no query named 'nope'" in missing.stderr


def test_parameters_are_bound_not_formatted(real_store):
    hostile = "2020-01-01'; DROP TABLE event_rows; --"
    ran = run_cli("queries", "run", "denied_calls", "--param", f"since={hostile}", "--db", str(real_store))
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    with Store.open(real_store, read_only=True) as store:
        assert store.count_events() == 3250


def test_sql_is_read_only_unless_write(real_store, tmp_path):
    refused = run_cli("sql", "DELETE FROM event_rows", "--db", str(real_store))
    assert refused.returncode == 2 and "read-only" in refused.stderr
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(Path(real_store).read_bytes())
    with Store.open(copy) as store:
        failed = store.query("SELECT count(*) FROM events WHERE error_code IS NOT NULL")[1][0][0]
    assert 0 < failed < 3250
    allowed = run_cli("sql", "DELETE FROM event_rows WHERE error_code IS NULL", "--db", str(copy), "--write")
    assert allowed.returncode == 0, allowed.stderr
    counted = run_cli("sql", "SELECT count(*) AS n FROM events", "--db", str(copy), "--format", "csv")
    assert counted.stdout.splitlines() == ["n", str(failed)]


def test_csv_neutralises_formulas(real_store):
    ran = run_cli("sql", "SELECT '=HYPERLINK(\"x\")' AS a, '+1' AS b, '-2' AS c, '@SUM(1)' AS d, 'ok' AS e",
                  "--db", str(real_store), "--format", "csv")
    import csv

    assert list(csv.reader(ran.stdout.splitlines()))[1] == ["'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(1)", "ok"]
