"""The findings model and its SPEC §7 JSON document, table and Markdown renderings.

:mod:`trailscan.explain` fills a :class:`FindingsReport`; everything that shows
findings to people or programs reads it from here: :func:`findings_document` is the
``trailscan.findings/v1`` document (exactly the keys of SPEC §7), :func:`render_findings`
prints it as a table, Markdown or that JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

__all__ = [
    "CAUSES",
    "KINDS",
    "RESOLUTIONS",
    "SCHEMA",
    "Candidate",
    "CoverageRow",
    "Finding",
    "FindingsReport",
    "Workload",
    "findings_document",
    "render_findings",
]

SCHEMA = "trailscan.findings/v1"
KINDS = ("irsa", "pod_identity", "denied_call")
RESOLUTIONS = ("exact", "by_role", "node", "unknown")

#: Every cause of SPEC §7 with the kind it belongs to, in precedence order: a finding
#: gets the first cause that holds.
CAUSES: tuple[tuple[str, str], ...] = (
    ("irsa", "INVALID_ROLE_ARN"),
    ("irsa", "TOKEN_EXPIRED"),
    ("irsa", "IDP_UNREACHABLE"),
    ("irsa", "OIDC_PROVIDER_MISSING"),
    ("irsa", "OIDC_THUMBPRINT_MISMATCH"),
    ("irsa", "SA_NOT_FOUND"),
    ("irsa", "SA_NOT_ANNOTATED"),
    ("irsa", "ROLE_MISMATCH"),
    ("irsa", "ROLE_NOT_FOUND"),
    ("irsa", "TRUST_PROVIDER_MISMATCH"),
    ("irsa", "TRUST_ACTION_MISSING"),
    ("irsa", "TRUST_SUBJECT_MISMATCH"),
    ("irsa", "TRUST_AUDIENCE_MISMATCH"),
    ("pod_identity", "POD_IDENTITY_TRUST"),
    ("pod_identity", "POD_IDENTITY_AGENT_DENIED"),
    ("denied_call", "NODE_ROLE_FALLBACK"),
    ("denied_call", "EXPLICIT_DENY"),
    ("denied_call", "BOUNDARY_DENY"),
    ("denied_call", "RESOURCE_POLICY_DENY"),
    ("denied_call", "MISSING_PERMISSION"),
    ("any", "UNEXPLAINED"),
)
_CAUSE_NAMES = {cause for _kind, cause in CAUSES}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Candidate:
    """A service account that may be the workload (its annotation names the role)."""

    cluster: str | None
    namespace: str
    service_account: str

    def as_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "namespace": self.namespace, "service_account": self.service_account}

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"


@dataclass(frozen=True)
class Workload:
    """Which pod's identity failed, and how sure we are (``resolution``, SPEC §7)."""

    cluster: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    resolution: str = "unknown"
    candidates: tuple[Candidate, ...] = ()

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"unknown workload resolution {self.resolution!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "service_account": self.service_account,
            "resolution": self.resolution,
            "candidates": [c.as_json() for c in self.candidates],
        }

    def label(self) -> str:
        """A short name for tables: ``ns/sa``, ``node``, the candidates, or ``unknown``."""
        if self.namespace and self.service_account:
            return f"{self.namespace}/{self.service_account}"
        if self.resolution == "node":
            return "node role"
        if self.candidates:
            return "one of " + ", ".join(str(c) for c in self.candidates)
        return "unknown"


@dataclass(frozen=True)
class Finding:
    """Failed events grouped by (kind, cause, workload, role, action), with why and what to do.

    ``action`` (the IAM action, e.g. ``ec2:DescribeSnapshots``), ``account`` and
    ``event_ids`` (every event of the finding, latest group first) are kept for grouping,
    rendering and reports; the SPEC §7 document does not carry them.
    """

    kind: str
    cause: str
    workload: Workload
    principal_arn: str | None
    role_arn: str | None
    event_source: str
    event_name: str
    action: str
    error_code: str | None
    error_message: str | None
    count: int
    first_seen: datetime
    last_seen: datetime
    regions: tuple[str, ...]
    sample_event_ids: tuple[str, ...]
    explanation: str
    fix: str
    account: str | None = None
    event_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.cause not in _CAUSE_NAMES:
            raise ValueError(f"unknown cause {self.cause!r}")

    @property
    def fix_summary(self) -> str:
        """The fix's first line: what to do, in one sentence."""
        return self.fix.strip().splitlines()[0] if self.fix.strip() else ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cause": self.cause,
            "workload": self.workload.as_json(),
            "principal_arn": self.principal_arn,
            "role_arn": self.role_arn,
            "event_source": self.event_source,
            "event_name": self.event_name,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "count": self.count,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "regions": list(self.regions),
            "sample_event_ids": list(self.sample_event_ids),
            "explanation": self.explanation,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class CoverageRow:
    """What was read for the window from one source/account/region."""

    source: str
    account: str
    region: str
    status: str
    events: int
    detail: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "account": self.account,
            "region": self.region,
            "status": self.status,
            "events": self.events,
            "detail": self.detail,
        }


@dataclass
class FindingsReport:
    """Findings over a window, with the coverage they rest on.

    ``notes`` say what the inventory lacked or could not read (shown on stderr);
    ``problems`` name inputs that could not be read during ingest.
    """

    window_start: datetime | None
    window_end: datetime | None
    coverage: list[CoverageRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every coverage row is ``complete`` (and there is at least one)."""
        return bool(self.coverage) and all(row.status == "complete" for row in self.coverage)

    @property
    def failed_events(self) -> int:
        return sum(f.count for f in self.findings)


def findings_document(report: FindingsReport, generated_at: datetime) -> dict[str, Any]:
    """The SPEC §7 document: ``schema``, ``generated_at``, ``window``, ``coverage``, ``findings``."""
    return {
        "schema": SCHEMA,
        "generated_at": _iso(generated_at),
        "window": {"start": _iso(report.window_start), "end": _iso(report.window_end)},
        "coverage": [row.as_json() for row in report.coverage],
        "findings": [finding.as_json() for finding in report.findings],
    }


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

FORMATS = ("table", "json", "markdown")


def render_findings(report: FindingsReport, fmt: str, out: IO[str], *, generated_at: datetime) -> None:
    """Print *report* as ``table`` (terminal), ``markdown`` or ``json`` (the SPEC §7 document)."""
    if fmt == "json":
        document = findings_document(report, generated_at)
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "markdown":
        out.write(findings_markdown(report, generated_at=generated_at))
    else:
        _render_table(report, out)


def _groups(findings: Iterable[Finding]) -> list[tuple[str, list[Finding]]]:
    grouped: dict[tuple, list[Finding]] = {}
    for finding in findings:
        cluster, namespace = finding.workload.cluster, finding.workload.namespace
        key = (cluster is None, cluster or "", namespace is None, namespace or "")
        grouped.setdefault(key, []).append(finding)
    return [
        (f"{key[1] or '(cluster unknown)'} / {key[3] or '(namespace unknown)'}", members)
        for key, members in sorted(grouped.items())
    ]


def _what_failed(finding: Finding) -> str:
    code = f" ({finding.error_code})" if finding.error_code else ""
    return f"{finding.action}{code}"


def _workload_cell(finding: Finding) -> str:
    if finding.workload.resolution == "node" and finding.role_arn:
        return f"node role {finding.role_arn.rsplit('/', 1)[-1]}"
    return finding.workload.label()


def _render_table(report: FindingsReport, out: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=None if out.isatty() else 200, markup=False, highlight=False)
    if report.findings:
        table = Table(title="Failing workloads", header_style="bold", show_lines=False)
        for column in ("Cluster / namespace", "Workload", "What failed", "Cause", "Count", "Last seen", "Fix"):
            table.add_column(column, overflow="fold")
        for index, (group, members) in enumerate(_groups(report.findings)):
            if index:
                table.add_section()
            for position, finding in enumerate(members):
                table.add_row(
                    group if position == 0 else "",
                    _workload_cell(finding),
                    _what_failed(finding),
                    finding.cause,
                    str(finding.count),
                    _iso(finding.last_seen) or "",
                    finding.fix_summary,
                )
        console.print(table)
        events = report.failed_events
        console.print(
            f"{len(report.findings)} finding{'s' if len(report.findings) != 1 else ''} "
            f"over {events} failed event{'s' if events != 1 else ''}; `--format markdown` or "
            "`--format json` shows each explanation and the full fix",
        )
    else:
        console.print("No failing workloads in the events read.")
    _render_coverage_table(report, console)


def _render_coverage_table(report: FindingsReport, console: Any) -> None:
    from rich.table import Table

    table = Table(title="Coverage", header_style="bold")
    for column in ("Source", "Account", "Region", "Status", "Events", "Detail"):
        table.add_column(column, overflow="fold")
    for row in report.coverage:
        table.add_row(row.source, row.account, row.region, row.status, str(row.events), row.detail)
    if not report.coverage:
        table.add_row("-", "", "", "none", "0", "nothing was ingested for this window")
    console.print(table)


def _md(text: Any) -> str:
    """One line of Markdown that renders ``text`` literally: CloudTrail strings carry
    whatever callers sent (HTML, links, pipes, newlines, backticks)."""
    from trailscan.report import md_text

    return md_text(text)


def findings_markdown(report: FindingsReport, *, generated_at: datetime) -> str:
    """The findings as Markdown: a summary table per cluster and namespace, each finding's
    explanation and full fix, then the coverage.  Every string is escaped (:func:`_md`),
    the fix sits in a fence no content can close."""
    from trailscan.report import md_fence, md_paragraph
    lines = [
        "# trailscan findings",
        "",
        (f"Window: {_iso(report.window_start) or 'beginning'} – {_iso(report.window_end) or 'now'}; "
        f"generated {_iso(generated_at)}."),
        "",
    ]
    if not report.findings:
        lines += ["No failing workloads in the events read.", ""]
    number = 0
    for group, members in _groups(report.findings):
        lines += [f"## {_md(group)}", "", "| Workload | What failed | Cause | Count | Last seen | Fix |", "|---|---|---|---|---|---|"]
        for finding in members:
            lines.append(
                f"| {_md(finding.workload.label())} | {_md(_what_failed(finding))} | {finding.cause} | "
                f"{finding.count} | {_iso(finding.last_seen)} | {_md(finding.fix_summary)} |"
            )
        lines.append("")
        for finding in members:
            number += 1
            lines += [
                f"### {number}. {_md(finding.workload.label())}: {finding.cause}",
                "",
                f"- **Kind:** {finding.kind}; **resolution:** {finding.workload.resolution}",
                f"- **Role:** {_md(finding.role_arn or 'unknown')}",
                (f"- **Failed:** {finding.event_source} {finding.event_name} — {finding.error_code or ''}"
                f"{': ' + _md(finding.error_message) if finding.error_message else ''}"),
                (f"- **Events:** {finding.count}, {_iso(finding.first_seen)} – {_iso(finding.last_seen)} "
                f"in {', '.join(finding.regions) or 'unknown region'}"),
                "",
                md_paragraph(finding.explanation),
                "",
                "**Fix:**",
                "",
                md_fence(finding.fix.strip()),
                "",
            ]
    lines += ["## Coverage", "", "| Source | Account | Region | Status | Events | Detail |", "|---|---|---|---|---|---|"]
    for row in report.coverage:
        lines.append(
            f"| {_md(row.source)} | {_md(row.account)} | {_md(row.region)} | {row.status} | {row.events} | {_md(row.detail)} |"
        )
    if not report.coverage:
        lines.append("| - | | | none | 0 | nothing was ingested for this window |")
    lines.append("")
    return "\n".join(lines)
