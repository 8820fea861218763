"""The findings table at 80, 100 and 120 columns (issue 22, point 1): one block per finding,
no cause code, action, ARN or time split across lines, the worst and most recent first,
colour per cause family only on a colour terminal."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from trailscan.findings import CoverageRow, Finding, FindingsReport, Workload
from trailscan.report.terminal import render_findings

NOW = datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)
START = NOW - timedelta(hours=24)
ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/"

#: (kind, cause, namespace, service account, action, error code, count, minutes before NOW last seen)
ROWS = [
    ("irsa", "TRUST_SUBJECT_MISMATCH", "payments", "api", "sts:AssumeRoleWithWebIdentity", "AccessDenied", 42, 3),
    ("irsa", "TRUST_AUDIENCE_MISMATCH", "payments", "worker", "sts:AssumeRoleWithWebIdentity", "AccessDenied", 5, 400),
    ("denied_call", "MISSING_PERMISSION", "orders", "writer", "dynamodb:PutItem", "AccessDeniedException", 318, 1),
    ("denied_call", "NODE_ROLE_FALLBACK", None, None, "s3:GetObject", "AccessDenied", 7, 90),
    ("irsa", "SA_NOT_ANNOTATED", "search", "indexer", "sts:AssumeRoleWithWebIdentity", "AccessDenied", 12, 10),
    ("pod_identity", "POD_IDENTITY_TRUST", "reports", "reader", "sts:AssumeRole", "AccessDenied", 3, 700),
    ("irsa", "UNEXPLAINED", "ml", "trainer", "sts:AssumeRoleWithWebIdentity", "InvalidIdentityToken", 1, 1200),
    ("denied_call", "EXPLICIT_DENY", "billing", "exporter", "ce:GetCostAndUsage", "AccessDenied", 64, 5),
    ("denied_call", "BOUNDARY_DENY", "ingest", "loader", "kinesis:PutRecords", "AccessDeniedException", 9, 30),
    ("irsa", "ROLE_NOT_FOUND", "legacy", "cron", "sts:AssumeRoleWithWebIdentity", "AccessDenied", 288, 2),
    ("irsa", "TOKEN_EXPIRED", "batch", "nightly", "sts:AssumeRoleWithWebIdentity", "ExpiredTokenException", 2, 240),
    ("denied_call", "RESOURCE_POLICY_DENY", "media", "thumbnailer", "s3:PutObject", "AccessDenied", 77, 14),
]


def twelve_findings() -> FindingsReport:
    findings = []
    for kind, code, namespace, account, action, error, count, minutes in ROWS:
        name = f"{namespace or 'shop-prod'}-{account or 'nodes'}"
        workload = (Workload("shop-prod", namespace, account, "exact") if namespace
                    else Workload("shop-prod", None, None, "node"))
        last = NOW - timedelta(minutes=minutes)
        service, event = action.split(":")
        findings.append(Finding(
            kind=kind, cause=code, workload=workload,
            principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/botocore-session-1764309600",
            role_arn=ROLE + name, event_source=f"{service}.amazonaws.com", event_name=event, action=action,
            error_code=error, error_message="", count=count, first_seen=last - timedelta(hours=3), last_seen=last,
            regions=("eu-west-1",), sample_event_ids=("e",), explanation="x",
            fix=f"Allow {action} for role {name} in the policy that governs it, then retry the pod's request.",
        ))
    coverage = [CoverageRow("s3", ACCOUNT, "eu-west-1", "complete", 182_344),
                CoverageRow("s3", ACCOUNT, "us-east-1", "partial", 9_120, "3 objects could not be read")]
    return FindingsReport(START, NOW, coverage, findings, window_events=191_464)


def rendered(width: int, *, colour: bool = False) -> str:
    out = io.StringIO()
    render_findings(twelve_findings(), "table", out, generated_at=NOW, width=width, colour=colour)
    return out.getvalue()


def _tokens(report: FindingsReport) -> set[str]:
    tokens = set()
    for f in report.findings:
        tokens |= {f.cause, f.action, f.role_arn, f.error_code, f.last_seen.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return tokens


@pytest.mark.parametrize("width", [80, 100, 120])
def test_no_token_is_split_and_no_line_is_wider_than_the_terminal(width):
    text = rendered(width)
    lines = text.splitlines()
    for token in _tokens(twelve_findings()):
        assert any(token in line for line in lines), f"{token} split or missing at {width} columns"
    assert max(len(line) for line in lines) <= width, "\n".join(line for line in lines if len(line) > width)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_twelve_findings_stay_compact(width):
    # Before issue 22, these 12 findings took 384 lines at 80 columns and 261 at 100 (the
    # coverage table's 8 lines included).
    assert len(rendered(width).splitlines()) <= {80: 100, 100: 90, 120: 80}[width]


def test_the_header_gives_the_window_and_what_was_read():
    head = "\n".join(rendered(100).splitlines()[:3])
    assert "2026-11-27T06:00:00Z" in head and "2026-11-28T06:00:00Z" in head
    assert "191,464 events" in head and "partial" in head


def test_still_failing_and_worst_most_recent_first():
    text = rendered(100)
    blocks = [line for line in text.splitlines() if re.match(r"^(FAILING|stopped)", line)]
    assert len(blocks) == 12
    failing = [b for b in blocks if b.startswith("FAILING")]
    # Last seen within 15 minutes of the window's end: still failing.
    assert len(failing) == 6 and blocks[:6] == failing
    assert "MISSING_PERMISSION" in blocks[0] and "1 min ago" in blocks[0]
    assert "stopped" in blocks[6] and "30 min ago" in blocks[6]
    assert text.count(" · by ") == 12 and "by role payments-api" in text


def test_colour_per_family_only_when_asked():
    plain = rendered(100)
    assert "\x1b[" not in plain
    coloured = rendered(100, colour=True)
    styles = {m for m in re.findall(r"\x1b\[([0-9;]+)m(?:TRUST_SUBJECT_MISMATCH|MISSING_PERMISSION|NODE_ROLE_FALLBACK)",
                                    coloured)}
    assert len(styles) == 3, styles


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [None, "1"])
def test_a_colour_terminal_gets_colour_unless_no_color(monkeypatch, no_color):
    monkeypatch.setenv("TERM", "xterm-256color")
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    out = _Terminal()
    render_findings(twelve_findings(), "table", out, generated_at=NOW, width=100)
    assert ("\x1b[" in out.getvalue()) is (no_color is None)
    piped = io.StringIO()
    render_findings(twelve_findings(), "table", piped, generated_at=NOW, width=100)
    assert "\x1b[" not in piped.getvalue()


def test_a_finding_stopped_by_a_change_minutes_ago_is_not_still_failing_anywhere():
    """Last refused 3 min before the window's end, then its trust policy fixed with no failure
    after: every view says stopped, and names who fixed it."""
    from dataclasses import replace

    from trailscan.findings import Change, findings_document
    from trailscan.report.html import render_html

    report = twelve_findings()
    first = report.findings[0]  # TRUST_SUBJECT_MISMATCH, last seen 3 min before NOW
    fixed = Change(NOW - timedelta(minutes=2), "UpdateAssumeRolePolicy", "iam.amazonaws.com",
                   f"arn:aws:iam::{ACCOUNT}:user/bob", "payments-api", "e-fix")
    report.findings[0] = replace(first, status="stopped", changes=(fixed,), stopped_after=fixed)
    out = io.StringIO()
    render_findings(report, "table", out, generated_at=NOW, width=100)
    text = out.getvalue()
    blocks = [line for line in text.splitlines() if re.match(r"^(FAILING|stopped)", line)]
    block = next(b for b in blocks if "TRUST_SUBJECT_MISMATCH" in b)
    assert block.startswith("stopped") and blocks.index(block) >= 5  # after the 5 failing ones
    assert "5 still failing" in text
    assert (f"stopped after UpdateAssumeRolePolicy on payments-api by arn:aws:iam::{ACCOUNT}:user/bob at "
            "2026-11-28T05:58:00Z") in " ".join(text.split())  # wrapped at spaces
    markdown = io.StringIO()
    render_findings(report, "markdown", markdown, generated_at=NOW)
    lines = markdown.getvalue().replace("\\", "").splitlines()
    assert next(line for line in lines if "**TRUST_SUBJECT_MISMATCH**" in line).startswith("Stopped (last seen 3 min ago)")
    html = render_html(findings_document(report, NOW))
    article = html.split('<h5>payments/api</h5>', 1)[1].split("</header>", 1)[0]
    assert "still failing" not in article and "a change followed its last failure" in article
