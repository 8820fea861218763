"""queries/*.sql: every file loads, validates and runs; the loader rejects bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trailscan.errors import QueryError, UsageError
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
    # Every successful AssumeRole (2 by pods.eks.amazonaws.com, 19 by IAM users, 27 by AWS
    # services, 1 role chain) with the credentials' key; no AssumeRoleWithWebIdentity succeeded.
    "minted_sessions": 49,
    "web_identity_sessions": 0,  # the corpus's one web identity was refused (tests/test_evidence.py has accepted ones)
    "window_coverage": 1,  # the one ingest of the corpus
    "change_events": 55,  # the corpus's successful IAM, EKS, S3 and KMS changes (role and bucket policies …)
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


def test_minted_sessions_walks_role_chains_hop_by_hop(store):
    """Given access keys, the sessions they were minted from come back too, hop by hop (the
    query asked again for the caller keys it returned), and a cycle (a key that leads back to
    itself) ends."""
    import random
    from datetime import UTC, datetime, timedelta

    from trailscan.generate import RoleSession, assume_role_call, iam_user_identity, web_identity_call

    rng = random.Random(17)
    now = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    account, region = "111122223333", "eu-west-1"
    provider = f"arn:aws:iam::{account}:oidc-provider/oidc.eks.{region}.amazonaws.com/id/ABC"
    pod = RoleSession(account, "payments-api", "botocore-session-1", "ASIAPOD0000000000001")
    hop = RoleSession(account, "shared-reader", "hop-1", "ASIAHOP0000000000002")
    last = RoleSession(account, "partner-writer", "hop-2", "ASIALAST000000000003")
    loop_a = RoleSession(account, "loop-a", "a", "ASIALOOPA00000000004")
    loop_b = RoleSession(account, "loop-b", "b", "ASIALOOPB00000000005")
    records = [
        web_identity_call(rng, when=now - timedelta(hours=3), region=region, account=account, provider_arn=provider,
                          subject="system:serviceaccount:payments:api", role_arn=pod.role_arn, session=pod),
        assume_role_call(rng, when=now - timedelta(hours=2), region=region, account=account,
                         caller=pod.user_identity(now - timedelta(hours=3)), session=hop),
        assume_role_call(rng, when=now - timedelta(hours=1), region=region, account=account,
                         caller=hop.user_identity(now - timedelta(hours=2)), session=last),
        assume_role_call(rng, when=now - timedelta(hours=1), region=region, account=account,
                         caller=iam_user_identity(account, "alice", "AKIAALICE00000000006"),
                         session=RoleSession(account, "admin", "alice", "ASIAADMIN00000000007")),
        # Impossible in AWS, and harmless here: each session minted with the other's key.
        assume_role_call(rng, when=now - timedelta(hours=1), region=region, account=account,
                         caller=loop_b.user_identity(now), session=loop_a),
        assume_role_call(rng, when=now - timedelta(hours=1), region=region, account=account,
                         caller=loop_a.user_identity(now), session=loop_b),
    ]
    store.ingest_documents([json.dumps({"Records": records})], origin="test")
    query = load_queries()["minted_sessions"]

    from trailscan.explain.collect import minted_sessions

    def minted(*keys: str):
        return minted_sessions(store, list(keys))

    chain = minted(last.access_key_id)
    assert set(chain) == {pod.access_key_id, hop.access_key_id, last.access_key_id}
    assert chain[last.access_key_id].caller_access_key_id == hop.access_key_id
    assert chain[last.access_key_id].caller_type == "AssumedRole"
    assert chain[pod.access_key_id].event_name == "AssumeRoleWithWebIdentity"
    assert chain[pod.access_key_id].subject == "system:serviceaccount:payments:api"
    assert set(minted(loop_a.access_key_id)) == {loop_a.access_key_id, loop_b.access_key_id}
    admin = minted("ASIAADMIN00000000007")["ASIAADMIN00000000007"]
    assert (admin.caller_type, admin.caller_arn) == ("IAMUser", f"arn:aws:iam::{account}:user/alice")
    assert minted("ASIANOTMINTEDHERE008") == {}
    # The query alone: one hop for the keys asked, every mint without keys.
    names, rows = store.query(query.typed_sql(), query.bind({"access_keys": [last.access_key_id]}))
    assert [dict(zip(names, r))["access_key_id"] for r in rows] == [last.access_key_id]
    assert len(store.query(query.typed_sql(), query.bind({}))[1]) == 6
    # Session tokens never reach the store, whatever the response held.
    assert "IQoJb3JpZ2luX2VjEXAMPLE" not in str(store.query("SELECT raw FROM events")[1])


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


# -- issue 17.7: durations as parameters; one statement; --write named -------------------------------


def test_every_timestamp_parameter_takes_what_a_window_takes():
    from datetime import UTC, datetime, timedelta

    typed = [(query, param) for query in load_queries() for param in query.params if param.type == "TIMESTAMPTZ"]
    assert typed
    for query, param in typed:
        before = datetime.now(UTC)
        moment = query.bind({param.name: "7d"})[param.name]
        assert isinstance(moment, datetime) and moment.tzinfo is not None
        assert before - timedelta(days=7, seconds=5) <= moment <= datetime.now(UTC) - timedelta(days=7)
        assert query.bind({param.name: "2024-01-01T02:00:00+02:00"})[param.name] == datetime(2024, 1, 1, tzinfo=UTC)
        assert query.bind({param.name: datetime(2024, 1, 1)})[param.name] == datetime(2024, 1, 1, tzinfo=UTC)
        assert query.bind({param.name: "NULL"})[param.name] is None and query.bind({param.name: None})[param.name] is None
        with pytest.raises(UsageError, match=f"parameter {param.name}: 'yesterday' is neither"):
            query.bind({param.name: "yesterday"})


@pytest.mark.parametrize("since, until, rows", [
    ("100000d", None, 111),  # back to the 18th century: everything
    ("1d", None, 0),  # the corpus ends in 2024
    (None, "1d", 111),
    ("2024-01-01", "2024-02-01", 0),
])
def test_queries_run_takes_durations(real_store, since, until, rows):
    params = [item for name, value in (("since", since), ("until", until)) if value for item in ("--param", f"{name}={value}")]
    ran = run_cli("queries", "run", "denied_calls", *params, "--db", str(real_store), "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert len(json.loads(ran.stdout)) == rows


def test_queries_run_refuses_a_bad_moment_in_one_line(real_store):
    ran = run_cli("queries", "run", "denied_calls", "--param", "until=soon", "--db", str(real_store))
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "trailscan: error: query denied_calls, parameter until: 'soon' is neither a duration nor a date "
        "(use 24h, 7d, or an ISO time such as 2026-11-27T06:00:00Z)"]


@pytest.mark.parametrize("sql", ["SELECT 1; SELECT 2", "SELECT 1;\nDELETE FROM event_rows", "SELECT 1; SELECT 2; SELECT 3;"])
def test_sql_refuses_more_than_one_statement(real_store, sql):
    ran = run_cli("sql", sql, "--db", str(real_store))
    assert ran.returncode == 2 and ran.stdout == "" and "Traceback" not in ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("trailscan: error: ") and f"{sql.count('SELECT') + sql.count('DELETE')} SQL statements" in line
    with Store.open(real_store, read_only=True) as store:
        assert store.count_events() == 3250


@pytest.mark.parametrize("sql", ["SELECT 1;", "  SELECT 'a;b' AS x  ", "SELECT 1 -- a comment; not a statement"])
def test_sql_runs_one_statement_however_written(real_store, sql):
    ran = run_cli("sql", sql, "--db", str(real_store), "--format", "json")
    assert ran.returncode == 0, ran.stderr
    assert len(json.loads(ran.stdout)) == 1


@pytest.mark.parametrize("sql, kind", [
    ("DELETE FROM event_rows", "DELETE"),
    ("INSERT INTO state VALUES ('k', '1', now())", "INSERT"),
    ("UPDATE coverage SET status = 'complete'", "UPDATE"),
    ("CREATE TABLE notes (text VARCHAR)", "CREATE"),
    ("DROP VIEW events", "DROP"),
    ("ALTER TABLE coverage ADD COLUMN x INTEGER", "ALTER"),
    ("COPY events TO 'out.csv'", "COPY"),
    ("SET threads = 1", "SET"),
])
def test_sql_without_write_names_write(real_store, tmp_path, sql, kind):
    ran = run_cli("sql", sql, "--db", str(real_store), cwd=tmp_path)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("trailscan: error: ") and f"pass --write to run {kind}" in line
    assert list(tmp_path.iterdir()) == []
    with Store.open(real_store, read_only=True) as store:
        assert store.count_events() == 3250


def test_sql_errors_unrelated_to_write_do_not_mention_it(real_store):
    ran = run_cli("sql", "SELECT * FROM no_such_table", "--db", str(real_store))
    assert ran.returncode == 2 and "--write" not in ran.stderr and "no_such_table" in ran.stderr


def test_sql_with_write_runs_what_it_refused(real_store, tmp_path):
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(Path(real_store).read_bytes())
    made = run_cli("sql", "CREATE TABLE notes (text VARCHAR)", "--db", str(copy), "--write")
    assert made.returncode == 0, made.stderr
    listed = run_cli("sql", "SELECT count(*) AS n FROM notes", "--db", str(copy), "--format", "csv")
    assert listed.stdout.splitlines() == ["n", "0"]
