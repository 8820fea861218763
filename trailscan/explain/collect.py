"""Collecting: the window's failed calls, grouped in SQL, with the sessions behind them.

:func:`collect_failures` lets DuckDB do the heavy work — the named detection queries
(``failed_web_identity``, ``failed_pod_identity``, ``denied_calls``) joined with
``failure_context`` and grouped in SQL, plus the ``minted_sessions`` that link an access
key back to the pod it was issued to — so Python only sees one row per group of alike
failures, whatever the size of the store.  ``minted_sessions``, asked again for the
caller keys it returns, walks role chains (a session minted by ``sts:AssumeRole`` with
another session's key) back to where they start, one filtered scan a hop.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trailscan.explain.changes import LOOKBACK, collect_changes
from trailscan.explain.coverage import measure_coverage
from trailscan.findings import CoverageRow
from trailscan.identity import parse_web_identity
from trailscan.layers import SessionPolicies
from trailscan.model import Window
from trailscan.queries import QueryBook, load_queries
from trailscan.store import Store

__all__ = [
    "CHAIN_LIMIT",
    "MINT_LOOKBACK",
    "AcceptedWebIdentity",
    "FailureGroup",
    "Failures",
    "MintedSession",
    "Uniform",
    "collect_failures",
    "json_value",
    "minted_sessions",
    "utc",
]

#: Role sessions last at most 12 hours: a call in the window may use credentials minted
#: that long before it, so minted sessions are read from this far back.
MINT_LOOKBACK = timedelta(hours=12)

#: The most sessions a role chain is followed through.  A session assumed with another
#: role session's credentials (role chaining) lasts at most one hour, so each hop before
#: the last reaches back one hour more.
CHAIN_LIMIT = 5
_CHAIN_HOP = timedelta(hours=1)

_AGGREGATES = """
    count(*) AS events,
    min(hits.event_time) AS first_seen,
    max(hits.event_time) AS last_seen,
    list(DISTINCT hits.aws_region) FILTER (WHERE hits.aws_region IS NOT NULL) AS regions,
    list(hits.event_id ORDER BY hits.event_time DESC, hits.event_id) AS event_ids,
    list(hits.event_time ORDER BY hits.event_time DESC, hits.event_id) AS event_times,
    list(hits.aws_region ORDER BY hits.event_time DESC, hits.event_id) AS event_regions"""

_AGGREGATED = frozenset({"events", "first_seen", "last_seen", "regions", "event_ids", "event_times", "event_regions"})


def _uniform(expression: str, name: str) -> str:
    """A per-group extra that says whether the group's events agree on *expression*: the
    value, how many events have one, and whether all of those are equal (see :class:`Uniform`)."""
    return (f"struct_pack(value := min({expression}), events := count({expression}), "
            f"same := min({expression}) IS NOT DISTINCT FROM max({expression})) AS {name}")


#: Per kind: the detection query, the columns that make failures alike (grouped on), and
#: per-group extras.
_GROUPINGS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "irsa": (
        "failed_web_identity",
        (
            "hits.account_id",
            "hits.subject",
            "hits.identity_provider",
            "hits.role_arn",
            "hits.error_code",
            "hits.error_message",
            "ctx.principal_id",
        ),
        ("arg_max(hits.user_agent, hits.event_time) AS user_agent",),
    ),
    "pod_identity": (
        "failed_pod_identity",
        (
            "hits.account_id",
            "hits.event_source",
            "hits.event_name",
            "hits.caller_role_arn",
            "hits.cluster",
            "hits.role_arn",
            "hits.error_code",
            "hits.error_message",
            "CAST(ctx.session_tags AS VARCHAR) AS session_tags",
            "ctx.invoked_by",
        ),
        ("arg_max(hits.caller_arn, hits.event_time) AS caller_arn",),
    ),
    "denied_call": (
        "denied_calls",
        (
            "hits.account_id",
            "hits.event_source",
            "hits.event_name",
            "hits.identity_type",
            "hits.identity_arn",
            "hits.session_issuer_arn",
            "hits.access_key_id",
            "hits.error_code",
            "hits.error_message",
            "hits.user_agent",
            "ctx.ec2_role_delivery",
            "ctx.invoked_by",
        ),
        (
            "arg_max(CAST(ctx.resources AS VARCHAR), hits.event_time) AS resources",
            # What a policy evaluation's request context reads from the records: one value when
            # every event of the group has the same (see Uniform), never a grouping key.
            *(_uniform(f"ctx.{column}", column) for column in (
                "source_ip", "vpc_endpoint_id", "request_text", "token_issued", "principal_id")),
            _uniform("CAST(ctx.tls AS VARCHAR)", "tls"),
        ),
    ),
}


@dataclass(frozen=True)
class FailureGroup:
    """Failed events of one kind that are alike in everything the explanation reads."""

    kind: str
    fields: Mapping[str, Any]
    events: int
    first_seen: datetime
    last_seen: datetime
    regions: tuple[str, ...]
    event_ids: tuple[str, ...]
    #: Each event's time and region, newest first, as ``event_ids`` (empty: not read).
    event_times: tuple[datetime, ...] = ()
    event_regions: tuple[str | None, ...] = ()

    def get(self, name: str) -> Any:
        return self.fields.get(name)

    def split(self, moments: Iterable[datetime]) -> list[FailureGroup]:
        """The group cut at *moments* (changes): the events at or after one and before the
        next are a group of their own, oldest first.  Unsplit without the events' times."""
        inside = sorted({m for m in moments if self.first_seen < m <= self.last_seen})
        if not inside or len(self.event_times) != len(self.event_ids):
            return [self]
        epochs: dict[int, list[int]] = {}
        for index, moment in enumerate(self.event_times):
            epochs.setdefault(bisect.bisect_right(inside, utc(moment)), []).append(index)
        return [self._part(indexes) for _, indexes in sorted(epochs.items())]

    def _part(self, indexes: list[int]) -> FailureGroup:
        times = [utc(self.event_times[i]) for i in indexes]
        regions = self.event_regions if len(self.event_regions) == len(self.event_ids) else ()
        fields = dict(self.fields)
        for name, value in self.fields.items():  # a per-group Uniform holding for every event holds for these
            if isinstance(value, Mapping) and "same" in value and int(value.get("events") or 0) == self.events:
                fields[name] = {**value, "events": len(indexes)}
        return replace(
            self, fields=fields, events=len(indexes), first_seen=min(times), last_seen=max(times),
            regions=tuple(sorted({regions[i] for i in indexes if regions[i]})) if regions else self.regions,
            event_ids=tuple(self.event_ids[i] for i in indexes), event_times=tuple(times),
            event_regions=tuple(regions[i] for i in indexes) if regions else (),
        )


@dataclass(frozen=True)
class Uniform:
    """What a group's events say of one field: ``value`` when every event has that one,
    :attr:`absent` when none has one, else neither (the events differ)."""

    value: Any
    events_with: int
    total: int
    same: bool

    @classmethod
    def of(cls, group: FailureGroup, name: str) -> Uniform:
        found = group.get(name)
        if isinstance(found, Mapping) and "same" in found:
            return cls(found.get("value"), int(found.get("events") or 0), group.events, bool(found.get("same")))
        # A grouping key: every event of the group has this value (or none has one).
        return cls(found, group.events if found is not None else 0, group.events, True)

    @property
    def absent(self) -> bool:
        return self.events_with == 0

    @property
    def known(self) -> Any:
        """The one value every event has, else None."""
        return self.value if self.same and self.events_with == self.total and self.total else None


@dataclass(frozen=True)
class MintedSession:
    """Credentials STS issued, and to whom: a pod by web identity (``subject``), a pod by
    Pod Identity (``session_tags``, ``caller_invoked_by`` ``pods.eks.amazonaws.com``), a
    person by SAML, or whoever called ``AssumeRole`` (the ``caller_…`` fields: their
    identity, and the access key their own session can be looked up by)."""

    access_key_id: str
    event_name: str
    role_arn: str | None
    session_arn: str | None
    subject: str | None
    principal_id: str | None
    identity_provider: str | None
    session_tags: Any
    minted_at: datetime
    caller_type: str | None = None
    caller_arn: str | None = None
    caller_issuer_arn: str | None = None
    caller_access_key_id: str | None = None
    caller_invoked_by: str | None = None
    caller_ec2_role_delivery: str | None = None


@dataclass(frozen=True)
class AcceptedWebIdentity:
    """A service account whose web-identity token STS accepted in the window: evidence of
    which cluster (``issuer``) has it, and which role (``role_arn``) it is annotated with."""

    issuer: str
    subject: str
    role_arn: str | None
    sessions: int


@dataclass
class Failures:
    """What :func:`collect_failures` read: groups of failed events, the sessions minted for
    the access keys they used, the web identities STS accepted, the coverage of the window and
    how many events it holds."""

    window_start: datetime | None
    window_end: datetime | None
    groups: list[FailureGroup] = field(default_factory=list)
    minted: dict[str, MintedSession] = field(default_factory=dict)
    coverage: list[CoverageRow] = field(default_factory=list)
    accepted: list[AcceptedWebIdentity] = field(default_factory=list)
    #: Events the store holds in the window, failed or not, from every source.
    window_events: int = 0
    #: The STS calls that issued the refused calls' credentials (their session policies), by access key.
    issued: dict[str, SessionPolicies] = field(default_factory=dict)
    #: The successful change events of the window and the day before it (trailscan.explain.changes).
    changes: list[Any] = field(default_factory=list)
    #: Events of us-east-1 (where IAM and Organizations record) the store holds in the window,
    #: counted when a source's coverage does not say its regions (local files); else None.
    global_events: int | None = None
    #: Events the store holds in the day before the window, where the change a failure began
    #: after may be (none: that day was not read); None when not counted.
    lookback_events: int | None = None

    @property
    def events(self) -> int:
        return sum(group.events for group in self.groups)

    def role_arns(self) -> set[str]:
        """Every role these failures involve: requested, assumed, or the caller's (for live IAM)."""
        arns: set[str] = set()
        for group in self.groups:
            for name in ("role_arn", "session_issuer_arn", "caller_role_arn"):
                value = group.get(name)
                if isinstance(value, str) and value.startswith("arn:") and ":role/" in value:
                    arns.add(value)
        used = {g.get("access_key_id") for g in self.groups}
        arns.update(m.role_arn for key, m in self.minted.items() if m.role_arn and key in used)
        return arns


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def collect_failures(store: Store, window: Window | None = None, *, book: QueryBook | None = None) -> Failures:
    """Read the window's failed calls from *store*, grouped in SQL, with their context.

    Every event the three detection queries return lands in exactly one group.  Cost
    grows with the failures, not with the store: each query is one filtered scan, and
    only the groups cross into Python.
    """
    book = book or load_queries()
    bounds = {"since": window.start if window else None, "until": window.end if window else None}
    context = book["failure_context"]
    groups: list[FailureGroup] = []
    for kind, (query_name, keys, extras) in _GROUPINGS.items():
        query = book[query_name]
        columns = ",\n    ".join((*keys, *extras))
        sql = (
            f"WITH hits AS ({query.typed_sql()}),\nctx AS ({context.typed_sql()})\n"
            f"SELECT\n    {columns},{_AGGREGATES}\n"
            f"FROM hits LEFT JOIN ctx ON ctx.event_id = hits.event_id\nGROUP BY ALL"
        )
        params = {**query.bind(bounds), **context.bind({**bounds, "event_ids": None})}
        names, rows = store.query(sql, params)
        for row in rows:
            record = dict(zip(names, row))
            groups.append(
                FailureGroup(
                    kind=kind,
                    fields={k: v for k, v in record.items() if k not in _AGGREGATED},
                    events=int(record["events"]),
                    first_seen=utc(record["first_seen"]),
                    last_seen=utc(record["last_seen"]),
                    regions=tuple(sorted(r for r in record["regions"] or [] if r)),
                    event_ids=tuple(record["event_ids"] or ()),
                    event_times=tuple(utc(t) for t in record["event_times"] or ()),
                    event_regions=tuple(record["event_regions"] or ()),
                )
            )
    keys = sorted({g.get("access_key_id") for g in groups if g.kind == "denied_call" and g.get("access_key_id")})
    minted: dict[str, MintedSession] = {}
    if keys:
        minted = minted_sessions(store, keys, window, bounds["until"], book=book)
    measured = measure_coverage(store, window, book=book)
    failures = Failures(measured.start, measured.end, groups, minted, measured.rows,
                        accepted=_accepted(store, book, bounds), window_events=measured.events)
    failures.issued = _issued(store, book, keys, window)
    failures.changes = collect_changes(store, window, book=book) if groups else []
    if groups and window is not None:
        _, counted = store.query("SELECT count(*) FROM events WHERE event_time >= $since AND event_time < $until",
                                 {"since": window.start - LOOKBACK, "until": window.start})
        failures.lookback_events = int(counted[0][0])
    if groups and any(not row.region for row in measured.rows):
        _, counted = store.query(
            "SELECT count(*) FROM events WHERE aws_region = 'us-east-1' AND ($since IS NULL OR event_time >= $since) "
            "AND ($until IS NULL OR event_time < $until)", {"since": bounds["since"], "until": bounds["until"]})
        failures.global_events = int(counted[0][0])
    return failures

def _issued(store: Store, book: QueryBook, keys: list[str], window: Window | None) -> dict[str, SessionPolicies]:
    """The STS calls that issued the credentials of the refused calls (their session policies)."""
    if not keys:
        return {}
    query = book["issued_sessions"]
    since = window.start - MINT_LOOKBACK if window else None
    names, rows = store.query(query.typed_sql(), query.bind(
        {"since": since, "until": window.end if window else None, "access_keys": keys}))
    found: dict[str, SessionPolicies] = {}
    for row in rows:
        record = dict(zip(names, row))
        arns = json_value(record["policy_arns"])
        found[record["access_key_id"]] = SessionPolicies(
            access_key_id=record["access_key_id"],
            event_id=record["event_id"],
            event_name=record["event_name"],
            policy=record["policy"],
            policy_arns=tuple(str(item.get("arn") or item.get("Arn")) for item in arns or [] if isinstance(item, Mapping)
                              and (item.get("arn") or item.get("Arn"))) if isinstance(arns, list) else (),
            tags=json_value(record["tags"]),
        )
    return found


def minted_sessions(
    store: Store,
    keys: list[str],
    window: Window | None = None,
    until: datetime | None = None,
    *,
    book: QueryBook | None = None,
) -> dict[str, MintedSession]:
    """The sessions of *keys*, and of the keys those sessions were minted with (role
    chains), one hop a query: at most :data:`CHAIN_LIMIT` hops, each key asked once, so a
    cycle ends.  One filtered scan a hop; most failures need one."""
    query = (book or load_queries())["minted_sessions"]
    since = window.start - MINT_LOOKBACK - (CHAIN_LIMIT - 1) * _CHAIN_HOP if window else None
    minted: dict[str, MintedSession] = {}
    asked: set[str] = set()
    wanted = sorted(set(keys))
    for _ in range(CHAIN_LIMIT):
        if not wanted:
            break
        asked.update(wanted)
        names, rows = store.query(query.typed_sql(), query.bind({"since": since, "until": until, "access_keys": wanted}))
        for row in rows:
            record = dict(zip(names, row))
            minted[record["access_key_id"]] = MintedSession(
                access_key_id=record["access_key_id"],
                event_name=record["event_name"],
                role_arn=record["role_arn"],
                session_arn=record["session_arn"],
                subject=record["subject"],
                principal_id=record["principal_id"],
                identity_provider=record["identity_provider"],
                session_tags=json_value(record["session_tags"]),
                minted_at=utc(record["event_time"]),
                caller_type=record["caller_type"],
                caller_arn=record["caller_arn"],
                caller_issuer_arn=record["caller_issuer_arn"],
                caller_access_key_id=record["caller_access_key_id"],
                caller_invoked_by=record["caller_invoked_by"],
                caller_ec2_role_delivery=record["caller_ec2_role_delivery"],
            )
        wanted = sorted({
            m.caller_access_key_id for m in minted.values()
            if m.event_name == "AssumeRole" and m.caller_access_key_id and m.caller_access_key_id not in asked
        })
    return minted


def _accepted(store: Store, book: QueryBook, bounds: Mapping[str, Any]) -> list[AcceptedWebIdentity]:
    query = book["web_identity_sessions"]
    names, rows = store.query(query.typed_sql(), query.bind(dict(bounds)))
    found = []
    for row in rows:
        record = dict(zip(names, row))
        web = parse_web_identity(
            user_name=record["subject"], principal_id=record["principal_id"], identity_provider=record["identity_provider"]
        )
        if web.issuer and web.subject:
            found.append(AcceptedWebIdentity(web.issuer, web.subject, record["role_arn"], int(record["sessions"])))
    return found


def json_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value
