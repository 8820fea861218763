"""Time windows from what people type: ``30m``, ``24h``, ``7d``, ``2w`` or ISO 8601."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from trailscan.errors import UsageError
from trailscan.model import Window, utc_now

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``"30m"`` → 30 minutes; units s, m, h, d, w."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) == 0:
        raise UsageError(f"{text!r} is not a duration", "use a number and a unit: 30m, 24h, 7d, 2w")
    return timedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """A point in time: a duration back from ``now`` (``24h``), ``now``, or ISO 8601
    (``2026-11-27``, ``2026-11-27T06:00``, ``…Z`` or with an offset; naive means UTC)."""
    now = now or utc_now()
    if text.strip().lower() == "now":
        return now
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is neither a duration nor a date",
            "use 24h, 7d, or an ISO time such as 2026-11-27T06:00:00Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def make_window(since: str, until: str | None = None, now: datetime | None = None) -> Window:
    """The window ``[since, until)``; ``until`` defaults to now."""
    now = now or utc_now()
    end = parse_moment(until, now) if until else now
    start = parse_moment(since, end if _DURATION.match(since) else now)
    if start >= end:
        raise UsageError(f"the window starts ({start:%Y-%m-%dT%H:%M:%SZ}) at or after it ends ({end:%Y-%m-%dT%H:%M:%SZ})")
    return Window(start, end)
