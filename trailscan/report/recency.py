"""Whether a finding is still failing: one rule for the terminal, the page and Markdown.

A finding is still failing when its last refused call is within :data:`STILL_FAILING` of
the moment it is judged at — the window's end, or the time the findings were made when
the window ends later (``--until`` in the future, or none).  CloudTrail delivers within
about 5 minutes, and a workload that retries fails again within minutes, so 15 minutes
tells "failing now" from "failed earlier and stopped". A finding whose ``status`` is
``stopped`` (a change followed its last failure, and no failure followed the change) is not
still failing, however recent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = ["STILL_FAILING", "ago", "judged_at", "still_failing"]

STILL_FAILING = timedelta(minutes=15)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def judged_at(window_end: datetime | None, now: datetime) -> datetime:
    """The moment "still failing" is judged at: the window's end, or *now* if earlier."""
    return min(_utc(window_end), _utc(now)) if window_end is not None else _utc(now)


def still_failing(last_seen: datetime, at: datetime, status: str | None = None) -> bool:
    """Whether a finding last seen at *last_seen*, of *status*, is still failing at *at*."""
    return status != "stopped" and _utc(at) - _utc(last_seen) <= STILL_FAILING


def ago(last_seen: datetime, at: datetime) -> str:
    """``3 min ago``, ``5 h ago``, ``2 d ago``."""
    minutes = max(0, int((_utc(at) - _utc(last_seen)).total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes // 60} h ago"
    return f"{minutes // 1440} d ago"
