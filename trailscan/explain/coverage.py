"""Coverage of a window: what the store read for it, per source, account and region.

Findings are only as complete as what was read, and absence of input is never "nothing
happened".  :func:`measure_coverage` merges every ingest recorded for the window
(``queries/window_coverage.sql``) per source, account and region, and counts the events
the store holds in the window, in one grouped scan:

- a remote source (S3, LookupEvents: its ingests have windows) is ``complete`` when the
  windows of its complete ingests together cover the window — a later failed ingest does
  not erase what an earlier one stored; ``partial`` when something was read but not all of
  the window (the detail names the spans read); ``failed`` when nothing was.  A
  LookupEvents ``--quick`` ingest is recorded ``partial``, so it never completes a window;
- local files (no window) are one ``files`` row: ``partial`` while a file that could not
  be read has not been read since (the files source keeps them in the store's ``state``,
  :data:`~trailscan.model.UNREADABLE_FILES`), else ``complete``;
- a ``complete`` row holding no event of the window is ``empty``, and says how many events
  were read from it and when they were: a trail that stopped delivering looks like this,
  and it is no all-clear.

Events belong to the row of the source that stored them, by their ``origin``: ``s3://…``
to the S3 row of their account and region, ``lookup:REGION:ID`` to the LookupEvents row of
that region, anything else (a path) to the ``files`` row.  Without a window, the window is
the span of the store's events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trailscan.findings import CoverageRow, iso
from trailscan.model import COMPLETE, EMPTY, FAILED, PARTIAL, UNREADABLE_FILES, Window
from trailscan.queries import QueryBook, load_queries
from trailscan.store import Store

__all__ = ["WindowCoverage", "measure_coverage", "unreadable_files", "window_coverage"]

#: The source an event came from, from its origin; LookupEvents' region is the one asked.
_ORIGIN_SOURCE = """CASE WHEN starts_with(origin, 's3://') THEN 's3'
            WHEN starts_with(origin, 'lookup:') THEN 'lookup'
            ELSE 'files' END"""
_EVENTS_SQL = f"""
SELECT {_ORIGIN_SOURCE} AS source,
       coalesce(account_id, '') AS account,
       CASE WHEN starts_with(origin, 'lookup:') THEN split_part(origin, ':', 2)
            ELSE coalesce(aws_region, '') END AS region,
       count(*) AS events{{extra}}
FROM events
{{where}}
GROUP BY ALL
"""
_IN_WINDOW = "WHERE event_time >= $since AND event_time < $until"
_SPAN = ", min(event_time) AS first, max(event_time) AS last"

#: How many unreadable files a detail names before counting the rest.
_NAMED_FILES = 1


@dataclass(frozen=True)
class WindowCoverage:
    """The coverage rows of a window, how many events the store holds in it (from every
    source), and the window itself (the store's span when none was asked)."""

    rows: list[CoverageRow]
    events: int
    start: datetime | None
    end: datetime | None


def window_coverage(store: Store, window: Window | None, *, book: QueryBook | None = None) -> list[CoverageRow]:
    """One :class:`CoverageRow` per source, account and region read for *window* (None:
    everything the store holds)."""
    return measure_coverage(store, window, book=book).rows


def measure_coverage(store: Store, window: Window | None, *, book: QueryBook | None = None) -> WindowCoverage:
    """The coverage of *window* (None: the span of the store's events) and its event count."""
    book = book or load_queries()
    bounds = {"since": window.start if window else None, "until": window.end if window else None}
    counts = _count(store, window)
    if window:
        start, end = window.start, window.end
        asked: tuple[datetime, datetime] | None = (start, end)
    else:
        start, end = _store_span(store)
        # The last event is inside the window: its end is exclusive.
        asked = (start, end + timedelta(microseconds=1)) if start and end else None
    query = book["window_coverage"]
    names, found = store.query(query.typed_sql(), query.bind(bounds))
    ingests: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for values in found:  # latest first
        ingest = dict(zip(names, values))
        ingests.setdefault((ingest["source"], ingest["account"], ingest["region"]), []).append(ingest)
    rows: list[CoverageRow] = []
    for (source, account, region), members in sorted(ingests.items()):
        local = all(m["window_start"] is None or m["window_end"] is None for m in members)
        if local:
            status, detail = _files_status(store, members)
            own = sum(n for (s, _, _), n in counts.items() if s == source)
            others = 0
        else:
            status, detail = _remote_status(members, asked)
            own = sum(n for key, n in counts.items() if _belongs(key, source, account, region))
            others = sum(n for (s, a, r), n in counts.items() if s != source and (a, r) == (account, region))
        if status == COMPLETE and own == 0:
            if others:
                detail = _join(detail, f"its {others:,} events in the window were stored first from another source")
            else:
                status, detail = EMPTY, _empty_detail(store, source, account, region, local, detail)
        rows.append(
            CoverageRow(
                source=source,
                account=account,
                region=region,
                status=status,
                events=own,
                detail=detail,
                window_start=asked[0] if asked else None,
                window_end=asked[1] if asked else None,
            )
        )
    return WindowCoverage(rows, sum(counts.values()), start, end)


# -- remote sources: windows merged ------------------------------------------------------------


def _remote_status(members: list[dict[str, Any]], asked: tuple[datetime, datetime] | None) -> tuple[str, str]:
    complete = [m for m in members if m["status"] == COMPLETE]
    partial = [m for m in members if m["status"] == PARTIAL]
    covered = _union(_clip(m, asked) for m in complete)
    if asked is None:
        whole = bool(complete)  # no window and no event: any complete read says all there is
    else:
        whole = bool(covered) and covered[0][0] <= asked[0] and covered[0][1] >= asked[1]
    if whole:
        last = complete[0]["detail"]
        if asked is not None and not _covers(_clip(complete[0], asked), asked):
            return COMPLETE, _join(f"read by {len(complete)} complete ingests", f"the last: {last}" if last else "")
        return COMPLETE, last
    problem = next((m["detail"] for m in members if m["status"] != COMPLETE and m["detail"]), "")
    if complete or partial:
        read_in_part = _union(_clip(m, asked) for m in partial)
        return PARTIAL, _join(
            problem or "not all of the window was read",
            f"read completely: {_spans(covered)}" if covered else "",
            f"read in part: {_spans(read_in_part)}" if read_in_part else "",
        )
    return FAILED, problem or "nothing could be read"


def _clip(member: dict[str, Any], asked: tuple[datetime, datetime] | None) -> tuple[datetime, datetime] | None:
    start, end = member["window_start"], member["window_end"]
    if asked is not None:
        start, end = max(start, asked[0]), min(end, asked[1])
    return (start, end) if start < end else None


def _union(spans: Iterable[tuple[datetime, datetime] | None]) -> list[tuple[datetime, datetime]]:
    merged: list[list[datetime]] = []
    for start, end in sorted(span for span in spans if span):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _covers(span: tuple[datetime, datetime] | None, asked: tuple[datetime, datetime]) -> bool:
    return span is not None and span[0] <= asked[0] and span[1] >= asked[1]


def _belongs(key: tuple[str, str, str], source: str, account: str, region: str) -> bool:
    """Whether events counted under *key* (source, account, region) are this row's; a row
    without an account (LookupEvents before the caller was known) takes every account."""
    s, a, r = key
    return s == source and r == region and (not account or a == account)


# -- local files: unreadable files tracked in the store ---------------------------------------------


def _files_status(store: Store, members: list[dict[str, Any]]) -> tuple[str, str]:
    unreadable = unreadable_files(store)
    last = members[0]
    if unreadable is None:
        # A store written before unreadable files were tracked: its latest ingest says.
        return last["status"], last["detail"]
    if unreadable:
        named = sorted(unreadable.items())[:_NAMED_FILES]
        files = "; ".join(f"{path} ({why})" for path, why in named)
        more = len(unreadable) - len(named)
        count = f"{len(unreadable)} file{'s' if len(unreadable) != 1 else ''}"
        return PARTIAL, (
            f"{count} could not be read and {'have' if len(unreadable) != 1 else 'has'} not been read since: "
            f"{files}" + (f", and {more} more" if more else "")
        )
    if len(members) == 1:
        return COMPLETE, last["detail"]
    return COMPLETE, _join(f"{len(members)} ingests of local files", f"the last: {last['detail']}" if last["detail"] else "")


def unreadable_files(store: Store) -> dict[str, str] | None:
    """The local files that could not be read and have not been read since (path → why);
    None for a store written before they were kept."""
    # Through query(), which fetches all: a result left half-read would block the connection.
    _, found = store.query("SELECT value FROM state WHERE key = $key", {"key": UNREADABLE_FILES})
    return orjson.loads(found[0][0]) if found else None


# -- counting events -------------------------------------------------------------------------


def _count(store: Store, window: Window | None) -> dict[tuple[str, str, str], int]:
    sql = _EVENTS_SQL.format(extra="", where=_IN_WINDOW if window else "")
    params = {"since": window.start, "until": window.end} if window else None
    _, found = store.query(sql, params)
    return {(source, account, region): int(n) for source, account, region, n in found}


def _empty_detail(store: Store, source: str, account: str, region: str, local: bool, detail: str) -> str:
    """What an ``empty`` row read: how many events, spanning when (a whole-store scan, paid
    only when a row is empty)."""
    _, found = store.query(_EVENTS_SQL.format(extra=_SPAN, where=""))
    read = [
        (n, first, last)
        for s, a, r, n, first, last in found
        if (s == source if local else _belongs((s, a, r), source, account, region))
    ]
    total = sum(n for n, _, _ in read)
    if not total:
        return _join("no records read", detail)
    first = min((f for _, f, _ in read if f is not None), default=None)
    last = max((l for _, _, l in read if l is not None), default=None)
    spanning = f", spanning {iso(first)} – {iso(last)}" if first and last else ""
    return f"{total:,} events read{spanning}; none in the window"


def _store_span(store: Store) -> tuple[datetime | None, datetime | None]:
    _, found = store.query("SELECT min(event_time), max(event_time) FROM events")
    first, last = found[0] if found else (None, None)
    return _utc(first), _utc(last)


# -- words -----------------------------------------------------------------------------------


def _spans(spans: list[tuple[datetime, datetime]]) -> str:
    return ", ".join(f"{iso(start)} – {iso(end)}" for start, end in spans)


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
