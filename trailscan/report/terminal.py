"""The terminal: findings as a table, query results as a table, JSON or CSV.

``--format json`` prints the ``trailscan.findings/v1`` document and ``--format markdown``
the report's Markdown (:func:`~trailscan.report.markdown.findings_markdown`); the table is
drawn here.  Query rows (``trailscan sql``, ``queries run``) are rendered by
:func:`render_rows`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table

from trailscan.arn import principal_name
from trailscan.findings import Finding, FindingsReport, findings_document, iso
from trailscan.report.markdown import findings_markdown
from trailscan.report.safe import csv_cell, json_text, visible

__all__ = ["ROW_FORMATS", "SafeTable", "neutralize_cell", "no_events_line", "plain", "render_findings", "render_rows",
           "rows_as_dicts"]

#: Formats of query results.
ROW_FORMATS = ("table", "json", "csv")


class SafeTable(Table):
    """A rich table whose cells are data: every control character shown as an escape."""

    def add_row(self, *cells: Any, **options: Any) -> None:  # type: ignore[override]
        super().add_row(*(visible(cell) if isinstance(cell, str) else cell for cell in cells), **options)


def render_findings(report: FindingsReport, fmt: str, out: IO[str], *, generated_at: datetime) -> None:
    """Print *report* as ``table`` (terminal), ``markdown`` or ``json`` (the SPEC §7 document)."""
    if fmt == "json":
        document = findings_document(report, generated_at)
        out.write(json_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()) + "\n")
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


def _names_no_service_account(finding: Finding) -> bool:
    return finding.workload.resolution != "exact" or not finding.workload.service_account


def _principal_cell(finding: Finding) -> str:
    """Who made the refused calls, for people (``user NAME``, ``role NAME``), where the
    workload does not say it: empty for an exact service account."""
    if not _names_no_service_account(finding):
        return ""
    return principal_name(finding.principal_arn) or principal_name(finding.role_arn)


def _render_table(report: FindingsReport, out: IO[str]) -> None:
    console = Console(file=out, width=None if out.isatty() else 200, markup=False, highlight=False)
    if report.findings:
        table = SafeTable(title="Failing workloads", header_style="bold", show_lines=False)
        # The caller helps wherever a finding's workload is not an exact service account.
        principals = any(_names_no_service_account(f) for f in report.findings)
        columns = ("Cluster / namespace", "Workload", *(("Principal",) if principals else ()), "What failed",
                   "Cause", "Count", "Last seen", "Fix")
        # Workload names are copied into kubectl: kept whole when short, the prose columns
        # sharing what is left.
        whole = max(len(_workload_cell(f)) for f in report.findings) <= 40
        for column in columns:
            table.add_column(column, overflow="fold", no_wrap=whole and column == "Workload",
                             ratio=1 if column in ("Principal", "What failed", "Fix") else None)
        for index, (group, members) in enumerate(_groups(report.findings)):
            if index:
                table.add_section()
            for position, finding in enumerate(members):
                table.add_row(
                    group if position == 0 else "",
                    _workload_cell(finding),
                    *((_principal_cell(finding),) if principals else ()),
                    _what_failed(finding),
                    # What changed, when something did: "stopped after UpdateAssumeRolePolicy …" (issue 20).
                    f"{finding.cause}\n{finding.status}, {finding.decisive_change}" if finding.decisive_change
                    else finding.cause,
                    str(finding.count),
                    iso(finding.last_seen) or "",
                    finding.fix_summary,
                )
        console.print(table)
        events = report.failed_events
        console.print(
            f"{len(report.findings)} finding{'s' if len(report.findings) != 1 else ''} "
            f"over {events} failed event{'s' if events != 1 else ''}; `--format markdown` or "
            "`--format json` shows each explanation and the full fix",
        )
    elif report.window_events == 0:
        # Nothing read is not nothing wrong: a trail that stopped delivering looks like this.
        console.print(f"{no_events_line(report.window_start, report.window_end)}: nothing here says the workloads "
                      "are fine; what was read is below.")
    else:
        console.print("No failing workloads in the events read.")
    _render_coverage_table(report, console)


def no_events_line(start: datetime | None, end: datetime | None) -> str:
    """``No CloudTrail events in the window START – END`` (in the store, without a window)."""
    if start is None or end is None:
        return "No CloudTrail events in the store"
    return f"No CloudTrail events in the window {iso(start)} – {iso(end)}"


def _render_coverage_table(report: FindingsReport, console: Any) -> None:
    table = SafeTable(title="Coverage", header_style="bold")
    for column in ("Source", "Account", "Region", "Status", "Events", "Detail"):
        table.add_column(column, overflow="fold")
    for row in report.coverage:
        table.add_row(row.source, row.account, row.region, row.status, str(row.events), row.detail)
    if not report.coverage:
        table.add_row("-", "", "", "none", "0", "nothing was ingested for this window")
    console.print(table)


# Spreadsheet applications execute cells starting with these (CSV injection).
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def plain(value: Any) -> Any:
    """A JSON-friendly value: UTC ISO timestamps, numbers, strings."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def rows_as_dicts(columns: list[str], rows: list[tuple]) -> list[dict]:
    return [{c: plain(v) for c, v in zip(columns, row)} for row in rows]


def neutralize_cell(value: Any) -> str:
    """A CSV cell that no spreadsheet will evaluate as a formula."""
    text = "" if value is None else str(plain(value))
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def render_rows(columns: list[str], rows: list[tuple], fmt: str, out: IO[str], *, title: str | None = None) -> None:
    if fmt == "json":
        out.write(json_text(orjson.dumps(rows_as_dicts(columns, rows), option=orjson.OPT_INDENT_2).decode()) + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([csv_cell(neutralize_cell(v)) for v in row] for row in rows)
        out.write(buffer.getvalue())
    else:
        table = SafeTable(title=title, show_lines=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(plain(v)) for v in row))
        console = Console(file=out, width=None if out.isatty() else 200, markup=False, highlight=False)
        console.print(table)
        console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")
