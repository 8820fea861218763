"""A pushdown's result rows, back into CloudTrail records for the store.

Athena returns every value as text.  :func:`pushdown_sql` flattens each record into one
column per field (a struct's fields one by one, lists and maps as JSON text), named by
CloudTrail path; here each row becomes the record again, in CloudTrail's spelling, so the
store stages, redacts and deduplicates it like any other record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from trailscan.athena.sql import Leaf
from trailscan.athena.table import JSON_TEXT_FIELDS

__all__ = ["PushdownResult", "read_rows", "record_from_row"]

#: The result column counting the window's events a row stands for.
COUNT_COLUMN = "trailscan_events"


def _value(leaf: Leaf, text: str) -> object:
    if leaf.json or (len(leaf.path) == 1 and leaf.path[0] in JSON_TEXT_FIELDS):
        try:
            return json.loads(text)
        except ValueError:
            return text  # not JSON after all: kept as the text it is
    if leaf.path == ("readOnly",) and text in ("true", "false"):
        return text == "true"
    return text


def record_from_row(leaves: Sequence[Leaf], values: Sequence[str | None]) -> dict | None:
    """The record a row holds (None for the row of the events no detection selected)."""
    record: dict = {}
    for leaf, text in zip(leaves, values):
        if text is None:
            continue
        value = _value(leaf, text)
        if value is None:
            continue
        target = record
        for key in leaf.path[:-1]:
            target = target.setdefault(key, {})
        target[leaf.path[-1]] = value
    return record or None


@dataclass
class PushdownResult:
    """What one pushdown returned: the records, and the window's events it saw."""

    records: list[dict] = field(default_factory=list)
    events: int = 0


def read_rows(leaves: Sequence[Leaf], columns: Sequence[str], rows: Iterable[Sequence[str | None]]) -> PushdownResult:
    """Records and the count of events from a pushdown's result (*columns* name the values
    of each row: the leaves ``c0``, ``c1`` … then :data:`COUNT_COLUMN`)."""
    position = list(columns).index(COUNT_COLUMN)
    result = PushdownResult()
    for row in rows:
        count = row[position]
        result.events += int(count) if count else 0
        record = record_from_row(leaves, row[: len(leaves)])
        if record is not None:
            result.records.append(record)
    return result
