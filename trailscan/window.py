"""Time windows from what people type: ``30m``, ``24h``, ``7d``, ``2w``, ISO 8601, or a datetime.

The one parser of windows: the CLI's ``--since``/``--until`` (through its click type) and
the notebook API both build theirs here.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from trailscan.errors import UsageError
from trailscan.model import Window, utc_now

__all__ = ["EPOCH", "Moment", "is_duration", "make_window", "parse_duration", "parse_moment"]

#: A point in time as trailscan takes it: ``"24h"``/``"7d"`` back from now, ``"now"``,
#: ISO 8601 text (naive means UTC), or a datetime (naive means UTC).
Moment = str | datetime

#: Where a window without a start begins.
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def is_duration(value: object) -> bool:
    """Whether *value* is a duration such as ``24h`` (rather than a point in time)."""
    return isinstance(value, str) and _DURATION.match(value) is not None


def parse_duration(text: str) -> timedelta:
    """``"30m"`` → 30 minutes; units s, m, h, d, w."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{text!r} is not a duration", "use a number and a unit: 30m, 24h, 7d, 2w")
    try:
        return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    except OverflowError:
        raise UsageError(f"{text.strip()!r} is too long a duration", "CloudTrail keeps no event older than 1970") from None


def parse_moment(value: Moment, now: datetime | None = None) -> datetime:
    """A point in time in UTC: a duration back from ``now`` (``24h``), ``now``, ISO 8601
    (``2026-11-27``, ``2026-11-27T06:00``, ``…Z`` or with an offset; naive means UTC),
    or a datetime (naive means UTC)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    now = now or utc_now()
    text = str(value)
    if text.strip().lower() == "now":
        return now
    if _DURATION.match(text):
        span = parse_duration(text)
        try:
            return now - span
        except OverflowError:
            raise UsageError(f"{text.strip()!r} reaches back before year 1", "use a shorter duration") from None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is neither a duration nor a date",
            "use 24h, 7d, or an ISO time such as 2026-11-27T06:00:00Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise UsageError(f"{text!r} is out of range") from None


def make_window(since: Moment | None, until: Moment | None = None, *, now: datetime | None = None) -> Window | None:
    """The half-open UTC window ``[since, until)``.

    ``until`` defaults to now; ``since`` to the beginning (1970); neither given means no
    window at all (None: everything stored).  A duration for ``since`` counts back from
    ``until``; a duration for ``until`` counts back from now.
    """
    if since is None and until is None:
        return None
    now = now or utc_now()
    end = parse_moment(until, now) if until is not None else now
    start = EPOCH if since is None else parse_moment(since, end if is_duration(since) else now)
    if start >= end:
        raise UsageError(f"the window starts ({start:%Y-%m-%dT%H:%M:%SZ}) at or after it ends ({end:%Y-%m-%dT%H:%M:%SZ})")
    return Window(start, end)
