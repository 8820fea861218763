"""Plain data shared by the pipeline stages: windows, coverage, batch results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

#: Progress callback: ``progress(label, done, total)``; ``total`` is None when unknown.
#: The library reports through it and never prints; the CLI renders it on stderr.
ProgressFn = Callable[[str, int, "int | None"], None]


def positive_setting(name: str, default: int, unit: str) -> int:
    """The whole number ``$NAME`` holds, else *default*; one line naming the variable when it
    is not a positive number of *unit*."""
    import os

    from trailscan.errors import UsageError

    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{name}={text!r} is not a positive number of {unit}")
    return value


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


#: How long no refused call must last before "it stopped" is said: CloudTrail delivers an
#: event within about 5 minutes (not guaranteed), and a workload that retries fails again
#: within minutes. The terminal's "still failing" and a change's "no failure followed" both.
QUIET = timedelta(minutes=15)


def as_utc(moment: datetime) -> datetime:
    """*moment* in UTC (a naive one taken as UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def judged_at(window_end: datetime | None, now: datetime) -> datetime:
    """The end of what was read: the window's end, or *now* if earlier (a window not yet over)."""
    return min(as_utc(window_end), as_utc(now)) if window_end is not None else as_utc(now)


def span_words(span: timedelta) -> str:
    """``3 min``, ``5 h``, ``2 d``."""
    minutes = max(0, int(span.total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


@dataclass(frozen=True)
class Window:
    """A half-open UTC time window ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for moment in (self.start, self.end):
            if moment.tzinfo is None:
                raise ValueError("Window bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError("Window end must be after its start")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


COMPLETE = "complete"
PARTIAL = "partial"
FAILED = "failed"
#: Of a window's coverage (never of one ingest): read, but holding no event of the window.
EMPTY = "empty"

#: The ``state`` key under which the files source keeps the local files that could not be
#: read, ``{absolute path: why}``, until a later ingest reads them: while one is listed,
#: the coverage of local files is ``partial``, whatever ingest came after.
UNREADABLE_FILES = "files.unreadable"


@dataclass
class Coverage:
    """What one ingest read: one row per source/account/region (SPEC §4)."""

    source: str
    account: str = ""
    region: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    events: int = 0
    skipped: int = 0
    status: str = COMPLETE
    detail: str = ""

    def as_json(self) -> dict:
        return {
            "source": self.source,
            "account": self.account,
            "region": self.region,
            "window": {
                "start": _iso(self.window_start),
                "end": _iso(self.window_end),
            },
            "status": self.status,
            "events": self.events,
            "skipped": self.skipped,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class FileProblem:
    """One input that could not be read; ``name`` is the path or s3:// URL."""

    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


@dataclass
class BatchResult:
    """What storing one batch did."""

    files: int = 0
    records: int = 0
    new_events: int = 0
    digests: int = 0
    skipped: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    #: Per input: records without a usable ``eventTime`` (none is missing from a window
    #: unnoticed: sources count them in their coverage).
    untimed: dict[str, int] = field(default_factory=dict)
    #: Per input: records not stored because another record with their ``eventID`` but
    #: other content was kept (stored before, or first in the batch).
    conflicts: dict[str, int] = field(default_factory=dict)

    def add(self, other: "BatchResult") -> "BatchResult":
        self.files += other.files
        self.records += other.records
        self.new_events += other.new_events
        self.digests += other.digests
        self.skipped += other.skipped
        self.problems.extend(other.problems)
        for mine, theirs in ((self.untimed, other.untimed), (self.conflicts, other.conflicts)):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        return self


def record_notes(untimed: int, conflicts: int) -> list[str]:
    """What a coverage detail says of records read but not placed in time, or not kept."""
    notes = []
    if untimed:
        notes.append(f"{untimed} records without a usable eventTime (in no window)")
    if conflicts:
        notes.append(f"{conflicts} records dropped: their eventID was kept with other content (the first kept)")
    return notes


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
