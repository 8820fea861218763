"""Control sequences from CloudTrail never reach the operator's terminal, and a pasted fix
runs nothing from CloudTrail (issue: hostile input, points 1–3).

Records carry ESC sequences (window title, clear screen, an OSC 8 hyperlink that shows one
URL and opens another), a one-character C1 CSI and a bidirectional override in every field
trailscan prints: the web-identity subject, the user agent, the error code and message, the
event source and name, the region.  Every terminal and Markdown output is checked for raw
control characters; the fix scripts are pasted into bash whole, as a code block's copy
button would.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trailscan.generate import iso
from trailscan.report.markdown import md_fence, md_text
from trailscan.report.safe import json_text, visible
from trailscan.report.terminal import SafeTable

ACCOUNT = "111122223333"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
TITLE = "\x1b]0;owned\x07"
CLEAR = "\x1b[2J"
LINK = "\x1b]8;;https://evil.example/\x1b\\https://console.aws.amazon.com/\x1b]8;;\x1b\\"
CSI = "\u009b31m"
BIDI = "\u202egnp.exe"
HOSTILE = (TITLE, CLEAR, LINK, CSI, BIDI)
NAMESPACE = f"pay{CLEAR}"
NAME = f"api{TITLE}$(touch${{IFS}}pwned)"
#: Raw control characters a terminal would act on (not the newline of a line break).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def records() -> list[dict]:
    def record(event_id: str, minutes: int, **fields) -> dict:
        base = {
            "eventVersion": "1.09", "eventTime": iso(NOW - timedelta(hours=2) + timedelta(minutes=minutes)),
            "awsRegion": f"eu-west-1{CSI}", "sourceIPAddress": "192.0.2.10", "userAgent": f"Boto3/1.9.0 {LINK}",
            "eventID": event_id, "readOnly": True, "eventType": "AwsApiCall", "recipientAccountId": ACCOUNT,
        }
        return {**base, **fields}

    subject = f"system:serviceaccount:{NAMESPACE}:{NAME}"
    web = {"type": "WebIdentityUser", "principalId": f"{PROVIDER}:sts.amazonaws.com:{subject}", "userName": subject,
           "identityProvider": PROVIDER}
    node = {"type": "AssumedRole", "principalId": "AROAEXAMPLE:i-0123456789abcdef0",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/node-role/i-0123456789abcdef0", "accountId": ACCOUNT,
            "accessKeyId": "ASIAEXAMPLENODE00001",
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/node-role"},
                               "ec2RoleDelivery": "2.0"}}
    found = [
        record(f"wi-{i}", i, eventSource="sts.amazonaws.com", eventName="AssumeRoleWithWebIdentity", userIdentity=web,
               errorCode="AccessDenied", errorMessage=f"denied {TITLE} {BIDI}",
               requestParameters={"roleArn": f"arn:aws:iam::{ACCOUNT}:role/payments-api"}, responseElements=None)
        for i in range(2)
    ]
    found += [
        record(f"dn-{i}", 10 + i, eventSource=f"dynamodb.amazonaws.com{CLEAR}", eventName=f"PutItem{TITLE}",
               userIdentity=node, errorCode=f"AccessDenied{CSI}", errorMessage=f"not authorized {LINK}")
        for i in range(2)
    ]
    return found


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("terminal")
    trail = folder / "trail"
    trail.mkdir()
    (trail / f"{ACCOUNT}_CloudTrail_eu-west-1_20261128T0405Z_x.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": records()}).encode()))
    db = folder / "store.duckdb"
    done = run_cli("ingest", "files", str(trail), "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db, trail


def assert_no_raw_controls(text: str, where: str) -> None:
    found = RAW.findall(text)
    assert not found, f"{where} carries raw control characters {found!r}"


def test_the_sanitiser_shows_every_control_character():
    for text in HOSTILE:
        shown = visible(text)
        assert_no_raw_controls(shown, "visible()")
        assert "\\x1b" in shown or "\\x9b" in shown or "\\u202e" in shown
    assert visible("a\nb") == "a\\x0ab" and visible("a\nb", newlines=True) == "a\nb"
    assert visible("plain ARN arn:aws:iam::1:role/x") == "plain ARN arn:aws:iam::1:role/x"
    assert json.loads(json_text(json.dumps({"v": CSI + BIDI}, ensure_ascii=False))) == {"v": CSI + BIDI}
    assert_no_raw_controls(json_text(json.dumps({"v": CSI + BIDI}, ensure_ascii=False)), "json_text()")
    for text in HOSTILE:
        assert_no_raw_controls(md_text(text), "md_text()")
        assert_no_raw_controls(md_fence(text), "md_fence()")


def test_a_rich_table_of_data_shows_escapes():
    import io

    from rich.console import Console

    out = io.StringIO()
    table = SafeTable()
    table.add_column("x")
    table.add_row(TITLE + CLEAR + CSI)
    Console(file=out, width=120).print(table)
    assert_no_raw_controls(out.getvalue(), "table")
    assert "\\x1b]0;owned\\x07" in out.getvalue()


@pytest.mark.parametrize("fmt", ["table", "markdown", "json"])
def test_findings_outputs_carry_no_control_character(hostile, fmt):
    db, _ = hostile
    done = run_cli("findings", "--format", fmt, "--offline", "--db", str(db))
    assert done.returncode in (0, 3), done.stderr
    assert_no_raw_controls(done.stdout, f"findings --format {fmt}")
    assert_no_raw_controls(done.stderr, "stderr")
    if fmt == "json":
        document = json.loads(done.stdout)
        assert any(TITLE in (f["error_message"] or "") for f in document["findings"])  # data kept, escaped
    else:
        assert "\\x1b" in done.stdout


def test_since_table_carries_no_control_character(hostile, tmp_path):
    _, trail = hostile
    done = run_cli("since", "24h", "--until", iso(NOW), "--source", "files", "--path", str(trail), "--offline",
                   "--db", str(tmp_path / "s.duckdb"))
    assert_no_raw_controls(done.stdout + done.stderr, "since")


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_sql_and_queries_run_carry_no_control_character(hostile, fmt):
    db, _ = hostile
    done = run_cli("sql", "SELECT user_name, user_agent, error_message, event_name FROM events", "--format", fmt,
                   "--db", str(db))
    assert done.returncode == 0, done.stderr
    shown = done.stdout.replace("\r", "").replace("\t", "") if fmt == "csv" else done.stdout  # CSV data, quoted
    assert_no_raw_controls(shown, f"sql --format {fmt}")
    done = run_cli("queries", "run", "failed_web_identity", "--format", fmt, "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert_no_raw_controls(done.stdout, f"queries run --format {fmt}")


def test_stderr_lines_quoting_a_file_name_carry_no_control_character(tmp_path):
    bad = tmp_path / f"trail{CLEAR}{TITLE}.json"
    bad.write_text("{not json")
    done = run_cli("ingest", "files", str(bad), "--db", str(tmp_path / "x.duckdb"))
    assert done.returncode == 2
    assert_no_raw_controls(done.stderr, "ingest stderr")
    assert "\\x1b[2J" in done.stderr


def test_findings_markdown_escapes_the_event_fields(hostile):
    """eventSource, eventName, errorCode and awsRegion reach Markdown through the same escaping
    as every other CloudTrail string."""
    db, _ = hostile
    done = run_cli("findings", "--format", "markdown", "--offline", "--db", str(db))
    for raw in ("PutItem" + TITLE, "AccessDenied" + CSI, "dynamodb.amazonaws.com" + CLEAR):
        assert raw not in done.stdout


def fix_scripts(markdown: str) -> list[str]:
    """The code blocks of the report's Markdown fixes, as a copy button copies them."""
    return [match.group(2) for match in re.finditer(r"^(`{3,})[^\n]*\n(.*?)\n\1$", markdown, flags=re.S | re.M)]


def test_a_pasted_fix_block_runs_nothing_from_cloudtrail(hostile, tmp_path):
    """Each fix's code block, pasted whole into bash: the tools it calls are recorders, so
    only a command substitution from CloudTrail could create ``pwned``."""
    db, _ = hostile
    out = tmp_path / "report"
    done = run_cli("findings", "--format", "markdown", "--offline", "--db", str(db))
    scripts = [s for s in fix_scripts(done.stdout) if "kubectl" in s or "aws " in s]
    assert scripts, done.stdout
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("kubectl", "aws", "eksctl", "jq", "curl", "openssl"):
        (tools / tool).write_text('#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "$RECORD"\n')
        (tools / tool).chmod(0o755)
    for script in scripts:
        ran = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False,
                             env={"PATH": f"{tools}:/usr/bin:/bin", "RECORD": str(tmp_path / "record.txt")})
        assert ran.returncode == 0, (script, ran.stderr)
    assert not (tmp_path / "pwned").exists(), "a command substitution from CloudTrail ran"
    assert not out.exists()


def test_fix_prose_stays_outside_the_block():
    """Every line of a fix's script is a command, a comment, or part of a here-document."""
    from trailscan.explain import fixes
    from trailscan.identity import ServiceAccountRef

    ref = ServiceAccountRef("pay$(touch x)", "api`id`")
    for text in (fixes.sa_not_found_fix(ref, "arn:aws:iam::1:role/r"), fixes.token_expired_fix(ref),
                 fixes.role_mismatch_fix(ref, requested="arn:aws:iam::1:role/a$(id)", annotated="arn:aws:iam::1:role/b")):
        summary, _, script = text.partition("\n\n")
        assert "\n" not in summary
        heredoc = False
        for line in script.splitlines():
            if heredoc:
                heredoc = line != "EOF"
                continue
            heredoc = line.endswith("<<'EOF'")
            assert line.startswith(("#", "kubectl ", "aws ", "eksctl ", "cat ", "jq ", "curl ", "THUMBPRINT=",
                                    "VERSION=", "BOUNDARY_ARN=", "ROLE_NAME=")), line
            if "$(touch x)" in line and not line.startswith("#"):
                assert "'pay$(touch x)'" in line  # quoted for the shell
