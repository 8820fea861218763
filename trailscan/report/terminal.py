"""The terminal: findings as a table, query results as a table, JSON or CSV.

``--format json`` prints the ``trailscan.findings/v1`` document and ``--format markdown``
the report's Markdown (:func:`~trailscan.report.markdown.findings_markdown`); the table is
drawn here.  Query rows (``trailscan sql``, ``queries run``) are rendered by
:func:`render_rows`.
"""

from __future__ import annotations

import csv
import io
import os
import textwrap
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trailscan.arn import principal_name
from trailscan.explain.causes import family
from trailscan.findings import Finding, FindingsReport, findings_document, iso
from trailscan.report.markdown import findings_markdown
from trailscan.report.recency import STILL_FAILING, ago, judged_at, still_failing
from trailscan.report.safe import csv_cell, json_text, visible

__all__ = ["ROW_FORMATS", "STILL_FAILING", "SafeTable", "neutralize_cell", "no_events_line", "ordered", "plain",
           "reference_time", "render_findings", "render_rows", "rows_as_dicts", "still_failing"]

#: Formats of query results.
ROW_FORMATS = ("table", "json", "csv")


class SafeTable(Table):
    """A rich table whose cells are data: every control character shown as an escape."""

    def add_row(self, *cells: Any, **options: Any) -> None:  # type: ignore[override]
        super().add_row(*(visible(cell) if isinstance(cell, str) else cell for cell in cells), **options)


def render_findings(report: FindingsReport, fmt: str, out: IO[str], *, generated_at: datetime,
                    width: int | None = None, colour: bool | None = None) -> None:
    """Print *report* as ``table`` (terminal), ``markdown`` or ``json`` (the SPEC §7 document).

    The table fits *width* columns (the terminal's; ``COLUMNS`` or 120 when piped); it is
    coloured per cause family on a colour terminal, never when piped or with ``NO_COLOR``
    (*colour* True forces it, for tests)."""
    if fmt == "json":
        document = findings_document(report, generated_at)
        out.write(json_text(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()) + "\n")
    elif fmt == "markdown":
        out.write(findings_markdown(report, generated_at=generated_at))
    else:
        _render_table(report, out, now=generated_at, width=width, colour=colour)


#: Rich styles of the cause families (:data:`trailscan.explain.causes.FAMILIES`).
FAMILY_STYLES = {
    "trust": "bold magenta",
    "service_account": "bold yellow",
    "permissions": "bold red",
    "pod_identity": "bold cyan",
    "node": "bold blue",
    "unexplained": "bold white",
}


def reference_time(report: FindingsReport, now: datetime) -> datetime:
    """The moment "still failing" is judged at (:func:`~trailscan.report.recency.judged_at`)."""
    return judged_at(report.window_end, now)


def ordered(findings: Iterable[Finding], at: datetime) -> list[Finding]:
    """Worst and most recent first: still failing before stopped, then the latest last
    seen, then the most refused calls."""
    return sorted(findings, key=lambda f: (not still_failing(f.last_seen, at, f.status), -f.last_seen.timestamp(), -f.count))


def _what_failed(finding: Finding) -> str:
    code = f" ({finding.error_code})" if finding.error_code else ""
    return f"{finding.action}{code}"


def _workload_cell(finding: Finding) -> str:
    if finding.workload.resolution == "node" and finding.role_arn:
        return f"node role {finding.role_arn.rsplit('/', 1)[-1]}"
    return finding.workload.label()


def _principal_cell(finding: Finding) -> str:
    """Who made the refused calls, for people: ``user NAME``, ``role NAME``, or the web
    identity's subject."""
    return principal_name(finding.principal_arn) or principal_name(finding.role_arn) or "unknown"


def _wrap(text: str | list[str], width: int, indent: int) -> list[str]:
    """*text* wrapped at spaces only (a list: at the joins between its items only), so a
    cause code, an action, an ARN, a time or a principal's name is never split; an item
    longer than the line stands alone on its line."""
    room = max(20, width - indent)
    if isinstance(text, str):
        return textwrap.wrap(text, width=room, break_long_words=False, break_on_hyphens=False) or [""]
    lines: list[str] = []
    for atom in text:
        if lines and len(lines[-1]) + 1 + len(atom) <= room:
            lines[-1] += " " + atom
        else:
            lines.append(atom)
    return lines or [""]


def _field(label: str, text: str | list[str], width: int) -> list[str]:
    pad = " " * _INDENT
    label = label.ljust(_LABEL)
    text = visible(text) if isinstance(text, str) else [visible(atom) for atom in text]
    lines = _wrap(text, width, _INDENT + len(label) + 1)
    head = f"{pad}{label} {lines[0]}"
    return [head, *(f"{pad}{' ' * (len(label) + 1)}{line}" for line in lines[1:])]


_INDENT = 2
_LABEL = len("refused")


def _console(out: IO[str], width: int | None, colour: bool | None) -> Console:
    if width is None and not out.isatty():
        width = int(os.environ.get("COLUMNS", "0") or 0) or 120
    options: dict[str, Any] = {"file": out, "width": width, "markup": False, "highlight": False}
    if colour:
        options.update(force_terminal=True, color_system="standard")
    elif colour is False or os.environ.get("NO_COLOR"):  # https://no-color.org: any value
        options.update(color_system=None)
    return Console(**options)


def _header(report: FindingsReport, at: datetime, width: int) -> list[str]:
    if report.window_start and report.window_end:
        window = f"{iso(report.window_start)} – {iso(report.window_end)}"
    else:
        window = "everything in the store"
    statuses = Counter(row.status for row in report.coverage)
    read = ", ".join(f"{n} {status}" for status, n in statuses.items()) or "nothing ingested"
    sources = len(report.coverage)
    lines = _wrap(f"Failing workloads, {window}", width, 0)
    lines += _wrap(f"Read {report.window_events:,} events in the window from {sources} "
                   f"source/account/region{'s' if sources != 1 else ''}: {read} (coverage below)", width, 0)
    failing = sum(still_failing(f.last_seen, at, f.status) for f in report.findings)
    n = len(report.findings)
    lines += _wrap(f"{n} finding{'s' if n != 1 else ''} over {report.failed_events:,} failed events, "
                   f"{failing} still failing (last seen within {int(STILL_FAILING.total_seconds() // 60)} min of "
                   f"{iso(at)}); worst and most recent first", width, 0)
    return lines


def _block(finding: Finding, at: datetime, width: int) -> list[tuple[str, str | None]]:
    """One finding: (line, style of its cause code or None) pairs."""
    status = "FAILING" if still_failing(finding.last_seen, at, finding.status) else "stopped"
    cluster = finding.workload.cluster or "(cluster unknown)"
    tail = f"{finding.count}× · last {ago(finding.last_seen, at)}"
    head = f"{status} {finding.cause}  {visible(cluster)} / {visible(_workload_cell(finding))}"
    lines = [head + "  " + tail] if len(head) + 2 + len(tail) <= width else [head, " " * _INDENT + tail]
    lines += _field("refused", [_what_failed(finding), f"· by {_principal_cell(finding)}"], width)
    lines += _field("role", [finding.role_arn or "(none)", f"· last {iso(finding.last_seen)}"], width)
    if finding.decisive_change:
        lines += _field("change", finding.decisive_change, width)
    lines += _field("fix", finding.fix_summary or "(none established)", width)
    return [(line, None) for line in lines]


def _render_table(report: FindingsReport, out: IO[str], *, now: datetime, width: int | None = None,
                  colour: bool | None = None) -> None:
    console = _console(out, width, colour)
    columns = console.width
    at = reference_time(report, now)

    def emit(line: str, text: Text | None = None) -> None:
        console.print(text or Text(line), soft_wrap=True, crop=False, overflow="ignore")

    if report.findings:
        for line in _header(report, at, columns):
            emit(line)
        if columns < 100:
            emit("")
        for finding in ordered(report.findings, at):
            if columns >= 100:  # a blank line between blocks where there is room
                emit("")
            for index, (line, _) in enumerate(_block(finding, at, columns)):
                text = Text(line)
                if index == 0:
                    failing = line.startswith("FAILING")
                    text.stylize("bold red reverse" if failing else "dim", 0, 7)
                    text.stylize(FAMILY_STYLES[family(finding.cause)], 8, 8 + len(finding.cause))
                emit(line, text)
        emit("")
        emit("`--format markdown` or `--format json` shows each explanation and the full fix")
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
    for column in ("Source", "Account", "Region", "Status", "Events"):
        table.add_column(column, no_wrap=True)
    table.add_column("Detail", overflow="fold")
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
