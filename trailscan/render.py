"""Rendering rows for people (a table) and for programs (JSON, CSV)."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "csv")

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
        out.write(orjson.dumps(rows_as_dicts(columns, rows), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([neutralize_cell(v) for v in row] for row in rows)
        out.write(buffer.getvalue())
    else:
        table = Table(title=title, show_lines=False, header_style="bold")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(plain(v)) for v in row))
        console = Console(file=out, width=None if out.isatty() else 200, markup=False, highlight=False)
        console.print(table)
        console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")
