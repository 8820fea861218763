"""The report stage: HTML and Markdown rendered from a SPEC §7 findings document, and the
dated report folder published to a local folder or to S3 (moto in server mode).

The golden files tests/golden/report.md and tests/golden/report.html are rendered from
:func:`findings_document` with a frozen clock. After an intended change, regenerate them
and review the diff:

    TRAILSCAN_REGENERATE_GOLDEN=1 pytest tests/test_report.py

The Chromium test opens report.html in Debian's `chromium` (installed by
.ci/install-chromium); it skips when chromium is missing, except under CI (`CI` set),
where it fails.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trailscan import generate, report
from trailscan.errors import InputError, UsageError
from trailscan.model import Window
from trailscan.report import (
    ACCENT,
    ARTIFACTS,
    CONTENT_TYPES,
    check_document,
    failure_timeline,
    md_fence,
    md_text,
    publish_report,
    render_html,
    render_markdown,
    split_fix,
    window_events,
    workload_label,
    write_report,
)
from trailscan.report.chart import MAX_SERIES
from trailscan.report.view import FAMILY_COLOURS
from trailscan.report.chart import chart as chart_of
from trailscan.report.publish import KIND_SERIES
from trailscan.report.publish import _parse_destination as parse_destination
from trailscan.report.publish import _S3Target as S3Target
from trailscan.sources.files import ingest_files

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = bool(os.environ.get("TRAILSCAN_REGENERATE_GOLDEN"))
NOW = datetime(2026, 11, 28, 6, 0, 0, tzinfo=timezone.utc)
START = NOW - timedelta(hours=24)
ACCOUNT = "111122223333"
ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/5C2B8A4E1F9D3B7A6E0C"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=\"document.title='pwned'\">"
HOSTILE_AGENT = f"Boto3/1.9.0 {SCRIPT}{IMG}"
PLANTED_TOKEN = "PLANTEDsessionTOKENmustNEVERleave0123456789"
PLANTED_SECRET = "PLANTEDsecretACCESSkeyMUSTnotLEAVE9876543210"

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": PROVIDER},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{ISSUER}:sub": "system:serviceaccount:payments:api",
                    f"{ISSUER}:aud": "sts.amazonaws.com",
                }
            },
        }
    ],
}
MISSING_STATEMENT = {
    "Effect": "Allow",
    "Action": "dynamodb:PutItem",
    "Resource": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders",
}


def _finding(
    kind,
    cause,
    cluster,
    namespace,
    service_account,
    *,
    resolution="exact",
    count=1,
    first="2026-11-27T08:00:00Z",
    last="2026-11-28T05:00:00Z",
    **fields,
):
    finding = {
        "kind": kind,
        "cause": cause,
        "workload": {
            "cluster": cluster,
            "namespace": namespace,
            "service_account": service_account,
            "resolution": resolution,
            "candidates": fields.pop("candidates", []),
        },
        "principal_arn": fields.pop("principal_arn", None),
        "role_arn": fields.pop("role_arn", None),
        "event_source": "sts.amazonaws.com",
        "event_name": "AssumeRoleWithWebIdentity",
        "error_code": "AccessDenied",
        "error_message": "An unknown error occurred",
        "count": count,
        "first_seen": first,
        "last_seen": last,
        "regions": ["eu-west-1"],
        "sample_event_ids": [],
        "explanation": "",
        "fix": "",
    }
    finding.update(fields)
    return finding


def findings_document() -> dict:
    """A SPEC §7 document by hand: seven causes, three clusters, several namespaces, every
    workload resolution, a fix holding a JSON policy, and attacker-controlled strings."""
    role = f"arn:aws:iam::{ACCOUNT}:role/"
    return {
        "schema": "trailscan.findings/v1",
        "generated_at": "2026-11-28T06:00:00Z",
        "window": {"start": "2026-11-27T06:00:00Z", "end": "2026-11-28T06:00:00Z"},
        "coverage": [
            {
                "source": "s3",
                "account": ACCOUNT,
                "region": "eu-west-1",
                "status": "complete",
                "events": 182_344,
                "detail": "",
            },
            {
                "source": "s3",
                "account": ACCOUNT,
                "region": "us-east-1",
                "status": "partial",
                "events": 9_120,
                "detail": "3 objects could not be read",
            },
            {
                "source": "lookup",
                "account": "444455556666",
                "region": "eu-central-1",
                "status": "failed",
                "events": 0,
                "detail": "AccessDenied: cloudtrail:LookupEvents",
            },
        ],
        "findings": [
            _finding(
                "irsa",
                "TRUST_SUBJECT_MISMATCH",
                "prod",
                "payments",
                "api",
                count=42,
                principal_arn="system:serviceaccount:payments:api",
                role_arn=role + "payments-api",
                first="2026-11-27T07:02:11Z",
                last="2026-11-28T05:48:09Z",
                sample_event_ids=[
                    "3f1c2a9e-0000-4000-8000-000000000001",
                    "3f1c2a9e-0000-4000-8000-000000000002",
                ],
                explanation="The role's trust policy admits system:serviceaccount:payment:api (note: payment, "
                "not payments); the token's subject is system:serviceaccount:payments:api.",
                fix="Set the sub condition of role payments-api to the service account's subject:\n"
                + json.dumps(TRUST_POLICY)
                + "\nThen wait a few seconds: IAM is eventually consistent.",
            ),
            _finding(
                "irsa",
                "TRUST_AUDIENCE_MISMATCH",
                "prod",
                "payments",
                "worker",
                count=5,
                principal_arn="system:serviceaccount:payments:worker",
                role_arn=role + "payments-worker",
                explanation="The aud condition holds system:serviceaccount:payments:worker, a subject.",
                fix=f'In the trust policy, set "{ISSUER}:aud" to "sts.amazonaws.com".',
            ),
            _finding(
                "denied_call",
                "MISSING_PERMISSION",
                "prod",
                "orders",
                "writer",
                count=318,
                principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-writer/botocore-session-1700000000",
                role_arn=role + "orders-writer",
                event_source="dynamodb.amazonaws.com",
                event_name="PutItem",
                error_code="AccessDeniedException",
                error_message=f"User: arn:aws:sts::{ACCOUNT}:assumed-role/orders-writer/botocore-session-1700000000 "
                "is not authorized to perform: dynamodb:PutItem on resource: "
                f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/orders because no identity-based policy allows "
                "the dynamodb:PutItem action",
                regions=["eu-west-1", "us-east-1"],
                explanation="No policy attached to orders-writer allows dynamodb:PutItem on table orders.",
                fix="Add this statement to a policy of role orders-writer:\n```json\n"
                + json.dumps(MISSING_STATEMENT, indent=2)
                + "\n```",
            ),
            _finding(
                "denied_call",
                "NODE_ROLE_FALLBACK",
                "prod",
                None,
                None,
                resolution="node",
                count=7,
                principal_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/prod-nodes/i-0a1b2c3d4e5f60718",
                role_arn=role + "prod-nodes",
                event_source="s3.amazonaws.com",
                event_name="GetObject",
                error_message=f"Access Denied {SCRIPT} | a|b `tick` **bold** [x](http://evil.example)\nsecond line",
                explanation=f"The caller's userAgent is {HOSTILE_AGENT}: Boto3 1.9.0 predates web-identity "
                "support (Boto3 1.9.220), so the pod fell back to the node's instance role.",
                fix="Upgrade the SDK to Boto3 >= 1.9.220 and restart the pod.\n```\nuse ```` backticks here\n```",
            ),
            _finding(
                "irsa",
                "SA_NOT_ANNOTATED",
                "staging",
                "search",
                "indexer",
                count=12,
                principal_arn="system:serviceaccount:search:indexer",
                role_arn=role + "search-indexer",
                explanation="Service account search/indexer has no eks.amazonaws.com/role-arn annotation.",
                fix="kubectl -n search annotate serviceaccount indexer "
                f"eks.amazonaws.com/role-arn={role}search-indexer",
            ),
            _finding(
                "pod_identity",
                "POD_IDENTITY_TRUST",
                "staging",
                None,
                None,
                resolution="by_role",
                count=3,
                role_arn=role + "reports-reader",
                event_source="sts.amazonaws.com",
                event_name="AssumeRole",
                candidates=[
                    {"cluster": "staging", "namespace": "reports", "service_account": "reader"},
                    {"cluster": "staging", "namespace": "reports", "service_account": "exporter"},
                ],
                explanation="The role does not trust pods.eks.amazonaws.com for sts:TagSession.",
                fix="Allow pods.eks.amazonaws.com both sts:AssumeRole and sts:TagSession in the trust policy.",
            ),
            _finding(
                "irsa",
                "UNEXPLAINED",
                "lab",
                "ml",
                f"trainer{SCRIPT}",
                count=1,
                role_arn=role + "ml-trainer",
                error_code="InvalidIdentityToken",
                error_message=IMG,
                explanation="Checked: the OIDC provider exists, the trust policy matches. No cause established.",
                fix="",
            ),
        ],
    }


def frozen_timeline() -> list[tuple[str, datetime]]:
    """Failure times for the chart: a steady failure, a burst, one late event."""
    doc = findings_document()
    labels = [workload_label(f) for f in doc["findings"]]
    points = [(labels[0], START + timedelta(minutes=62 + 34 * i)) for i in range(42)]
    points += [(labels[2], START + timedelta(hours=14, minutes=i % 55, seconds=i)) for i in range(318)]
    points += [(labels[3], START + timedelta(hours=4, minutes=9 * i)) for i in range(7)]
    points += [(labels[4], START + timedelta(hours=20, minutes=5 * i)) for i in range(12)]
    points += [(labels[6], NOW - timedelta(minutes=3))]
    return points


@pytest.fixture
def golden_version(monkeypatch):
    """Goldens must not change with each release."""
    monkeypatch.setattr("trailscan.report.view.__version__", "GOLDEN")


# -- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name, render", [("report.md", render_markdown), ("report.html", render_html)])
def test_golden(name, render, golden_version):
    text = render(findings_document(), frozen_timeline())
    path = GOLDEN / name
    if REGENERATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run TRAILSCAN_REGENERATE_GOLDEN=1 pytest tests/test_report.py"
    assert text == path.read_text(encoding="utf-8"), (
        f"{name} differs from its golden file; if intended: TRAILSCAN_REGENERATE_GOLDEN=1 pytest tests/test_report.py"
    )


# -- escaping -------------------------------------------------------------------------------------


def test_html_escapes_every_cloudtrail_string():
    html = render_html(findings_document(), frozen_timeline())
    for hostile in (SCRIPT, IMG, "<img", "<script"):
        assert hostile not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;document.title=&#39;pwned&#39;&#34;&gt;" in html
    # The hostile service account name is escaped in the chart's tooltips and legend too.
    assert html.count("trainer&lt;script&gt;") >= 3


def test_html_is_self_contained():
    html = render_html(findings_document(), frozen_timeline())
    assert "<script" not in html.lower()
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)  # data is escaped: every tag is the template's
    assert not [t for t in tags if re.search(r"\s(src|srcset|action|formaction)=", t)]
    # In-page links, and links out only to AWS's documentation and IAM console (issue 22.2).
    outside = [t for t in tags if re.search(r"\shref=\"(?!#|https://docs\.aws\.amazon\.com/|https://console\.aws\.amazon\.com/iam/)", t)]
    assert not outside, outside
    assert not [t for t in tags if re.search(r"\son[a-z]+=", t)]
    assert "@import" not in html and "url(" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "<svg" in html and "<rect" in html


def _table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def _cells(row: str) -> int:
    return len(re.findall(r"(?<!\\)\|", row)) - 1


def test_markdown_escapes_every_cloudtrail_string():
    markdown = render_markdown(findings_document(), frozen_timeline())
    assert "<" not in re.sub(r'<a id="finding-\d+"></a>', "", markdown), "no HTML but the template's anchors"
    assert "&lt;script>alert(1)&lt;/script>" in markdown
    # A pipe cannot split a table cell, a newline cannot end a list item.
    for table in re.split(r"\n\n", markdown):
        rows = _table_rows(table)
        if rows:
            assert len({_cells(row) for row in rows}) == 1, table
    assert r"a\|b \`tick\` \*\*bold\*\* \[x\](http://evil.example) second line" in markdown
    assert "trainer&lt;script>" in markdown
    # Every line of a finding's list is one of ours.
    for line in markdown.splitlines():
        if line.startswith("- "):
            assert line.startswith("- **"), line


def test_markdown_fences_cannot_be_broken_by_content():
    markdown = render_markdown(findings_document(), frozen_timeline())
    assert "`````\nuse ```` backticks here\n`````" in markdown
    # The JSON policy of a fix sits in a fence and parses back.
    blocks = re.findall(r"^(`{3,})json\n(.*?)\n\1$", markdown, flags=re.S | re.M)
    policies = [json.loads(body) for _, body in blocks if body.lstrip().startswith("{")]
    assert TRUST_POLICY in policies and MISSING_STATEMENT in policies


@pytest.mark.parametrize(
    "value, expected",
    [
        ("a|b", r"a\|b"),
        ("line one\nline two\r\n\tthree", "line one line two three"),
        ("`code`", r"\`code\`"),
        ("<b>&amp;</b> a > b", "&lt;b>&amp;amp;&lt;/b> a > b"),
        ("*x* _y_ [z] ~w~ $m$ #h", r"\*x\* \_y\_ \[z\] \~w\~ \$m\$ \#h"),
        ("nul\x00 and esc\x1b[31m", r"nul\\x00 and esc\\x1b\[31m"),  # shown as escapes, not sent or dropped
        (None, ""),
        (42, "42"),
    ],
)
def test_md_text(value, expected):
    assert md_text(value) == expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("- item", r"\- item"),
        ("> quote", r"\> quote"),
        ("12. step", r"12\. step"),
        ("=== x", r"\=== x"),
        ("# title", r"\# title"),
        ("plain - text", "plain - text"),
    ],
)
def test_md_paragraph_cannot_start_a_block(value, expected):
    assert report.md_paragraph(value) == expected


def test_md_fence_is_longer_than_any_backtick_run():
    assert md_fence("x", "json") == "```json\nx\n```"
    assert md_fence("a ``````` b") == "````````\na ``````` b\n````````"


@pytest.mark.parametrize(
    "fix, expected",
    [
        ("", []),
        ("Restart the pod.", [("text", "Restart the pod.")]),
        ("See [1] and {not json}.", [("text", "See [1] and {not json}.")]),
        (
            'Add {"Effect": "Allow"} to it.',
            [("text", "Add"), ("json", '{\n  "Effect": "Allow"\n}'), ("text", "to it.")],
        ),
        (
            'Statements: [{"Effect": "Deny"}]',
            [("text", "Statements:"), ("json", '[\n  {\n    "Effect": "Deny"\n  }\n]')],
        ),
        (
            "Run:\n```sh\nkubectl rollout restart\n```\nDone.",
            [("text", "Run:"), ("code", "kubectl rollout restart"), ("text", "Done.")],
        ),
        ('```json\n{"a": [1]}\n```', [("json", '{\n  "a": [\n    1\n  ]\n}')]),
    ],
)
def test_split_fix(fix, expected):
    assert split_fix(fix) == expected


# -- what the report says -------------------------------------------------------------------------


def test_report_shows_summary_findings_and_coverage():
    doc = findings_document()
    html = render_html(doc, frozen_timeline())
    markdown = render_markdown(doc, frozen_timeline())
    for text in (html, markdown):
        for finding in doc["findings"]:
            assert finding["cause"].replace("_", r"\_" if text is markdown else "_") in text
        assert "Coverage is incomplete: 2 of 3 reads did not complete" in text
    assert "388" in html  # refused calls in all (42+5+318+7+12+3+1)
    assert "counted per hour (UTC)" in html
    assert "by role only" in html and "staging: reports/reader, staging: reports/exporter" in html
    assert "node instance role" in html
    assert 'class="status-failed"' in html and 'class="status-partial"' in html


def test_no_findings_is_only_said_for_what_was_read():
    doc = findings_document()
    doc["findings"] = []
    html = render_html(doc, [])
    assert "No refused calls in what could be read" in html
    assert "Every source of the window was read completely" not in html

    doc["coverage"] = [c for c in doc["coverage"] if c["status"] == "complete"]
    html = render_html(doc, [])
    assert "Every source of the window was read completely" in html
    assert "No refused calls in the window." in html

    doc["coverage"] = []
    for text in (render_html(doc), render_markdown(doc)):
        assert "No coverage recorded" in text
        assert "in what could be read" in text
    assert "No event times were given" in render_html(doc)


def test_a_document_without_window_still_renders():
    doc = findings_document()
    doc["window"] = {"start": None, "end": None}
    html = render_html(doc, frozen_timeline())
    assert "no window given" not in html and "2026-11-27 07:02:00 UTC to" in html  # the span of what is known
    doc["findings"] = []
    assert "no window given" in render_markdown(doc)


def test_workload_labels():
    doc = findings_document()
    assert [workload_label(f) for f in doc["findings"]][:6] == [
        "prod/payments/api",
        "prod/payments/worker",
        "prod/orders/writer",
        "prod: node instance role",
        "staging/search/indexer",
        "staging: role reports-reader",
    ]
    assert workload_label({"workload": {"namespace": "a", "service_account": "b"}}) == "a/b"
    assert workload_label({"principal_arn": "arn:aws:sts::1:assumed-role/r/s", "workload": {}}) == "role r"
    assert workload_label({}) == "unknown workload"
    # An IAM user is never "role christophe" (issue 17 point 5), and not_eks says so.
    christophe = {"principal_arn": "arn:aws:iam::457448411975:user/christophe", "role_arn": None}
    assert workload_label({**christophe, "workload": {"resolution": "unknown"}}) == "user christophe"
    assert workload_label({**christophe, "workload": {"resolution": "not_eks"}}) == "user christophe (not an EKS workload)"
    assert workload_label({"role_arn": f"arn:aws:iam::{ACCOUNT}:role/team/reports-reader", "workload": {}}) == (
        "role reports-reader")


def test_notes_are_shown_escaped_and_only_when_there_are_some(golden_version):
    notes = ["left out 111 refused calls by 10 principals that are not EKS workloads (user christophe, …); "
             "--all-principals (all_principals=True) includes them", f"inventory (iam) incomplete: {SCRIPT}"]
    html = render_html(findings_document(), frozen_timeline(), notes=notes)
    markdown = render_markdown(findings_document(), frozen_timeline(), notes=notes)
    assert "<li>left out 111 refused calls by 10 principals that are not EKS workloads" in html
    assert "> **Note:** left out 111 refused calls by 10 principals that are not EKS workloads" in markdown
    assert SCRIPT not in html and "&lt;script&gt;" in html and "<script" not in markdown
    assert "Notes" not in render_html(findings_document(), frozen_timeline())
    assert "**Note:**" not in render_markdown(findings_document(), frozen_timeline())


def _terminal_table(*workloads) -> str:
    from trailscan.findings import Finding, FindingsReport, Workload
    from trailscan.report.terminal import render_findings

    findings = [
        Finding(kind="denied_call", cause="MISSING_PERMISSION", workload=Workload(**workload), principal_arn=principal,
                role_arn=None, event_source="ce.amazonaws.com", event_name="GetCostAndUsage", action="ce:GetCostAndUsage",
                error_code="AccessDenied", error_message="", count=1, first_seen=NOW, last_seen=NOW, regions=(),
                sample_event_ids=("e",), explanation="x", fix="Allow it.")
        for workload, principal in workloads
    ]
    out = io.StringIO()
    render_findings(FindingsReport(START, NOW, [], findings), "table", out, generated_at=NOW)
    return out.getvalue()


def test_the_terminal_table_names_who_was_refused_for_every_finding():
    pod = ({"namespace": "payments", "service_account": "api", "resolution": "exact"},
           f"arn:aws:sts::{ACCOUNT}:assumed-role/payments-api/botocore-session-1")
    user = ({"resolution": "not_eks"}, "arn:aws:iam::457448411975:user/christophe")
    only_pods = _terminal_table(pod)
    assert "payments/api" in only_pods and "by role payments-api" in only_pods
    mixed = _terminal_table(pod, user)
    assert "by user christophe" in mixed and "not an EKS workload" in mixed and "by role payments-api" in mixed


def test_renders_what_the_explainer_writes_for_the_real_corpus(real_store):
    """The documented JSON is the only contract; this checks the explainer keeps to it."""
    from trailscan.explain import explain_store
    from trailscan.findings import findings_document as explained_document
    from trailscan.store import Store

    with Store.open(real_store, read_only=True) as store:
        document = json.loads(json.dumps(explained_document(explain_store(store), NOW)))
        timeline = failure_timeline(store, document)
    assert document["findings"], "the real corpus holds refused calls"
    html, markdown = render_html(document, timeline), render_markdown(document, timeline)
    for finding in document["findings"]:
        assert finding["cause"] in html and md_text(finding["cause"]) in markdown
    assert "<svg" in html


def test_chart_buckets_by_hour_and_folds_small_series():
    doc = findings_document()
    timeline = [(f"series {i}", START + timedelta(hours=i, minutes=30)) for i in range(10)]
    timeline += [
        ("outside the window", NOW + timedelta(minutes=1)),
        ("before it", START - timedelta(seconds=1)),
    ]
    chart = chart_of(report.document_window(doc), timeline)
    assert len(chart["bars"]) == 24 and chart["bucket"] == "hour"
    assert chart["total"] == 10
    assert [s["label"] for s in chart["series"]][-1] == "5 other series"
    assert len(chart["series"]) == MAX_SERIES
    assert "outside the window" not in str(chart)
    ten_years = Window(datetime(2014, 1, 1, tzinfo=timezone.utc), NOW)
    chart = chart_of(ten_years, [("x", NOW - timedelta(days=1))])
    assert len(chart["bars"]) <= 41 and chart["labels"][0]["time"] == "Jan 2014"


def test_check_document_rejects_other_shapes():
    with pytest.raises(InputError, match="trailscan.findings/v1"):
        check_document({"schema": "trailscan.findings/v2", "findings": [], "coverage": []})
    with pytest.raises(InputError):
        render_html([])
    with pytest.raises(InputError, match="window"):
        report.document_window({**findings_document(), "window": {"start": "yesterday"}})


# -- the store side: events, timeline, secrets -----------------------------------------------------------


def _web_identity(event_id, when, *, failed=True):
    """payments/api's AssumeRoleWithWebIdentity (``trailscan.generate``), carrying planted
    secrets: the token in the request and, granted, the session's in the response."""
    rng = random.Random(event_id)
    record = generate.web_identity_call(
        rng, when=when, region="eu-west-1", account=ACCOUNT, provider_arn=PROVIDER,
        subject="system:serviceaccount:payments:api", role_arn=f"arn:aws:iam::{ACCOUNT}:role/payments-api",
        user_agent=HOSTILE_AGENT, error_code="AccessDenied" if failed else None, event_id=event_id,
        session_name="botocore-session-1",
        session=None if failed else generate.RoleSession(ACCOUNT, "payments-api", "botocore-session-1",
                                                         "ASIAEXAMPLEKEY000001"),
    )
    record["requestParameters"]["webIdentityToken"] = "eyJhbGciOiJSUzI1NiJ9.PLANTEDjwt.sig"
    if not failed:
        record["responseElements"]["credentials"].update(sessionToken=PLANTED_TOKEN, secretAccessKey=PLANTED_SECRET)
    return record


def _denied(event_id, when):
    writer = generate.RoleSession(ACCOUNT, "orders-writer", "botocore-session-1", "ASIAEXAMPLEKEY000002")
    return generate.api_call(
        random.Random(event_id), when=when, region="eu-west-1", account=ACCOUNT,
        identity=writer.user_identity(when - timedelta(minutes=30)), event_source="dynamodb.amazonaws.com",
        event_name="PutItem", read_only=False, user_agent=HOSTILE_AGENT, error_code="AccessDeniedException",
        error_message=f"not authorized {SCRIPT}", request_parameters={"tableName": "orders", "sessionToken": PLANTED_TOKEN},
        event_id=event_id,
    )


def _healthy(event_id, when):
    """A GetCallerIdentity whose identity carries a planted secret."""
    app = generate.RoleSession(ACCOUNT, "app", "botocore-session-1", "ASIAEXAMPLEKEY000003")
    record = generate.api_call(
        random.Random(event_id), when=when, region="eu-west-1", account=ACCOUNT,
        identity=app.user_identity(when - timedelta(minutes=30)), event_source="sts.amazonaws.com",
        event_name="GetCallerIdentity", user_agent=HOSTILE_AGENT, event_id=event_id,
    )
    record["userIdentity"]["secretAccessKey"] = PLANTED_SECRET
    return record


@pytest.fixture
def trail_store(store, tmp_path):
    """A store holding a day of CloudTrail (failures, successes with planted credentials,
    one event outside the window), ingested from real files by the files source."""
    records = [_web_identity(f"wi-{i}", START + timedelta(hours=1, minutes=20 * i)) for i in range(6)]
    records += [_web_identity(f"ok-{i}", START + timedelta(hours=2 + i), failed=False) for i in range(3)]
    records += [_denied(f"dn-{i}", START + timedelta(hours=13, minutes=i)) for i in range(4)]
    records += [_healthy("healthy-1", START + timedelta(hours=5))]
    records += [_web_identity("old-1", START - timedelta(hours=2))]
    folder = tmp_path / "AWSLogs" / ACCOUNT / "CloudTrail" / "eu-west-1" / "2026" / "11" / "27"
    folder.mkdir(parents=True)
    path = folder / f"{ACCOUNT}_CloudTrail_eu-west-1_20261127T0605Z_a1b2c3d4.json"
    path.write_text(json.dumps({"Records": records}))
    result, _ = ingest_files(store, [str(tmp_path / "AWSLogs")])
    assert result.new_events == len(records) and not result.problems
    return store


def _store_document() -> dict:
    doc = findings_document()
    doc["findings"] = [doc["findings"][0], doc["findings"][2], doc["findings"][3]]
    doc["findings"][0]["count"] = 6
    doc["findings"][1]["count"] = 4
    return doc


def test_window_events_holds_the_window_only(trail_store):
    table = window_events(trail_store, Window(START, NOW))
    assert table.num_rows == 14
    assert "old-1" not in table.column("event_id").to_pylist()
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.column_names[:3] == ["event_id", "event_time", "event_version"]


def test_failure_timeline_by_kind_from_the_detection_queries(trail_store):
    points = failure_timeline(trail_store, _store_document())
    kinds = [label for label, _ in points]
    assert kinds.count(KIND_SERIES["irsa"]) == 6
    assert kinds.count(KIND_SERIES["denied_call"]) == 4
    assert all(START <= moment < NOW for _, moment in points)


def test_failure_timeline_by_finding_from_event_ids(trail_store):
    doc = _store_document()
    points = failure_timeline(
        trail_store,
        doc,
        event_ids={0: [f"wi-{i}" for i in range(6)], 1: ["dn-0", "dn-1", "dn-2", "dn-3", "nope"]},
    )
    assert [label for label, _ in points].count("prod/payments/api") == 6
    assert [label for label, _ in points].count("prod/orders/writer") == 4
    assert min(points, key=lambda point: point[1]) == ("prod/payments/api", START + timedelta(hours=1))


def _artifact_texts(files: dict[str, bytes]) -> list[str]:
    """Every artifact as text; the Parquet file decoded to its values."""
    texts = []
    for name, body in files.items():
        if name.endswith(".parquet"):
            texts.append(json.dumps(pq.read_table(io.BytesIO(body)).to_pylist(), default=str))
        texts.append(body.decode("utf-8", "replace"))
    return texts


def _local_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_local_publish_writes_a_dated_folder_and_latest(trail_store, tmp_path):
    destination = tmp_path / "reports" / "nightly"
    doc = _store_document()
    location = publish_report(trail_store, doc, destination=str(destination), now=NOW)
    stamp = "2026-11-28T060000Z"
    assert location.folder == str(destination / stamp) + os.sep
    assert location.latest == str(destination / "latest") + os.sep
    assert location.html == str(destination / stamp / "report.html")
    files = _local_files(tmp_path / "reports")
    expected = {f"nightly/{sub}/{name}" for sub in (stamp, "latest") for name in ARTIFACTS}
    assert set(files) == expected, "nothing else written, no partial files left"
    for name in ARTIFACTS:
        assert files[f"nightly/{stamp}/{name}"] == files[f"nightly/latest/{name}"]
    assert json.loads(files[f"nightly/{stamp}/findings.json"]) == doc
    events = pq.read_table(destination / stamp / "events.parquet")
    assert events.num_rows == 14
    html = files[f"nightly/{stamp}/report.html"].decode()
    assert "IRSA: AssumeRoleWithWebIdentity refused" in html  # the chart, from the store

    # A second run replaces latest/ and keeps the earlier dated folder.
    later = publish_report(trail_store, doc, destination=str(destination), now=NOW + timedelta(days=1))
    assert later.folder.endswith("2026-11-29T060000Z" + os.sep)
    assert (destination / stamp / "report.html").exists()


def test_local_publish_to_a_file_is_an_input_error(trail_store, tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("")
    with pytest.raises(InputError, match="not a folder"):
        publish_report(trail_store, _store_document(), destination=str(target), now=NOW)


def test_planted_credentials_appear_in_no_artifact(trail_store, tmp_path, moto):
    doc = _store_document()
    publish_report(trail_store, doc, destination=str(tmp_path / "out"), now=NOW)
    session = moto.session("eu-west-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="secret-check", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    publish_report(trail_store, doc, destination="s3://secret-check/nightly/", session=session, now=NOW)
    remote = {
        item["Key"]: s3.get_object(Bucket="secret-check", Key=item["Key"])["Body"].read()
        for item in s3.list_objects_v2(Bucket="secret-check")["Contents"]
    }
    texts = _artifact_texts(_local_files(tmp_path / "out")) + _artifact_texts(remote)
    assert len(texts) == 2 * 2 * (len(ARTIFACTS) + 1)
    parquet = [t for t in texts if t.startswith("[{")]
    assert parquet and all("wi-0" in t for t in parquet), "the events are there"
    for text in texts:
        for secret in (PLANTED_TOKEN, PLANTED_SECRET, "PLANTEDjwt"):
            assert secret not in text


# -- S3 through moto in server mode -------------------------------------------------------------------


def test_s3_publish_writes_every_artifact_with_its_content_type(trail_store, moto):
    session = moto.session("eu-west-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="platform-reports", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    doc = _store_document()
    location = publish_report(
        trail_store, doc, destination="s3://platform-reports/nightly", session=session, now=NOW
    )
    assert location.folder == "s3://platform-reports/nightly/2026-11-28T060000Z/"
    assert location.latest == "s3://platform-reports/nightly/latest/"
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="platform-reports")["Contents"])
    assert keys == sorted(
        f"nightly/{sub}/{name}" for sub in ("2026-11-28T060000Z", "latest") for name in ARTIFACTS
    )
    for key in keys:
        head = s3.head_object(Bucket="platform-reports", Key=key)
        assert head["ContentType"] == CONTENT_TYPES[key.rsplit("/", 1)[1]]
        assert (head.get("CacheControl") == "no-cache") == key.startswith("nightly/latest/")

    def body(key):
        return s3.get_object(Bucket="platform-reports", Key=key)["Body"].read()

    events = pq.read_table(io.BytesIO(body("nightly/2026-11-28T060000Z/events.parquet")))
    assert events.num_rows == 14 and "raw" in events.column_names
    assert json.loads(body("nightly/latest/findings.json")) == doc
    html = body("nightly/latest/report.html").decode()
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert body("nightly/latest/report.md").decode().startswith("# Refused AWS calls")


def test_s3_write_report_from_an_arrow_table(moto):
    session = moto.session("us-east-1")
    session.client("s3").create_bucket(Bucket="flat-bucket")
    table = pa.table({"event_id": ["a"], "event_time": pa.array([NOW], pa.timestamp("us", tz="Etc/UTC"))})
    location = write_report(
        findings_document(), table, destination="s3://flat-bucket", session=session, now=NOW
    )
    assert location.folder == "s3://flat-bucket/2026-11-28T060000Z/"
    body = session.client("s3").get_object(Bucket="flat-bucket", Key="latest/events.parquet")["Body"].read()
    assert pq.read_table(io.BytesIO(body)).schema.field("event_time").type.tz == "UTC"


def test_s3_missing_bucket_is_one_line_naming_it(trail_store, moto):
    with pytest.raises(InputError) as raised:
        publish_report(
            trail_store,
            _store_document(),
            destination="s3://no-such-reports/nightly/",
            session=moto.session("eu-west-1"),
            now=NOW,
        )
    assert str(raised.value).startswith("s3://no-such-reports/: no such bucket")
    assert "\n" not in str(raised.value)


def test_s3_access_denied_is_one_line_naming_the_bucket(trail_store, moto):
    from botocore.awsrequest import AWSResponse

    class Raw:
        def stream(self, **_):
            yield (
                b'<?xml version="1.0" encoding="UTF-8"?>'
                b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            )

    session = moto.session("eu-west-1")
    session.client("s3").create_bucket(
        Bucket="locked-reports", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    session.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, Raw()),
    )
    with pytest.raises(InputError) as raised:
        publish_report(
            trail_store,
            _store_document(),
            destination="s3://locked-reports/nightly/",
            session=session,
            now=NOW,
        )
    message = str(raised.value)
    assert message.startswith("s3://locked-reports/nightly/2026-11-28T060000Z/events.parquet: access denied")
    assert "s3:PutObject on arn:aws:s3:::locked-reports/nightly/*" in message and "\n" not in message


@pytest.mark.parametrize(
    "destination", ["s3:/bucket/x", "s3://", "s3://Bad_Bucket/x", "s3://bucket/../x", " "]
)
def test_bad_destinations_are_usage_errors(destination):
    with pytest.raises(UsageError):
        parse_destination(destination)


def test_destination_prefixes_are_normalised():
    assert parse_destination("s3://b-1/a//b/") == S3Target("b-1", "a/b/")
    assert parse_destination("S3://b-1") == S3Target("b-1", "")


# -- in a real browser ------------------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium")
    if path:
        return path
    message = "chromium is not installed: run .ci/install-chromium (Debian's chromium package)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_png(data: bytes) -> np.ndarray:
    """A non-interlaced 8-bit RGB/RGBA PNG as an ``(height, width, channels)`` array,
    decoded with zlib and struct (no imaging library)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, chunks, header = 8, [], None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    channels = 3 if colour == 2 else 4
    stride = width * channels
    raw = zlib.decompress(b"".join(chunks))
    image = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.uint8)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1)
        if kind == 0:
            row = line.copy()
        elif kind == 1:  # Sub: a running sum per channel
            row = (
                (np.cumsum(line.reshape(-1, channels).astype(np.int64), axis=0) % 256)
                .astype(np.uint8)
                .ravel()
            )
        elif kind == 2:  # Up
            row = line + previous
        else:  # Average, Paeth: each byte needs the one decoded before it
            row = bytearray(stride)
            up = previous.tolist()
            for i, value in enumerate(line.tolist()):
                left = row[i - channels] if i >= channels else 0
                if kind == 3:
                    row[i] = (value + ((left + up[i]) >> 1)) & 0xFF
                else:
                    corner = up[i - channels] if i >= channels else 0
                    p = left + up[i] - corner
                    pa_, pb, pc = abs(p - left), abs(p - up[i]), abs(p - corner)
                    predictor = left if pa_ <= pb and pa_ <= pc else (up[i] if pb <= pc else corner)
                    row[i] = (value + predictor) & 0xFF
            row = np.frombuffer(bytes(row), dtype=np.uint8)
        image[y] = row
        previous = row
    return image.reshape(height, width, channels)


def test_report_renders_in_chromium(tmp_path):
    binary = _chromium()
    doc = findings_document()
    page = tmp_path / "report.html"
    gap = "the IAM inventory is partial: 2 roles could not be read (AccessDenied)"
    page.write_text(render_html(doc, frozen_timeline(), notes=[gap]), encoding="utf-8")
    url = page.as_uri()

    dumped = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    title = re.search(r"<title>(.*?)</title>", dom, flags=re.S).group(1)
    assert title.startswith("trailscan report: 7 findings"), "no script ran: the title is intact"
    assert "pwned" not in title
    assert not re.search(r"<img\b", dom) and not re.search(r"<script\b", dom), "hostile markup stayed text"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    for finding in doc["findings"]:
        assert finding["cause"] in dom
    for name in ("payments/api", "orders/writer", "search/indexer", "prod: node instance role", "Cluster"):
        assert name in dom
    assert dom.count("<rect") > 10, "the chart's bars are in the DOM"
    # Issue 22.2: commands in a monospace block, a still-failing marker, the inventory's gaps,
    # a documentation link per cause, an IAM console link per role, badges by family.
    assert re.search(r'<pre class="command"><code>kubectl -n search annotate serviceaccount indexer', dom)
    assert dom.count('class="badge failing"') >= 1 and 'class="badge stopped"' in dom
    assert gap in dom
    assert 'href="https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html"' in dom
    assert 'href="https://console.aws.amazon.com/iam/home#/roles/details/payments-api"' in dom
    assert 'badge cause family-trust' in dom and 'badge cause family-permissions' in dom

    shot = tmp_path / "report.png"
    taken = _run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        "--hide-scrollbars",
        url,
    )
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    pixels = read_png(shot.read_bytes())[:, :, :3]
    assert pixels.shape[:2] == (2000, 1200)
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 100, "the page is not blank"
    accent = np.array([int(ACCENT[i : i + 2], 16) for i in (1, 3, 5)])
    near_accent = np.all(np.abs(pixels.astype(int) - accent) <= 3, axis=2).sum()
    assert near_accent > 2000, (
        f"cause badges in the accent colour {ACCENT} are visible ({near_accent} pixels)"
    )
    for colour, what in ((FAMILY_COLOURS["trust"], "IRSA trust badges"), ("#fdecea", "still-failing markers")):
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        assert np.all(np.abs(pixels.astype(int) - rgb) <= 3, axis=2).sum() > 300, f"{what} ({colour}) are visible"
    series = np.array([0x25, 0x63, 0xEB])  # the chart's first series colour
    assert np.all(np.abs(pixels.astype(int) - series) <= 3, axis=2).sum() > 500, "the chart's bars are drawn"


def test_report_marks_still_failing_links_docs_and_console_and_publishes_the_gaps(tmp_path):
    """Issue 22.2 in report.md and findings.json (the page: test_report_renders_in_chromium)."""
    gap = "the IAM inventory is partial: 2 roles could not be read (AccessDenied)"
    markdown = render_markdown(findings_document(), frozen_timeline(), notes=[gap])
    assert "**STILL FAILING** (last seen 11 min ago)" in markdown and "Stopped (last seen 60 min ago)" in markdown
    assert "[AWS documentation](https://docs.aws.amazon.com/" in markdown
    assert "([IAM console](https://console.aws.amazon.com/iam/home#/roles/details/payments-api))" in markdown
    assert gap in markdown
    fixes = dict(split_fix("kubectl -n search annotate serviceaccount indexer eks.amazonaws.com/role-arn=X"))
    assert fixes == {"code": "kubectl -n search annotate serviceaccount indexer eks.amazonaws.com/role-arn=X"}
    location = write_report(findings_document(), pa.table({"event_id": ["e"]}), destination=str(tmp_path), now=NOW,
                            notes=[gap])
    published = json.loads((Path(location.html).parent / "findings.json").read_text())
    assert published["notes"] == [gap]
