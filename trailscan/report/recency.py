"""Whether a finding is still failing: one rule for the terminal, the page and Markdown.

A finding is still failing when its last refused call is within :data:`STILL_FAILING` of
the moment it is judged at — the window's end, or the time the findings were made when
the window ends later (``--until`` in the future, or none).  CloudTrail delivers within
about 5 minutes, and a workload that retries fails again within minutes, so 15 minutes
tells "failing now" from "failed earlier and stopped" (:data:`trailscan.model.QUIET`, which
also decides when a change is said to have stopped failures). A finding whose ``status`` is
``stopped`` (a change followed its last failure, and no failure followed the change) is not
still failing, however recent.
"""

from __future__ import annotations

from datetime import datetime

from trailscan.model import QUIET, as_utc, judged_at, span_words

__all__ = ["STILL_FAILING", "ago", "judged_at", "still_failing"]

STILL_FAILING = QUIET


def still_failing(last_seen: datetime, at: datetime, status: str | None = None) -> bool:
    """Whether a finding last seen at *last_seen*, of *status*, is still failing at *at*."""
    return status != "stopped" and as_utc(at) - as_utc(last_seen) <= STILL_FAILING


def ago(last_seen: datetime, at: datetime) -> str:
    """``3 min ago``, ``5 h ago``, ``2 d ago``."""
    return f"{span_words(as_utc(at) - as_utc(last_seen))} ago"
