"""The findings document as the report reads it, and the report's time helpers.

Everything in :mod:`trailscan.report` reads the findings *document* (``schema:
trailscan.findings/v1``), never the explainer's internals, the way cloudsplaining renders
HTML from its documented JSON results: whatever produced the document, the report shows
the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from trailscan.arn import principal_name
from trailscan.errors import InputError
from trailscan.findings import SCHEMA
from trailscan.model import Window

__all__ = ["SCHEMA", "check_document", "document_window", "workload_label"]


def check_document(document: Any) -> dict:
    """``document`` if it is a SPEC §7 findings document; :class:`InputError` otherwise."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise InputError(f"not a {SCHEMA} findings document (schema: {found!r})")
    if not isinstance(document.get("findings"), list) or not isinstance(document.get("coverage"), list):
        raise InputError(f"the {SCHEMA} document lacks its findings or coverage list")
    return document


def document_window(document: Mapping) -> Window:
    """The document's ``window`` as a :class:`Window`."""
    window = document.get("window") or {}
    start, end = _parse_time(window.get("start")), _parse_time(window.get("end"))
    if start is None or end is None or end <= start:
        raise InputError(f"the findings document has no usable window ({window!r})")
    return Window(start, end)


def workload_label(finding: Mapping) -> str:
    """A short name for a finding's workload: ``cluster/namespace/service-account`` when
    it is known, else what is known (the node, the role, the principal: ``user NAME`` for
    an IAM user, never ``role NAME``)."""
    workload = finding.get("workload") or {}
    cluster = workload.get("cluster")
    namespace, account = workload.get("namespace"), workload.get("service_account")
    if namespace and account:
        return f"{cluster}/{namespace}/{account}" if cluster else f"{namespace}/{account}"
    if workload.get("resolution") == "node":
        what = "node instance role"
    else:
        what = principal_name(finding.get("role_arn")) or principal_name(finding.get("principal_arn")) or "unknown workload"
        if workload.get("resolution") == "not_eks":
            what += " (not an EKS workload)"
    return f"{cluster}: {what}" if cluster else what



def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _utc(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return _utc(moment)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(span: timedelta) -> str:
    """``1 day``, ``36 hours``, ``2.5 hours``, ``30 minutes``, ``3,921.6 days``."""
    seconds = int(span.total_seconds())

    def plural(n: int, unit: str) -> str:
        return f"{n:,} {unit}{'s' if n != 1 else ''}"

    for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600)):
        if seconds >= size and seconds % size == 0:
            return plural(seconds // size, unit)
    for unit, size in (("days", 86400), ("hours", 3600)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.1f} {unit}"
    if seconds >= 60 and seconds % 60 == 0:
        return plural(seconds // 60, "minute")
    return plural(seconds, "second")
