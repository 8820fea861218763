"""Nothing CloudTrail says can act on whoever reads trailscan's output (issue 8).

CloudTrail records what callers sent: a user agent, a role ARN in a request, the subject
of a web-identity token from an untrusted issuer, an error message quoting them.  Records
planted here carry HTML, Markdown, spreadsheet formulas and SQL in those fields and go
through the real pipeline (files → store → explain → render), and each output is checked:
Markdown of ``trailscan findings``, the HTML and Markdown report, CSV exports; then
``trailscan sql`` is read-only for the machine as well as the store, ``queries run`` binds
its parameters, and S3 keys cannot write outside the download folder.

report.py's own tests (tests/test_report.py) check the renderers on a hand-written findings
document; these start from CloudTrail records.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trailscan.errors import QueryError
from trailscan.generate import (
    RoleSession,
    access_key_id,
    api_call,
    iso,
    pod_identity_agent_call,
    web_identity_call,
)
from trailscan.model import Window
from trailscan.store import Store

ACCOUNT = "111122223333"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=24), NOW)
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"

# A token's subject is whatever its issuer signed: an untrusted issuer signs anything.
NAMESPACE = "pay|ments`x`"
SERVICE_ACCOUNT = "api<img src=x onerror=alert(1)>$(touch${IFS}pwned)\x1b]0;title\x07"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/x</td><script>alert(2)</script>\n# Injected heading\n```\n| a | b |"
MESSAGE = (
    "denied | cell ![x](http://evil.example/p.png) [click](http://evil.example) **bold** `tick`\n\n"
    "# Heading from CloudTrail\n<script>alert(3)</script>\n- list item"
)
AGENT = "=cmd|' /C calc'!A0 Boto3/1.9.0"
FORMULAS = ("=cmd|' /C calc'!A0", "+SUM(1)", "-2+3", "@SUM(A1)", "\t=1", "\r=1")


def at(minutes: int) -> datetime:
    return NOW - timedelta(hours=3) + timedelta(minutes=minutes)


def web_identity(rng: random.Random, event_id: str, when: datetime, **options) -> dict:
    """An AssumeRoleWithWebIdentity of payments/api (``trailscan.generate``); ``options`` as
    ``web_identity_call`` takes them."""
    options = {"subject": "system:serviceaccount:payments:api", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/payments-api",
               **options}
    return web_identity_call(rng, when=when, region="eu-west-1", account=ACCOUNT, provider_arn=PROVIDER,
                             event_id=event_id, **options)


def hostile_records() -> list[dict]:
    rng = random.Random(8)
    node = RoleSession(ACCOUNT, "node-role", "i-0123456789abcdef0", "ASIAEXAMPLENODE00001", role_id="AROAEXAMPLENODE",
                       ec2_role_delivery=True)
    records = [
        web_identity(rng, f"wi-{i}", at(i), subject=f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}",
                     role_arn=ROLE_ARN, session_name="s<b>1</b>", user_agent=AGENT, error_code="AccessDenied",
                     error_message=MESSAGE)
        for i in range(3)
    ]
    records += [
        api_call(rng, when=at(10 + i), region="eu-west-1", account=ACCOUNT, identity=node.user_identity(at(0)),
                 event_source="dynamodb.amazonaws.com", event_name="PutItem", user_agent=FORMULAS[i % len(FORMULAS)],
                 error_code="AccessDeniedException", error_message=f"User: {node.arn} is not authorized: {MESSAGE}",
                 request_parameters={"tableName": "orders|`x`"}, event_id=f"dn-{i}")
        for i in range(len(FORMULAS))
    ]
    return records


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / f"{ACCOUNT}_CloudTrail_eu-west-1_20261128T0305Z_x.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": hostile_records()}).encode())
    )
    db = folder / "store.duckdb"
    done = run_cli("ingest", "files", str(folder), "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db


# -- Markdown and HTML ---------------------------------------------------------------------------------


def unescaped_pipes(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row))


def outside_fences(markdown: str) -> str:
    """The Markdown without the content of its fenced blocks (literal text when rendered)."""
    kept, fence = [], None
    for line in markdown.splitlines():
        ticks = re.match(r"^(`{3,})", line)
        if fence is None:
            kept.append(line)
            if ticks:
                fence = ticks.group(1)
        elif line.strip() == fence:
            kept.append(line)
            fence = None
    return "\n".join(kept)


def assert_safe_markdown(markdown: str) -> None:
    """No HTML, no link, image or heading that came from CloudTrail, every table row with
    the cells of its header, and code fences that close where the renderer opened them."""
    text = outside_fences(markdown)
    assert "<script" not in text and "<img" not in text and "</td>" not in text
    # The report's own links (a cause's AWS page, a role's IAM console page) are the only ones.
    own = re.sub(r"\]\(https://(docs\.aws\.amazon\.com|console\.aws\.amazon\.com/iam/home#/roles/details)/[^)\s]*\)", "]", text)
    assert not re.search(r"(?<!\\)\]\(http", own), "a link or image from CloudTrail"
    lines = text.splitlines()
    for heading in ("# Heading from CloudTrail", "# Injected heading"):
        assert not [line for line in lines if line.lstrip("#").strip() == heading.lstrip("# ")], heading
    assert not [line for line in lines if line.strip() == "- list item"]
    # Tables: every row of a block has as many cells as its header.
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({unescaped_pipes(row) for row in rows}) <= 1, block
    # A fence is closed by a line of at least as many backticks; nothing inside may do it.
    fence = None
    for line in markdown.splitlines():
        ticks = re.match(r"^(`{3,})", line)
        if fence is None and ticks:
            fence = ticks.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is not None:
            assert not line.startswith(fence), f"content closes a fence: {line!r}"
    assert fence is None, "a fence is left open"


def test_findings_markdown_escapes_every_cloudtrail_string(hostile_db):
    done = run_cli("findings", "--format", "markdown", "--offline", "--db", str(hostile_db))
    assert done.returncode in (0, 3), done.stderr
    assert "Traceback" not in done.stderr
    assert "pay" in done.stdout and "evil.example" in done.stdout  # the strings are shown, escaped
    assert_safe_markdown(done.stdout)


def test_fix_commands_pasted_into_a_shell_run_nothing_from_cloudtrail(hostile_db, tmp_path):
    """Fixes are shell commands made to be pasted into a terminal; the namespace and name in
    them come from a web-identity subject.  Each command line of every fix is run by bash
    with kubectl, aws and eksctl replaced by a recorder: nothing else runs, and the
    recorder receives the names exactly as CloudTrail had them."""
    done = run_cli("findings", "--format", "json", "--offline", "--db", str(hostile_db))
    fixes = [finding["fix"] for finding in json.loads(done.stdout)["findings"]]
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("kubectl", "aws", "eksctl"):
        (tools / tool).write_text('#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "$RECORD"\n')
        (tools / tool).chmod(0o755)
    record_file = tmp_path / "record.txt"
    commands = [line for fix in fixes for line in fix.splitlines() if line.startswith(("kubectl ", "aws ", "eksctl "))]
    assert any(line.startswith("kubectl annotate") for line in commands)
    for line in commands:
        ran = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, check=False,
                             env={"PATH": f"{tools}:/usr/bin:/bin", "RECORD": str(record_file)})
        assert ran.returncode == 0, (line, ran.stderr)
    assert not (tmp_path / "pwned").exists(), "a command substitution from CloudTrail ran"
    recorded = record_file.read_text()
    assert f"annotate serviceaccount -n {NAMESPACE} {SERVICE_ACCOUNT} " in recorded
    assert len(recorded.splitlines()) == len(commands)


def test_findings_table_and_json_carry_the_strings_verbatim(hostile_db):
    """The terminal table prints no markup (rich markup is off) and JSON is JSON: the
    strings come back exactly as CloudTrail had them."""
    done = run_cli("findings", "--format", "json", "--offline", "--db", str(hostile_db))
    document = json.loads(done.stdout)
    messages = {finding["error_message"] for finding in document["findings"]}
    assert MESSAGE in messages
    assert ROLE_ARN in {finding["role_arn"] for finding in document["findings"]}
    table = run_cli("findings", "--offline", "--db", str(hostile_db))
    # The planted ESC ] (a window title in the service account's name) is shown, not sent.
    assert "Traceback" not in table.stderr and "\x1b" not in table.stdout and "\\x1b]0;title\\x07" in table.stdout


def test_report_artifacts_escape_every_cloudtrail_string(hostile_db, tmp_path):
    copy = tmp_path / "store.duckdb"
    copy.write_bytes(hostile_db.read_bytes())
    done = run_cli("report", "--since", iso(WINDOW.start), "--until", iso(WINDOW.end), "--to", str(tmp_path / "out"),
                   "--source", "files", "--path", str(hostile_db.parent), "--offline", "--db", str(copy))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "out" / "latest"
    html = (folder / "report.html").read_text()
    for raw in ("<script>alert", "<img src=x", "</td><script>"):
        assert raw not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert_safe_markdown((folder / "report.md").read_text())


# -- CSV ----------------------------------------------------------------------------------------------


def csv_cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def test_csv_exports_neutralise_formulas_from_cloudtrail(hostile_db):
    runs = [
        run_cli("sql", "SELECT event_id, user_agent, error_message, raw ->> '$.requestParameters.tableName' AS t "
                "FROM events ORDER BY event_id", "--format", "csv", "--db", str(hostile_db)),
        run_cli("queries", "run", "denied_calls", "--format", "csv", "--db", str(hostile_db)),
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr
        cells = csv_cells(done.stdout)
        assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    agents = csv_cells(runs[0].stdout)
    for formula in FORMULAS:  # kept, readable, inert (text mode reads "\r" as "\n")
        assert "'" + formula.replace("\r", "\n") in agents


# -- trailscan sql is read-only for the machine too ------------------------------------------------------


def test_sql_without_write_touches_nothing_but_the_store(hostile_db, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret_file = outside / "secret.txt"
    secret_file.write_text("local secret\n")
    statements = [
        f"COPY (SELECT * FROM events) TO '{outside / 'leak.csv'}'",
        f"COPY events TO '{outside / 'leak.parquet'}' (FORMAT parquet)",
        f"EXPORT DATABASE '{outside / 'export'}'",
        f"ATTACH '{outside / 'other.duckdb'}' AS other",
        f"SELECT * FROM read_text('{secret_file}')",
        f"SELECT * FROM read_csv('{secret_file}')",
        f"SELECT * FROM glob('{outside}/*')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "DELETE FROM event_rows",
        "DROP TABLE event_rows",
        "CREATE TABLE kept AS SELECT 1",
    ]
    before = hostile_db.read_bytes()
    # A few through the command line; all through the library calls it makes.
    for statement in statements[::4]:
        done = run_cli("sql", statement, "--db", str(hostile_db))
        assert done.returncode == 2, (statement, done.stdout)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, statement
    with Store.open(hostile_db, read_only=True) as store:
        store.confine()
        for statement in statements:
            with pytest.raises(QueryError):
                store.query(statement)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert hostile_db.read_bytes() == before
    # Reading the store still works, and --write opens it all.
    assert run_cli("sql", "SELECT count(*) AS n FROM events", "--db", str(hostile_db), "--format", "csv").stdout == "n\n9\n"
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(before)
    written = run_cli("sql", f"COPY (SELECT event_id FROM events) TO '{outside / 'export.csv'}'", "--write", "--db", str(copy))
    assert written.returncode == 0, written.stderr and (outside / "export.csv").exists()


# -- queries run binds its parameters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, param",
    [
        ("failure_context", "event_ids=[wi-0' OR '1'='1]"),
        ("failure_context", "event_ids=['wi-0'); DELETE FROM event_rows; --']"),
        ("minted_sessions", "access_keys=[x') OR 1=1 --]"),
        ("denied_calls", "since=2020-01-01' OR '1'='1"),
        ("errors_by_code", "until=now(); DROP TABLE event_rows"),
    ],
)
def test_query_parameters_are_values_never_sql(hostile_db, query, param):
    done = run_cli("queries", "run", query, "--param", param, "--format", "json", "--db", str(hostile_db))
    assert "Traceback" not in done.stderr
    if done.returncode == 0:
        assert json.loads(done.stdout) == [], "an injected OR would have returned every row"
    else:
        assert done.returncode == 2 and done.stderr.count("\n") == 1
    with Store.open(hostile_db, read_only=True) as store:
        assert store.count_events() == 9


def test_a_real_value_still_selects(hostile_db):
    done = run_cli("queries", "run", "failure_context", "--param", "event_ids=[wi-1]", "--format", "json",
                   "--db", str(hostile_db))
    assert done.returncode == 0, done.stderr
    assert [row["event_id"] for row in json.loads(done.stdout)] == ["wi-1"]


# -- S3 keys never write outside the download folder --------------------------------------------------------


DAY = f"AWSLogs/{ACCOUNT}/CloudTrail/eu-west-1/2026/11/28/"
ESCAPING_KEYS = {
    "dotdot": DAY + "..",
    "backslashes": DAY + "..\\..\\..\\escaped-1.json.gz",
    "encoded": DAY + "..%2F..%2Fescaped-2.json.gz",
    "subfolder": DAY + "../../../../../../../../tmp/escaped-3.json.gz",
    "absolute": DAY + "/tmp/escaped-4.json.gz",
}


def put_trail(moto, bucket: str, keys: dict[str, str]) -> dict[str, str]:
    """One log file at each key; returns key -> its event id."""
    s3 = moto.session("eu-west-1").client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    planted = {}
    rng = random.Random(bucket)
    app = RoleSession(ACCOUNT, "app", "botocore-session-1", access_key_id(rng))
    for n, (name, key) in enumerate(sorted(keys.items())):
        event_id = f"s3-{name}"
        body = {"Records": [api_call(rng, when=at(n), region="eu-west-1", account=ACCOUNT, identity=app.user_identity(at(0)),
                                     event_source="s3.amazonaws.com", event_name="ListBuckets", event_id=event_id)]}
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps(body).encode()))
        planted[key] = event_id
    return planted


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_s3_keys_with_dots_and_slashes_never_write_outside_the_download_folder(moto, tmp_path, monkeypatch):
    from trailscan.sources.s3 import ingest_s3

    downloads = tmp_path / "tmp" / "a" / "b"
    downloads.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    monkeypatch.chdir(tmp_path)
    planted = put_trail(moto, "escape-trail", {**ESCAPING_KEYS, "plain": DAY + "ok.json.gz"})
    before = files_under(tmp_path)
    with Store.open(":memory:") as store:
        result, _ = ingest_s3(store, moto.session("eu-west-1"), window=WINDOW, bucket="escape-trail")
        stored = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    assert files_under(tmp_path) == before, "nothing left behind, nothing written elsewhere"
    assert not list(Path("/tmp").glob("escaped-*.json.gz"))
    # Keys that are not direct children of a day folder are never listed; the others load.
    listed = {key for key in planted if "/" not in key[len(DAY):] and key.endswith((".json", ".json.gz"))}
    assert stored == {planted[key] for key in listed} and result.problems == []


@pytest.mark.parametrize("name", ["x" * 300 + ".json.gz", "nul\x00byte.json.gz"])
def test_s3_keys_whose_last_segment_is_no_file_name_still_load(moto, name, tmp_path):
    from trailscan.sources.s3 import ingest_s3

    bucket = f"odd-names-{len(name)}"
    planted = put_trail(moto, bucket, {"odd": DAY + name})
    with Store.open(":memory:") as store:
        result, _ = ingest_s3(store, moto.session("eu-west-1"), window=WINDOW, bucket=bucket)
        assert result.problems == []
        assert {row[0] for row in store.query("SELECT event_id FROM events")[1]} == set(planted.values())


# -- secrets never leave ---------------------------------------------------------------------------------

SECRETS = {
    "session": "IQoJb3JpZ2luX2VjEPLANTEDsessionTOKEN0001",
    "secret": "wJalrXUtnFEMIPLANTEDsecretACCESSkey0002",
    "web": "eyJhbGciOiJSUzI1NiJ9.PLANTEDwebIDENTITYtoken.0003",
    "pod": "eyJhbGciOiJSUzI1NiJ9.PLANTEDpodIDENTITYtoken.0004",
    "nested": "PLANTEDnestedSESSIONtoken0005",
    "upper": "PLANTEDupperCASEsecret0006",
    "object": "PLANTEDsecretINanOBJECT0007",
    "list": "PLANTEDtokenINaLIST0008",
    "number": 9_000_000_000_000_000_009,
    "stringified": "PLANTEDsecretINjsonTEXT0010",
    "lookup_file": "PLANTEDinLOOKUPeventsFILE0011",
    "lookup_api": "PLANTEDfromLOOKUPapi0012",
    "password": "PLANTEDpassword0013",
    "client": "PLANTEDclientSECRET0014",
    "broken": "PLANTEDinBROKENjson0015",
    "upper_only": "PLANTEDonlyUPPERCASEkey0016",
}


def secret_records() -> list[dict]:
    rng = random.Random(9)
    node = RoleSession(ACCOUNT, "node", "i-0abc", access_key_id(rng), ec2_role_delivery=True)
    app = RoleSession(ACCOUNT, "app", "botocore-session-1", access_key_id(rng))
    # A refused web identity: a finding, so it reaches findings and reports.
    refused = web_identity(rng, "sec-refused", at(1), session_name="s", user_agent="Boto3/1.34.69",
                           error_code="AccessDenied")
    # The session it minted when it worked: credentials in responseElements.
    minted = web_identity(rng, "sec-minted", at(2), user_agent="Boto3/1.34.69",
                          session=RoleSession(ACCOUNT, "payments-api", "s", "ASIAKEEPTHISKEYID001"))
    minted["responseElements"]["credentials"].update(sessionToken=SECRETS["session"], secretAccessKey=SECRETS["secret"])
    for record in (refused, minted):
        record["requestParameters"]["webIdentityToken"] = SECRETS["web"]  # which CloudTrail never shows
    # Pod Identity's agent call, and secrets in every other place and spelling.
    pod = pod_identity_agent_call(rng, when=at(3), region="eu-west-1", account=ACCOUNT, node=node, cluster="prod",
                                  error_code="AccessDenied", error_message="Unauthorized Exception!", event_id="sec-pod")
    pod["requestParameters"]["token"] = SECRETS["pod"]
    return [
        refused,
        minted,
        pod,
        api_call(rng, when=at(4), region="eu-west-1", account=ACCOUNT, identity=app.user_identity(at(0)),
                 event_source="secretsmanager.amazonaws.com", event_name="PutSecretValue", event_id="sec-odd",
                 request_parameters={
                     "a": {"b": [{"c": {"SessionToken": SECRETS["nested"]}}]},
                     "SECRETACCESSKEY": SECRETS["upper"],
                     "secretString": {"value": SECRETS["object"]},
                     "Token": [SECRETS["list"]],
                     "password": SECRETS["number"],
                     "document": json.dumps({"credentials": {"sessionToken": SECRETS["stringified"]}}),
                     "newPassword": SECRETS["password"],
                     "clientSecret": SECRETS["client"],
                 }),
        # Nothing else in it spelt in lower case: the cheap pre-filter must not skip it.
        api_call(rng, when=at(6), region="eu-west-1", account=ACCOUNT, identity=app.user_identity(at(0)),
                 event_source="sts.amazonaws.com", event_name="GetCallerIdentity", event_id="sec-upper",
                 request_parameters={"SESSIONTOKEN": SECRETS["upper_only"]}),
    ]


def minted_with_token(event_id: str, when: datetime, token: str) -> dict:
    """A granted web identity whose response holds ``token`` as its session token."""
    rng = random.Random(event_id)
    record = web_identity(rng, event_id, when, session=RoleSession(ACCOUNT, "payments-api", "s", access_key_id(rng)))
    record["responseElements"]["credentials"]["sessionToken"] = token
    return record


@pytest.fixture(scope="module")
def secret_outputs(tmp_path_factory, moto_server):
    """Every output trailscan makes from records carrying planted secrets: the store, SQL,
    queries, findings in each format, the report's four artifacts, and all stderr."""
    from tests.support.lookup_server import DEFAULT_ACCOUNT, LookupServer

    folder = tmp_path_factory.mktemp("secrets")
    trail = folder / "trail"
    trail.mkdir()
    (trail / f"{ACCOUNT}_CloudTrail_eu-west-1_20261128T0305Z_s.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": secret_records()}).encode())
    )
    inner = minted_with_token("sec-lookup-file", at(5), SECRETS["lookup_file"])
    (trail / "lookup-events.json").write_text(json.dumps({"Events": [{"EventId": "x", "CloudTrailEvent": json.dumps(inner)}]}))
    (trail / "broken.json").write_text('{"sessionToken": "' + SECRETS["broken"] + '", "eventVersion": "1.08", oops')
    db = folder / "store.duckdb"
    stderr = []
    outputs = {}

    def cli(name: str, *args: str, env: dict | None = None) -> None:
        done = run_cli(*args, env=env)
        assert "Traceback" not in done.stderr, (name, done.stderr)
        outputs[name] = done.stdout
        stderr.append(done.stderr)

    cli("ingest files", "ingest", "files", str(trail), "--db", str(db))
    # LookupEvents: the record is a JSON string in the API's answer.
    now = datetime.now(UTC).replace(microsecond=0)
    api_record = minted_with_token("sec-lookup-api", now - timedelta(hours=2), SECRETS["lookup_api"])
    with LookupServer(rate=50.0, burst=50.0) as server:
        server.add_events("eu-west-1", [api_record], account=DEFAULT_ACCOUNT)
        env = {**moto_server.environ("eu-west-1"), "AWS_ENDPOINT_URL_CLOUDTRAIL": server.endpoint_url}
        cli("ingest lookup", "ingest", "lookup", "--since", "3h", "--regions", "eu-west-1", "--db", str(db), env=env)

    for fmt in ("json", "csv"):
        cli(f"sql {fmt}", "sql", "SELECT * FROM events", "--format", fmt, "--db", str(db))
    cli("query denied_calls", "queries", "run", "denied_calls", "--format", "json", "--db", str(db))
    for fmt in ("json", "markdown"):
        cli(f"findings {fmt}", "findings", "--format", fmt, "--offline", "--db", str(db))
    # The other tables and queries, through the library the commands above go through.
    from trailscan.queries import load_queries

    with Store.open(db, read_only=True) as store:
        for table in ("coverage", "ingested_objects", "state"):
            outputs[f"table {table}"] = repr(store.query(f"SELECT * FROM {table}"))
        for query in load_queries():
            outputs[f"query {query.name} (library)"] = repr(store.query(query.typed_sql(), query.bind({})))

    # The nightly job: ingest the window again (nothing new), explain, publish.
    cli("report", "report", "--since", iso(NOW - timedelta(days=2)), "--to", str(folder / "report"),
        "--source", "files", "--path", str(trail), "--offline", "--db", str(db))
    with Store.open(db, read_only=True) as store:
        columns, rows = store.query("SELECT * FROM events")
        outputs["store"] = repr(rows)
        ids = {row[columns.index("event_id")] for row in rows}
    import pyarrow.parquet as pq

    latest = folder / "report" / "latest"
    document = json.loads((latest / "findings.json").read_text())
    for path in latest.iterdir():
        outputs[f"report {path.name}"] = (
            repr(pq.read_table(path).to_pylist()) if path.suffix == ".parquet" else path.read_text()
        )
    outputs["store file"] = b"".join(p.read_bytes() for p in folder.glob("store.duckdb*")).decode("latin-1")
    outputs["stderr"] = "".join(stderr)
    return outputs, ids, document


def test_planted_secrets_reach_no_output(secret_outputs):
    outputs, ids, document = secret_outputs
    # The planted records are there (a search of empty outputs would prove nothing) …
    assert {"sec-refused", "sec-minted", "sec-pod", "sec-odd", "sec-upper", "sec-lookup-file", "sec-lookup-api"} <= ids
    assert "ASIAKEEPTHISKEYID001" in outputs["sql json"]  # key ids link sessions to calls: kept
    assert document["findings"] and "sec-refused" in json.dumps(document)
    assert "REDACTED" in outputs["sql json"] and "REDACTED" in outputs["report events.parquet"]
    # … and no secret is in any of them.
    leaks = {
        (name, label)
        for name, text in outputs.items()
        for label, secret in SECRETS.items()
        if str(secret) in text
    }
    assert leaks == set()
    assert "broken.json" in outputs["stderr"]  # the broken file is named, its content is not shown

