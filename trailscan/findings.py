"""The findings model and its SPEC §7 JSON document.

:mod:`trailscan.explain` fills a :class:`FindingsReport`; :func:`findings_document` is
its ``trailscan.findings/v1`` document (exactly the keys of SPEC §7), which everything
that shows findings to people or programs renders (:mod:`trailscan.report`).  A finding's
cause must be a row of the cause table (:mod:`trailscan.explain.causes`) of its kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from trailscan.explain.causes import CAUSES, KINDS, cause

__all__ = [
    "CAUSES",
    "KINDS",
    "READ_STATUSES",
    "RESOLUTIONS",
    "SCHEMA",
    "STATUSES",
    "Candidate",
    "Change",
    "CoverageRow",
    "Finding",
    "FindingsReport",
    "Workload",
    "findings_document",
    "iso",
]

SCHEMA = "trailscan.findings/v1"
#: Coverage statuses of a source/account/region read completely (``empty``: it holds no
#: event of the window); the others are ``partial`` and ``failed``.
READ_STATUSES = ("complete", "empty")
#: How a finding's workload was identified (SPEC §7, §10): ``not_eks`` is a caller shown to
#: be no EKS workload (an IAM user, a session one started …), left out unless asked for.
RESOLUTIONS = ("exact", "by_role", "node", "unknown", "not_eks")
#: Whether a finding still fails (SPEC §10): ``stopped`` when a change to its configuration
#: came after its last failure and no failure followed it.
STATUSES = ("ongoing", "stopped")


def iso(moment: datetime | None) -> str | None:
    """``2026-11-28T06:00:00Z``: a moment in UTC, to the second (None stays None)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Candidate:
    """A service account that may be the workload (its annotation names the role)."""

    cluster: str | None
    namespace: str
    service_account: str

    def as_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "namespace": self.namespace, "service_account": self.service_account}

    def __str__(self) -> str:
        return f"{self.namespace}/{self.service_account}"


@dataclass(frozen=True)
class Workload:
    """Which pod's identity failed, and how sure we are (``resolution``, SPEC §7)."""

    cluster: str | None = None
    namespace: str | None = None
    service_account: str | None = None
    resolution: str = "unknown"
    candidates: tuple[Candidate, ...] = ()

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"unknown workload resolution {self.resolution!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "namespace": self.namespace,
            "service_account": self.service_account,
            "resolution": self.resolution,
            "candidates": [c.as_json() for c in self.candidates],
        }

    def label(self) -> str:
        """A short name for tables: ``ns/sa``, ``node role``, ``not an EKS workload``, the
        candidates, or ``unknown``."""
        if self.namespace and self.service_account:
            return f"{self.namespace}/{self.service_account}"
        if self.resolution == "node":
            return "node role"
        if self.resolution == "not_eks":
            return "not an EKS workload"
        if self.candidates:
            return "one of " + ", ".join(str(c) for c in self.candidates)
        return "unknown"


@dataclass(frozen=True)
class Change:
    """A successful call that changed what decides a finding's access (SPEC §10): who
    changed what, when.  The document it set is kept for judging, never shown here."""

    event_time: datetime
    event_name: str
    event_source: str
    actor: str | None
    target: str | None
    event_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "event_time": iso(self.event_time),
            "event_name": self.event_name,
            "event_source": self.event_source,
            "actor": self.actor,
            "target": self.target,
            "event_id": self.event_id,
        }


#: A change as the findings document, `trailscan changes` and the notebook show it.
CHANGE_FIELDS = tuple(f.name for f in fields(Change))


@dataclass(frozen=True)
class Finding:
    """Failed events grouped by (kind, cause, workload, role, action), with why and what to do.

    ``action`` (the IAM action, e.g. ``ec2:DescribeSnapshots``), ``account`` and
    ``event_ids`` (every event of the finding, latest group first) are kept for grouping,
    rendering and reports; the SPEC §7 document does not carry them.
    """

    kind: str
    cause: str
    workload: Workload
    principal_arn: str | None
    role_arn: str | None
    event_source: str
    event_name: str
    action: str
    error_code: str | None
    error_message: str | None
    count: int
    first_seen: datetime
    last_seen: datetime
    regions: tuple[str, ...]
    sample_event_ids: tuple[str, ...]
    explanation: str
    fix: str
    account: str | None = None
    event_ids: tuple[str, ...] = ()
    #: ``ongoing`` or ``stopped`` (a later change, and no failure after it).
    status: str = "ongoing"
    #: The changes to its role, provider, association, policies, SCPs …, oldest first.
    changes: tuple[Change, ...] = ()
    #: When the configuration it was judged against was set (None: today's inventory).
    policy_as_of: datetime | None = None
    #: The change its failures began after, and the one they stopped after (if any).
    began_after: Change | None = None
    stopped_after: Change | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown finding status {self.status!r}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        try:
            row = cause(self.cause)
        except KeyError:
            raise ValueError(f"unknown cause {self.cause!r}") from None
        if row.kind not in (self.kind, "any"):
            raise ValueError(f"cause {self.cause} is not a cause of {self.kind} findings")

    @property
    def fix_summary(self) -> str:
        """The fix's first line: what to do, in one sentence."""
        return self.fix.strip().splitlines()[0] if self.fix.strip() else ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "cause": self.cause,
            "workload": self.workload.as_json(),
            "principal_arn": self.principal_arn,
            "role_arn": self.role_arn,
            "event_source": self.event_source,
            "event_name": self.event_name,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "count": self.count,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "regions": list(self.regions),
            "sample_event_ids": list(self.sample_event_ids),
            "explanation": self.explanation,
            "fix": self.fix,
            "status": self.status,
            "changes": [change.as_json() for change in self.changes],
            "policy_as_of": iso(self.policy_as_of),
        }

    @property
    def decisive_change(self) -> str:
        """The change that fixed it, else the one it began after, in a few words ("" for none)."""
        change = self.stopped_after or self.began_after
        if change is None:
            return ""
        verb = "stopped after" if change is self.stopped_after else "began after"
        return change_words(verb, change.event_name, change.target, change.actor, iso(change.event_time))


def change_words(verb: str, event_name: object, target: object, actor: object, event_time: object) -> str:
    """``began after UpdateAssumeRolePolicy on payments-api by arn:…:user/alice at …``: the
    decisive change as the terminal, Markdown and HTML say it."""
    return f"{verb} {event_name} on {target or '?'} by {actor or '?'} at {event_time}"


@dataclass(frozen=True)
class CoverageRow:
    """What was read for the window from one source/account/region."""

    source: str
    account: str
    region: str
    status: str
    events: int
    detail: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "account": self.account,
            "region": self.region,
            "status": self.status,
            "events": self.events,
            "detail": self.detail,
        }


@dataclass
class FindingsReport:
    """Findings over a window, with the coverage they rest on.

    ``notes`` say what the inventory lacked or could not read, and what was left out
    (shown on stderr); ``problems`` name inputs that could not be read during ingest;
    ``left_out`` holds the findings of callers shown to be no EKS workload (``not_eks``),
    left out of ``findings`` unless all principals were asked for; ``window_events``
    counts the events the store holds in the window, failed or not, from every source.
    """

    window_start: datetime | None
    window_end: datetime | None
    coverage: list[CoverageRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    left_out: list[Finding] = field(default_factory=list)
    window_events: int = 0

    @property
    def complete(self) -> bool:
        """Whether the findings speak for the whole window: at least one coverage row,
        every row ``complete`` or ``empty`` (read, holding no event of the window), and at
        least one event in the window — a window without any event proves nothing."""
        return (
            bool(self.coverage)
            and all(row.status in READ_STATUSES for row in self.coverage)
            and self.window_events > 0
        )

    @property
    def failed_events(self) -> int:
        return sum(f.count for f in self.findings)


def findings_document(report: FindingsReport, generated_at: datetime) -> dict[str, Any]:
    """The SPEC §7 document: ``schema``, ``generated_at``, ``window``, ``coverage``, ``findings``."""
    return {
        "schema": SCHEMA,
        "generated_at": iso(generated_at),
        "window": {"start": iso(report.window_start), "end": iso(report.window_end)},
        "coverage": [row.as_json() for row in report.coverage],
        "findings": [finding.as_json() for finding in report.findings],
    }
