"""Correlate and explain: from failed CloudTrail events to workloads, causes and fixes.

The pipeline's judgement stage.  :func:`collect_failures` lets DuckDB do the heavy
work — the named detection queries (``failed_web_identity``, ``failed_pod_identity``,
``denied_calls``) joined with ``failure_context`` and grouped in SQL, plus the
``minted_sessions`` that link an access key back to the pod it was issued to — so
Python only sees one row per group of alike failures.  :func:`explain_failures` then
resolves each group's workload (SPEC §7 ``exact``, ``by_role``, ``node``,
``unknown``), assigns the first cause of SPEC §7 that holds, writes the explanation
and the fix, and merges groups into findings by (kind, cause, workload, role,
action).  :func:`explain_store` does both.

Causes are asserted only on evidence: what AWS's message says, or what the inventory
(:mod:`trailscan.inventory`, :mod:`trailscan.kube`) positively shows.  Whatever could not
be checked is named in the explanation, and a finding with no established cause is
``UNEXPLAINED`` — never a guess.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trailscan.errors import InputError, UsageError
from trailscan.findings import Candidate, CoverageRow, Finding, FindingsReport, Workload
from trailscan.identity import (
    POD_IDENTITY_SERVICE,
    ServiceAccountRef,
    credential_support,
    is_node_session,
    issuer_id,
    parse_user_agent,
    parse_web_identity,
    pod_identity_tags,
    provider_arn_for,
    role_arn_of_session,
    session_name_of,
)
from trailscan.inventory import IAM, KUBERNETES, Inventory, Role
from trailscan.kube import DEFAULT_AUDIENCE, ServiceAccount
from trailscan.model import Window
from trailscan.policy import (
    Denial,
    analyze_pod_identity_trust,
    analyze_web_identity_trust,
    evaluate,
    iam_action_for,
    load_policy,
    merge_irsa_statement,
    parse_denial_message,
    pod_identity_trust_policy,
)
from trailscan.queries import QueryBook, load_queries
from trailscan.store import Store

__all__ = [
    "MINT_LOOKBACK",
    "FailureGroup",
    "Failures",
    "MintedSession",
    "collect_failures",
    "explain_failures",
    "explain_store",
]

#: Role sessions last at most 12 hours: a call in the window may use credentials minted
#: that long before it, so minted sessions are read from this far back.
MINT_LOOKBACK = timedelta(hours=12)
#: How many event ids a finding carries as samples.
SAMPLES = 5

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
POD_IDENTITY_ACTION = "eks-auth:AssumeRoleForPodIdentity"
WORKER_NODE_POLICY = "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_TRUST_MESSAGE = "EKS does not have permissions to assume the associated role"


# --------------------------------------------------------------------------
# Collecting: SQL does the filtering and grouping
# --------------------------------------------------------------------------

_AGGREGATES = """
    count(*) AS events,
    min(hits.event_time) AS first_seen,
    max(hits.event_time) AS last_seen,
    list(DISTINCT hits.aws_region) FILTER (WHERE hits.aws_region IS NOT NULL) AS regions,
    list(hits.event_id ORDER BY hits.event_time DESC) AS event_ids"""

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
        ),
        (),
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

    def get(self, name: str) -> Any:
        return self.fields.get(name)


@dataclass(frozen=True)
class MintedSession:
    """Credentials STS issued to a pod: by web identity (``subject``) or by Pod Identity (``tags``)."""

    access_key_id: str
    event_name: str
    role_arn: str | None
    session_arn: str | None
    subject: str | None
    principal_id: str | None
    identity_provider: str | None
    session_tags: Any
    minted_at: datetime


@dataclass
class Failures:
    """What :func:`collect_failures` read: groups of failed events, the sessions minted for
    the access keys they used, and the coverage of the window."""

    window_start: datetime | None
    window_end: datetime | None
    groups: list[FailureGroup] = field(default_factory=list)
    minted: dict[str, MintedSession] = field(default_factory=dict)
    coverage: list[CoverageRow] = field(default_factory=list)

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
        arns.update(m.role_arn for m in self.minted.values() if m.role_arn)
        return arns


def _utc(moment: datetime | None) -> datetime | None:
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
                    fields={k: v for k, v in record.items() if k not in ("events", "first_seen", "last_seen", "regions", "event_ids")},
                    events=int(record["events"]),
                    first_seen=_utc(record["first_seen"]),
                    last_seen=_utc(record["last_seen"]),
                    regions=tuple(sorted(r for r in record["regions"] or [] if r)),
                    event_ids=tuple(record["event_ids"] or ()),
                )
            )
    keys = sorted({g.get("access_key_id") for g in groups if g.kind == "denied_call" and g.get("access_key_id")})
    minted: dict[str, MintedSession] = {}
    if keys:
        query = book["minted_sessions"]
        since = window.start - MINT_LOOKBACK if window else None
        names, rows = store.query(
            query.typed_sql(), query.bind({"since": since, "until": bounds["until"], "access_keys": keys})
        )
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
                session_tags=_json(record["session_tags"]),
                minted_at=_utc(record["event_time"]),
            )
    coverage = _coverage(store, book, window)
    start, end = (window.start, window.end) if window else _store_span(store)
    return Failures(start, end, groups, minted, coverage)


def _coverage(store: Store, book: QueryBook, window: Window | None) -> list[CoverageRow]:
    query = book["window_coverage"]
    names, rows = store.query(
        query.typed_sql(), query.bind({"since": window.start if window else None, "until": window.end if window else None})
    )
    found = []
    for row in rows:
        record = dict(zip(names, row))
        status, detail = record["status"], record["detail"] or ""
        start, end = _utc(record["window_start"]), _utc(record["window_end"])
        if window and start and end and (start > window.start or end < window.end) and status == "complete":
            # The ingest read only part of the window asked about: fail closed.
            status = "partial"
            read = f"read {start:%Y-%m-%dT%H:%M:%SZ} – {end:%Y-%m-%dT%H:%M:%SZ} only"
            detail = f"{detail}; {read}" if detail else read
        found.append(
            CoverageRow(
                source=record["source"],
                account=record["account"],
                region=record["region"],
                status=status,
                events=int(record["events"] or 0),
                detail=detail,
                window_start=start,
                window_end=end,
            )
        )
    return found


def _store_span(store: Store) -> tuple[datetime | None, datetime | None]:
    _, rows = store.query("SELECT min(event_time), max(event_time) FROM events")
    first, last = rows[0] if rows else (None, None)
    return _utc(first), _utc(last)


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value


# --------------------------------------------------------------------------
# Explaining
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    """One group's outcome, before groups are merged into findings."""

    cause: str
    workload: Workload
    role_arn: str | None
    principal_arn: str | None
    action: str
    explanation: str
    fix: str


def explain_store(store: Store, inventory: Inventory | None = None, *, window: Window | None = None) -> FindingsReport:
    """Findings for the window's failed calls in *store*, explained against *inventory*
    (None: CloudTrail alone — causes that need the inventory stay ``UNEXPLAINED``)."""
    return explain_failures(collect_failures(store, window), inventory)


def explain_failures(failures: Failures, inventory: Inventory | None = None) -> FindingsReport:
    """Resolve, explain and group :class:`Failures` into a :class:`FindingsReport`."""
    explainer = _Explainer(inventory or Inventory(), minted=failures.minted, has_inventory=inventory is not None)
    merged: dict[tuple, list[tuple[FailureGroup, _Verdict]]] = {}
    for group in failures.groups:
        verdict = explainer.explain(group)
        key = (group.kind, verdict.cause, verdict.workload, verdict.role_arn, verdict.action)
        merged.setdefault(key, []).append((group, verdict))
    findings = [_finding(members) for members in merged.values()]
    findings.sort(
        key=lambda f: (
            f.workload.cluster or "~",
            f.workload.namespace or "~",
            f.workload.service_account or "~",
            f.kind,
            f.cause,
            f.role_arn or "",
            f.action,
        )
    )
    notes = list(inventory.notes) if inventory else []
    if inventory:
        for part, reasons in sorted(inventory.gaps.items()):
            notes.extend(f"inventory ({part}) incomplete: {reason}" for reason in reasons)
    return FindingsReport(failures.window_start, failures.window_end, list(failures.coverage), findings, notes)


def _finding(members: list[tuple[FailureGroup, _Verdict]]) -> Finding:
    members.sort(key=lambda item: item[0].last_seen, reverse=True)
    latest_group, verdict = members[0]
    event_ids = [event_id for group, _ in members for event_id in group.event_ids]
    return Finding(
        kind=latest_group.kind,
        cause=verdict.cause,
        workload=verdict.workload,
        principal_arn=verdict.principal_arn,
        role_arn=verdict.role_arn,
        event_source=latest_group.get("event_source") or _event_source(latest_group.kind),
        event_name=latest_group.get("event_name") or _event_name(latest_group.kind),
        action=verdict.action,
        error_code=latest_group.get("error_code"),
        error_message=latest_group.get("error_message"),
        count=sum(group.events for group, _ in members),
        first_seen=min(group.first_seen for group, _ in members),
        last_seen=latest_group.last_seen,
        regions=tuple(sorted({r for group, _ in members for r in group.regions})),
        sample_event_ids=tuple(event_ids[:SAMPLES]),
        event_ids=tuple(event_ids),
        explanation=verdict.explanation,
        fix=verdict.fix,
        account=latest_group.get("account_id"),
    )


def _event_source(kind: str) -> str:
    return "sts.amazonaws.com" if kind == "irsa" else ""


def _event_name(kind: str) -> str:
    return "AssumeRoleWithWebIdentity" if kind == "irsa" else ""


# -- small helpers --------------------------------------------------------------------


def _role_key(arn: str | None) -> tuple[str, str] | None:
    """(account, name) of a role ARN, path ignored; None for anything else."""
    if not arn:
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam" or not parts[5].startswith("role/"):
        return None
    return parts[4], parts[5].rsplit("/", 1)[-1]


def _same_role(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    ka, kb = _role_key(a), _role_key(b)
    return ka == kb if ka and kb else a == b


def _role_name(arn: str | None) -> str:
    return arn.rsplit("/", 1)[-1] if arn else "ROLE"


def _account_of(arn: str | None) -> str | None:
    parts = (arn or "").split(":", 5)
    return parts[4] if len(parts) == 6 and parts[0] == "arn" and parts[4] else None


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2)


def _sh(value: Any) -> str:
    """One shell word for a fix's command line, quoted only when needed (an ordinary ARN or
    name is printed as is).  The names come from CloudTrail, that is from callers: a web-
    identity subject or a requested role ARN may hold ``$(…)``, ``;`` or a newline, and
    fixes are made to be pasted into a terminal."""
    return shlex.quote(str(value))


def _line(value: Any) -> str:
    """``value`` for a comment or a prose line of a fix: on one line, so it cannot start a
    command line of its own."""
    return " ".join(str(value).split())


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def _unchecked_text(items: Sequence[str]) -> str:
    return "Not checked: " + "; ".join(items) + "." if items else ""


def _inventory_hint(items: Sequence[str]) -> list[tuple[str, str]]:
    """The options that would let trailscan check what it could not: (option, how to get it)."""
    hints: dict[str, str] = {}
    text = " ".join(items)
    if "IAM" in text or "trust" in text or "role" in text or "polic" in text:
        hints["--iam FILE"] = "aws iam get-account-authorization-details > iam.json  (or AWS credentials: live IAM)"
    if "OIDC" in text:
        hints["--iam FILE"] = hints.get("--iam FILE", "aws iam get-account-authorization-details > iam.json")
        hints["--iam FILE (OIDC providers)"] = "aws iam list-open-id-connect-providers > oidc.json"
    if "service account" in text:
        hints["--service-accounts FILE"] = "kubectl get serviceaccounts -A -o json > sa.json  (or --kube-context NAME)"
    if "cluster" in text or "node" in text or "association" in text:
        hints["--cluster NAME"] = "describes the EKS cluster live: OIDC issuer, node roles, Pod Identity associations"
    return list(hints.items())


class _Explainer:
    def __init__(self, inventory: Inventory, *, minted: Mapping[str, MintedSession], has_inventory: bool) -> None:
        self.inv = inventory
        self.minted = minted
        self.has_inventory = has_inventory
        self.node_roles = inventory.node_role_arns()

    # -- what the inventory holds ----------------------------------------------------

    @property
    def has_iam(self) -> bool:
        return bool(self.inv.roles) or IAM in self.inv.complete or bool(self.inv.iam_accounts) or bool(self.inv.missing_roles)

    @property
    def has_service_accounts(self) -> bool:
        return bool(self.inv.service_accounts) or KUBERNETES in self.inv.complete

    def cluster_name(self, issuer: str | None) -> str | None:
        if not issuer:
            return None
        cluster = self.inv.cluster_for_issuer(issuer)
        return cluster.name if cluster else issuer_id(issuer)

    def service_accounts_of(self, cluster: str | None) -> list[ServiceAccount] | None:
        """The service accounts loaded for *cluster*; None when we hold none for it."""
        if not self.has_service_accounts:
            return None
        accounts = self.inv.service_accounts
        labels = {sa.cluster for sa in accounts if sa.cluster}
        if cluster and cluster in labels:
            return [sa for sa in accounts if sa.cluster in (cluster, "")]
        if not labels:
            return list(accounts)
        known = {c.name for c in self.inv.clusters}
        if len(labels) == 1 and not (labels & known and cluster in known):
            # One cluster's accounts, labelled by a kube context name: take them as this cluster's.
            return list(accounts)
        return None

    def candidates_for_role(self, role_arn: str | None) -> tuple[Candidate, ...]:
        if not role_arn:
            return ()
        found: list[Candidate] = []
        for sa in self.inv.service_accounts:
            if _same_role(sa.role_arn, role_arn):
                found.append(Candidate(sa.cluster or None, sa.namespace, sa.name))
        for cluster in self.inv.clusters:
            for association in cluster.pod_identity_associations:
                if _same_role(association.role_arn, role_arn):
                    found.append(Candidate(cluster.name, association.namespace, association.service_account))
        return tuple(dict.fromkeys(found))

    def node_cluster(self, role_arn: str | None) -> str | None:
        for cluster in self.inv.clusters:
            if any(_same_role(role_arn, arn) for arn in cluster.node_role_arns):
                return cluster.name
        return None

    def role(self, arn: str | None) -> Role | None:
        return self.inv.role(arn) if arn else None

    # -- dispatch ---------------------------------------------------------------------

    def explain(self, group: FailureGroup) -> _Verdict:
        if group.kind == "irsa":
            return self.irsa(group)
        if group.kind == "pod_identity":
            return self.pod_identity(group)
        return self.denied_call(group)

    # -- IRSA ---------------------------------------------------------------------------

    def irsa(self, group: FailureGroup) -> _Verdict:
        web = parse_web_identity(
            user_name=group.get("subject"),
            principal_id=group.get("principal_id"),
            identity_provider=group.get("identity_provider"),
        )
        sa_ref = web.service_account
        role_arn = group.get("role_arn")
        code = group.get("error_code") or ""
        message = group.get("error_message") or ""
        cluster = self.cluster_name(web.issuer)
        known = self.inv.cluster_for_issuer(web.issuer) if web.issuer else None
        cluster_for_fix = known.name if known else None
        workload = Workload(
            cluster=cluster,
            namespace=sa_ref.namespace if sa_ref else None,
            service_account=sa_ref.name if sa_ref else None,
            resolution="exact" if sa_ref else "unknown",
        )
        who = str(sa_ref) if sa_ref else (web.subject or "the web identity")
        role_account = _account_of(role_arn) or group.get("account_id")
        audience = web.audience
        issuer = web.issuer
        provider_arn = web.provider_arn if (web.provider_arn or "").startswith("arn:") else None
        if not provider_arn and issuer and role_account:
            provider_arn = provider_arn_for(issuer, role_account)

        def verdict(cause: str, explanation: str, fix: str) -> _Verdict:
            return _Verdict(cause, workload, role_arn, None, WEB_IDENTITY_ACTION, _sentence(explanation), fix)

        lowered = message.lower()
        # 1-3: the error code alone says it.
        if code == "ValidationError" or (role_arn and not _ROLE_ARN.match(role_arn)) or "arn is invalid" in lowered:
            return verdict(
                "INVALID_ROLE_ARN",
                f"{who} asked STS for the role {role_arn!r}, which is not a valid role ARN "
                f"({message or code}).",
                self._annotate_fix(sa_ref, "arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME",
                                   "Set the service account's role-arn annotation to a valid role ARN, then restart its pods."),
            )
        if code in ("ExpiredTokenException", "ExpiredToken"):
            return verdict(
                "TOKEN_EXPIRED",
                f"The service-account token {who} presented had expired ({message or code}). The kubelet "
                "refreshes the projected token; an SDK that read it once, a stopped clock or a token copied "
                "out of the pod keeps presenting the old one.",
                "Make the workload re-read its projected token instead of caching it.\n\n"
                "Use an SDK version that reloads AWS_WEB_IDENTITY_TOKEN_FILE on every refresh, check the node's "
                "clock (chrony), and never copy the token out of the pod; then restart the pods:\n"
                + self._restart(sa_ref),
            )
        if code in ("IDPCommunicationError", "IDPCommunicationErrorException"):
            return verdict(
                "IDP_UNREACHABLE",
                f"STS could not fetch the OIDC discovery document or keys of {issuer or 'the token issuer'} "
                f"to check {who}'s token ({message or code}).",
                "Retry: STS reaches the EKS OIDC issuer over the internet, and this error is usually transient.\n\n"
                f"If it persists, check that https://{issuer or 'ISSUER'}/.well-known/openid-configuration answers "
                "from the internet, and see the AWS Health Dashboard for STS and EKS in the region.",
            )
        if code == "InvalidIdentityToken" and "no openidconnect provider found" in lowered:
            return verdict(
                "OIDC_PROVIDER_MISSING",
                f"IAM in account {role_account} has no OIDC identity provider for the cluster's issuer "
                f"{issuer or ''} ({message}), so STS cannot trust any token of that cluster.",
                self._oidc_provider_fix(cluster_for_fix, issuer, audience),
            )
        if code == "InvalidIdentityToken" and "thumbprint" in lowered:
            return verdict(
                "OIDC_THUMBPRINT_MISMATCH",
                f"The certificate of the issuer {issuer or ''} does not match the thumbprints configured on its "
                f"IAM OIDC provider ({message}).",
                self._thumbprint_fix(provider_arn, issuer),
            )
        checked: list[str] = []
        unchecked: list[str] = []
        also: list[str] = []
        # 4: the OIDC provider.
        if issuer and role_account:
            status = self.inv.provider_status(issuer, role_account)
            if status == "missing":
                return verdict(
                    "OIDC_PROVIDER_MISSING",
                    f"IAM in account {role_account} has no OIDC identity provider for the cluster's issuer "
                    f"{issuer}, so STS refuses every token of that cluster.",
                    self._oidc_provider_fix(cluster_for_fix, issuer, audience),
                )
            if status == "found":
                checked.append(f"the OIDC provider for {issuer} exists")
            else:
                unchecked.append("no OIDC provider list: whether the cluster's OIDC provider exists")
        # 5-7: the service account.
        sa: ServiceAccount | None = None
        if sa_ref:
            accounts = self.service_accounts_of(cluster)
            if accounts is None:
                unchecked.append(f"no service accounts of cluster {cluster or '?'}: whether {sa_ref} exists and which role it names")
            else:
                sa = next((a for a in accounts if (a.namespace, a.name) == (sa_ref.namespace, sa_ref.name)), None)
                if sa is None:
                    return verdict(
                        "SA_NOT_FOUND",
                        f"The token names the service account {sa_ref}, which the cluster does not have "
                        f"(among {len(accounts)} service accounts loaded); a pod running as a deleted or misspelt "
                        "service account still presents a token for it.",
                        self._sa_not_found_fix(sa_ref, role_arn),
                    )
                if not sa.role_arn:
                    return verdict(
                        "SA_NOT_ANNOTATED",
                        f"The service account {sa_ref} exists but has no eks.amazonaws.com/role-arn annotation, yet its "
                        f"pod asked for {role_arn} (AWS_ROLE_ARN set by hand, or the annotation was removed "
                        "after the pod started).",
                        self._annotate_fix(sa_ref, role_arn, f"Annotate {sa_ref} with the role, then restart its pods."),
                    )
                if role_arn and not _same_role(sa.role_arn, role_arn):
                    return verdict(
                        "ROLE_MISMATCH",
                        f"The pod asked for {role_arn}, but its service account {sa_ref} is annotated with "
                        f"{sa.role_arn}: the annotation changed after the pod started, or the pod overrides AWS_ROLE_ARN.",
                        self._role_mismatch_fix(sa_ref, requested=role_arn, annotated=sa.role_arn),
                    )
                checked.append(f"{sa_ref} exists and is annotated with this role")
                audience = audience or sa.audience
        audience = audience or DEFAULT_AUDIENCE
        # 8: the role.
        role = self.role(role_arn)
        if role is None:
            status = self.inv.role_status(role_arn) if role_arn else "unknown"
            if status == "missing":
                return verdict(
                    "ROLE_NOT_FOUND",
                    f"The role {role_arn} that {who} asked for does not exist in account {role_account}.",
                    self._role_not_found_fix(role_arn, provider_arn, sa_ref, audience),
                )
            unchecked.append(
                f"no IAM inventory for {role_arn}: whether the role exists, and its trust policy"
                if not self.has_iam else f"the role {role_arn} is not in the IAM inventory (not looked up): its trust policy"
            )
        elif provider_arn and web.subject:
            # 9-12: the trust policy.
            trust = analyze_web_identity_trust(
                role.trust_policy, provider_arn=provider_arn, subject=web.subject, audience=audience
            )
            if trust.cause and trust.cause != "UNEXPLAINED":
                return verdict(
                    trust.cause,
                    f"The trust policy of {role.name} refuses {who}'s token: {trust.detail}",
                    self._trust_fix(role, provider_arn, sa_ref, audience, trust.cause),
                )
            if trust.cause == "UNEXPLAINED":
                also.append(trust.detail)
            else:
                checked.append(f"the trust policy of {role.name} admits {web.subject} with audience {audience}")
                provider = self.inv.provider_for_issuer(issuer, role_account) if issuer else None
                if provider and provider.details_known and audience not in provider.client_ids:
                    return verdict(
                        "TRUST_AUDIENCE_MISMATCH",
                        f"The token's audience {audience!r} is not among the client ids of the OIDC provider "
                        f"{provider.arn} ({', '.join(provider.client_ids) or 'none'}), so STS refuses it before "
                        "the trust policy is read.",
                        f"Add the audience to the OIDC provider's client ids.\n\n"
                        f"aws iam add-client-id-to-open-id-connect-provider --open-id-connect-provider-arn "
                        f"{_sh(provider.arn)} --client-id {_sh(audience)}",
                    )
        elif not web.subject:
            unchecked.append("the token's subject is not in the event: trust conditions")
        return verdict(
            "UNEXPLAINED",
            f"STS refused {who}'s token for {role_arn or 'the role'} ({code}: {message or 'no message'}), and no "
            "cause could be established. "
            + (f"Checked: {'; '.join(checked)}. " if checked else "")
            + (" ".join(_sentence(a) for a in also) + " " if also else "")
            + (_unchecked_text(unchecked) if unchecked else
               "What is left is outside the inventory: an SCP or RCP on sts:AssumeRoleWithWebIdentity, or a "
               "policy already fixed since."),
            self._unexplained_fix(unchecked, default=(
                "Look for a service control or resource control policy denying sts:AssumeRoleWithWebIdentity "
                "in the role's account; if the trust policy was changed since, the failures have stopped.")),
        )

    # -- EKS Pod Identity -----------------------------------------------------------------

    def pod_identity(self, group: FailureGroup) -> _Verdict:
        source, name = group.get("event_source") or "", group.get("event_name") or ""
        message = group.get("error_message") or ""
        code = group.get("error_code") or ""
        role_arn = group.get("role_arn")
        caller_role = group.get("caller_role_arn")
        tags = pod_identity_tags(_json(group.get("session_tags")))
        cluster = (tags.cluster if tags else None) or group.get("cluster")
        if tags and tags.workload:
            workload = Workload(cluster, tags.namespace, tags.service_account, "exact")
        else:
            workload = Workload(cluster=cluster)
        denial = parse_denial_message(message)
        is_agent_call = source == "eks-auth.amazonaws.com"
        action = POD_IDENTITY_ACTION if is_agent_call else iam_action_for(source or "sts.amazonaws.com", name or "AssumeRole")
        unchecked: list[str] = []

        if is_agent_call and not role_arn:
            workload, role_arn, candidates_note = self._association_candidates(cluster, workload)
        else:
            candidates_note = ""

        def verdict(cause: str, explanation: str, fix: str, *, principal: str | None = None) -> _Verdict:
            return _Verdict(cause, workload, role_arn if cause != "POD_IDENTITY_AGENT_DENIED" else caller_role,
                            principal or group.get("caller_arn"), action, _sentence(explanation), fix)

        # POD_IDENTITY_TRUST: EKS says it, or STS refused pods.eks.amazonaws.com, or the trust policy shows it.
        role = self.role(role_arn)
        trust_verdict = analyze_pod_identity_trust(role.trust_policy) if role else None
        if _TRUST_MESSAGE.lower() in message.lower() or (
            not is_agent_call and denial.action in ("sts:AssumeRole", "sts:TagSession")
            and (denial.principal_arn or "").startswith(POD_IDENTITY_SERVICE)
        ):
            detail = f" {trust_verdict.detail}" if trust_verdict and trust_verdict.cause else ""
            return verdict(
                "POD_IDENTITY_TRUST",
                f"EKS Pod Identity could not assume {role_arn or 'the role associated with the pod'}"
                f"{' in cluster ' + cluster if cluster else ''}: the role's trust policy does not let "
                f"{POD_IDENTITY_SERVICE} call sts:AssumeRole and sts:TagSession ({message or code}).{detail}"
                + (f" {candidates_note}" if candidates_note else ""),
                self._pod_trust_fix(role, role_arn, cluster, tags),
            )
        if trust_verdict and trust_verdict.cause:
            return verdict(
                "POD_IDENTITY_TRUST",
                f"The trust policy of {role.name} does not let EKS Pod Identity assume it: {trust_verdict.detail}",
                self._pod_trust_fix(role, role_arn, cluster, tags),
            )
        # POD_IDENTITY_AGENT_DENIED: the node role may not call eks-auth:AssumeRoleForPodIdentity.
        if is_agent_call and (
            (denial.action or "").lower() == POD_IDENTITY_ACTION.lower() or denial.reason is not None
        ):
            return verdict(
                "POD_IDENTITY_AGENT_DENIED",
                f"The Pod Identity agent on the node runs with the node role {caller_role}, which may not call "
                f"{POD_IDENTITY_ACTION}" + (f" ({self._denial_phrase(denial)})" if denial.reason else f" ({message})"),
                self._agent_fix(caller_role),
            )
        if is_agent_call and caller_role:
            node_role = self.role(caller_role)
            if node_role is not None:
                decision = evaluate(node_role.policies, POD_IDENTITY_ACTION, None)
                if not decision.allowed and node_role.policies_complete:
                    return verdict(
                        "POD_IDENTITY_AGENT_DENIED",
                        f"No policy of the node role {node_role.name} allows {POD_IDENTITY_ACTION}, which the Pod "
                        "Identity agent calls for every pod",
                        self._agent_fix(caller_role),
                    )
            else:
                unchecked.append(f"no IAM inventory for the node role {caller_role}: whether it may call {POD_IDENTITY_ACTION}")
        if role is None and role_arn:
            unchecked.append(f"no IAM inventory for {role_arn}: its trust policy")
        elif role_arn is None:
            unchecked.append("the associated role is not in the event: its trust policy (pass --cluster to read the associations)")
        return verdict(
            "UNEXPLAINED",
            f"EKS Pod Identity failed{' in cluster ' + cluster if cluster else ''} ({code}: {message or 'no message'}), "
            "and no cause could be established. " + _unchecked_text(unchecked),
            self._unexplained_fix(unchecked, default="Check the cluster's Pod Identity associations and their roles' trust policies."),
        )

    def _association_candidates(self, cluster: str | None, workload: Workload) -> tuple[Workload, str | None, str]:
        """For a failed AssumeRoleForPodIdentity (no role in the event): the associations of the
        cluster whose role's trust refuses Pod Identity."""
        found = self.inv.cluster(cluster) if cluster else None
        if not found or not found.pod_identity_associations:
            return workload, None, ""
        failing = []
        for association in found.pod_identity_associations:
            role = self.role(association.role_arn)
            if role is not None and analyze_pod_identity_trust(role.trust_policy).cause:
                failing.append(association)
        if not failing:
            return workload, None, ""
        candidates = tuple(Candidate(found.name, a.namespace, a.service_account) for a in failing)
        roles = {a.role_arn for a in failing}
        role_arn = next(iter(roles)) if len(roles) == 1 else None
        note = "Associations whose role refuses Pod Identity: " + ", ".join(
            f"{a.namespace}/{a.service_account} → {a.role_arn}" for a in failing
        ) + "."
        return Workload(cluster=found.name, resolution="by_role" if role_arn else "unknown", candidates=candidates), role_arn, note

    # -- denied calls ------------------------------------------------------------------------

    def denied_call(self, group: FailureGroup) -> _Verdict:
        source, name = group.get("event_source") or "", group.get("event_name") or ""
        try:
            action = iam_action_for(source, name)
        except InputError:
            action = f"{source.split('.')[0]}:{name}"
        identity_arn = group.get("identity_arn")
        role_arn = group.get("session_issuer_arn") or role_arn_of_session(identity_arn)
        message = group.get("error_message") or ""
        code = group.get("error_code") or ""
        denial = parse_denial_message(message)
        workload, minted_role = self._denied_workload(group, role_arn)
        role_arn = role_arn or minted_role
        caller = workload.label() if workload.resolution == "exact" else (
            f"the node role {_role_name(role_arn)}" if workload.resolution == "node"
            else (f"the role {_role_name(role_arn)}" if role_arn else (identity_arn or "the caller"))
        )
        resource = denial.resource

        def verdict(cause: str, explanation: str, fix: str) -> _Verdict:
            return _Verdict(cause, workload, role_arn, identity_arn, action, _sentence(explanation), fix)

        said = f" AWS says: {self._denial_phrase(denial)}." if denial.reason else ""
        if workload.resolution == "node":
            return verdict(
                "NODE_ROLE_FALLBACK",
                f"{action} was called with the node's instance role {_role_name(role_arn)}: the pod never got "
                f"credentials of its own and its SDK fell back to the node's. {self._sdk_sentence(group.get('user_agent'))}"
                + said,
                self._node_fallback_fix(group.get("user_agent"), action, workload.cluster),
            )
        # What AWS's message says decides first.
        if denial.reason == "explicit_deny":
            return verdict(
                "EXPLICIT_DENY",
                f"{caller} was refused {action}{' on ' + resource if resource else ''} by an explicit deny in "
                f"{self._policy_kind(denial.policy_type)}{' ' + denial.policy_arn if denial.policy_arn else ''}.",
                self._explicit_deny_fix(denial, action, role_arn, resource),
            )
        if denial.reason == "no_boundary":
            return verdict(
                "BOUNDARY_DENY",
                f"{caller} may not call {action}: the role's permissions boundary does not allow it, whatever its "
                "policies grant.",
                self._boundary_fix(self.role(role_arn), role_arn, action, resource),
            )
        if denial.reason in ("no_resource_policy", "no_vpce") or code == "VpceAccessDenied":
            which = "VPC endpoint policy" if denial.reason == "no_vpce" or code == "VpceAccessDenied" else "resource policy"
            return verdict(
                "RESOURCE_POLICY_DENY",
                f"The {which} of {resource or 'the resource'} does not allow {caller} {action}.",
                self._resource_policy_fix(which, role_arn or identity_arn, action, resource),
            )
        if denial.reason in ("no_scp", "no_rcp", "no_session_policy"):
            return verdict(
                "EXPLICIT_DENY",
                f"{caller} was refused {action} by {self._policy_kind(denial.policy_type)}: none of them allows the "
                "action, so it is denied however the role's own policies read.",
                self._explicit_deny_fix(denial, action, role_arn, resource),
            )
        if denial.reason == "no_identity_policy":
            return verdict(
                "MISSING_PERMISSION",
                f"No identity-based policy of {self._whose(role_arn, identity_arn, workload)} allows {action}"
                f"{' on ' + resource if resource else ''}, so AWS refused the call.",
                self._missing_permission_fix(role_arn, identity_arn, action, resource),
            )
        # The message is silent (EC2's Client.UnauthorizedOperation): the role's policies decide.
        unchecked: list[str] = []
        found: list[str] = []
        role = self.role(role_arn)
        if role is not None:
            decided = self._decide_from_policies(role, action, resource, caller)
            if not isinstance(decided, str):
                cause, explanation, fix = decided
                return verdict(cause, explanation, fix)
            found.append(decided)
        elif role_arn and self.inv.role_status(role_arn) == "missing":
            found.append(f"the role {role_arn} no longer exists in IAM")
        elif role_arn:
            unchecked.append(f"no IAM inventory for {role_arn}: its identity policies and permissions boundary")
        else:
            unchecked.append(f"the caller {identity_arn or 'unknown'} is not a role: its policies")
        decode = (
            f"\n\nEC2 encodes why; decode it with:\naws sts decode-authorization-message --encoded-message "
            f"{_sh(denial.encoded_message)} --query DecodedMessage --output text"
            if denial.encoded_message else ""
        )
        return verdict(
            "UNEXPLAINED",
            f"{caller} was refused {action} ({code}) and AWS's message does not say why. "
            + (" ".join(_sentence(text[0].upper() + text[1:]) for text in found) + " " if found else "")
            + _unchecked_text(unchecked),
            self._unexplained_fix(unchecked, default="Look for a service control, resource control or resource policy "
                                  f"denying {action}, or a session policy passed when the role was assumed.") + decode,
        )

    def _denied_workload(self, group: FailureGroup, role_arn: str | None) -> tuple[Workload, str | None]:
        """The workload behind a denied call, and the role of its minted session."""
        minted = self.minted.get(group.get("access_key_id") or "")
        if minted is not None:
            if minted.event_name == "AssumeRoleWithWebIdentity":
                web = parse_web_identity(
                    user_name=minted.subject, principal_id=minted.principal_id, identity_provider=minted.identity_provider
                )
                sa_ref = web.service_account
                if sa_ref:
                    return Workload(self.cluster_name(web.issuer), sa_ref.namespace, sa_ref.name, "exact"), minted.role_arn
            tags = pod_identity_tags(minted.session_tags)
            if tags and tags.workload:
                return Workload(tags.cluster, tags.namespace, tags.service_account, "exact"), minted.role_arn
        session = session_name_of(group.get("identity_arn"))
        if is_node_session(ec2_role_delivery=group.get("ec2_role_delivery"), session_name=session) or (
            role_arn and any(_same_role(role_arn, arn) for arn in self.node_roles)
        ):
            return Workload(cluster=self.node_cluster(role_arn), resolution="node"), None
        candidates = self.candidates_for_role(role_arn)
        if candidates:
            clusters = {c.cluster for c in candidates}
            cluster = next(iter(clusters)) if len(clusters) == 1 else None
            if len(candidates) == 1:
                only = candidates[0]
                return Workload(cluster, only.namespace, only.service_account, "by_role", candidates), None
            namespaces = {c.namespace for c in candidates}
            namespace = next(iter(namespaces)) if len(namespaces) == 1 else None
            return Workload(cluster, namespace, None, "by_role", candidates), None
        return Workload(), None

    def _decide_from_policies(self, role: Role, action: str, resource: str | None, caller: str) -> tuple[str, str, str] | str:
        """The cause the role's own policies establish, or a sentence saying why they establish none."""
        identity = evaluate(role.policies, action, resource)
        boundary = (
            evaluate([(f"permissions boundary {role.boundary_arn or ''}".strip(), role.permissions_boundary)], action, resource)
            if role.permissions_boundary is not None else None
        )
        where = f" on {resource}" if resource else ""
        if identity.effect == "explicit_deny":
            statements = "; ".join(ref.describe() for ref in identity.matched)
            return (
                "EXPLICIT_DENY",
                (f"{caller} was refused {action}{where}: {statements} of the role {role.name} explicitly denies it, "
                "and an explicit deny always wins."),
                (f"Narrow or remove the Deny in {statements}.\n\nIt denies {action} for {role.arn}; an explicit deny "
                "cannot be overridden by any Allow."),
            )
        if boundary is not None and boundary.effect == "explicit_deny":
            return (
                "EXPLICIT_DENY",
                (f"{caller} was refused {action}{where}: the permissions boundary {role.boundary_arn} of {role.name} "
                "explicitly denies it."),
                f"Change the Deny in the permissions boundary {role.boundary_arn}, or attach another boundary.",
            )
        missing = identity.effect == "implicit_deny" and not identity.conditional and role.policies_complete
        if boundary is not None and not boundary.allowed and not boundary.conditional:
            also = " No identity policy of the role allows it either." if missing else ""
            return (
                "BOUNDARY_DENY",
                (f"{caller} may not call {action}{where}: the permissions boundary {role.boundary_arn} of {role.name} "
                f"does not allow it, whatever the role's policies grant.{also}"),
                self._boundary_fix(role, role.arn, action, resource)
                + ("\n\n" + self._missing_permission_fix(role.arn, None, action, resource) if missing else ""),
            )
        if missing:
            unread = f" (its permissions boundary {role.boundary_arn} could not be read)" if role.boundary_arn and boundary is None else ""
            return (
                "MISSING_PERMISSION",
                (f"No identity-based policy of {self._whose(role.arn, None, None)} allows {action}{where}, so AWS "
                f"refused the call (its message did not say why; the role's policies were evaluated{unread})."),
                self._missing_permission_fix(role.arn, None, action, resource),
            )
        if identity.effect == "implicit_deny" and identity.conditional:
            refs = "; ".join(ref.describe() for ref, _ in identity.conditional)
            return f"{refs} of {role.name} allow {action} only under conditions that could not be evaluated from CloudTrail"
        if identity.effect == "implicit_deny":
            return f"no policy read of {role.name} allows {action}, but some were not read: {', '.join(role.unresolved)}"
        if boundary is not None and boundary.conditional and not boundary.allowed:
            return f"the permissions boundary of {role.name} allows {action} only under conditions that could not be evaluated"
        return (
            f"the policies of {role.name} allow {action}{where}: the refusal comes from a policy outside the inventory "
            "(SCP, RCP, resource or session policy)"
        )

    # -- sentences ---------------------------------------------------------------------------

    @staticmethod
    def _whose(role_arn: str | None, identity_arn: str | None, workload: Workload | None) -> str:
        if not role_arn:
            return identity_arn or "the caller"
        used = f" (used by {workload.label()})" if workload is not None and workload.resolution in ("exact", "by_role") else ""
        return f"the role {_role_name(role_arn)}{used}"

    @staticmethod
    def _policy_kind(policy_type: str | None) -> str:
        return {
            "identity": "an identity-based policy",
            "scp": "a service control policy (AWS Organizations)",
            "rcp": "a resource control policy (AWS Organizations)",
            "boundary": "the permissions boundary",
            "session": "the session policy",
            "resource": "the resource-based policy",
            "vpce": "the VPC endpoint policy",
        }.get(policy_type or "", "a policy AWS does not name")

    def _denial_phrase(self, denial: Denial) -> str:
        if denial.reason == "explicit_deny":
            return f"an explicit deny in {self._policy_kind(denial.policy_type)}"
        kinds = {
            "no_identity_policy": "no identity-based policy allows it",
            "no_boundary": "the permissions boundary does not allow it",
            "no_session_policy": "the session policy does not allow it",
            "no_resource_policy": "the resource-based policy does not allow it",
            "no_vpce_policy": "the VPC endpoint policy does not allow it",
            "no_scp": "no service control policy allows it",
            "no_rcp": "no resource control policy allows it",
        }
        return kinds.get(denial.reason or "", denial.message)

    @staticmethod
    def _sdk_sentence(user_agent: str | None) -> str:
        sdk = parse_user_agent(user_agent)
        # The literal user agent (clipped) often names the application: worth showing.
        seen = f' (user agent "{user_agent[:160]}{"…" if len(user_agent) > 160 else ""}")' if user_agent else ""
        if sdk is None:
            return f"The user agent names no AWS SDK{seen}, so whether it could use pod credentials is unknown."
        support = credential_support(sdk)
        parts = []
        for label, can, minimum in (
            ("IRSA (web identity)", support.irsa, support.irsa_minimum),
            ("EKS Pod Identity", support.pod_identity, support.pod_identity_minimum),
        ):
            if can is None:
                parts.append(f"whether it can use {label} credentials is not known")
            elif can:
                parts.append(f"it can use {label} credentials")
            else:
                parts.append(f"it is too old for {label} credentials (needs {minimum} or later)")
        verdict = "; ".join(parts)
        if support.irsa is False and support.pod_identity is False:
            verdict += ": upgrading the SDK is the fix"
        return f"The caller is {sdk}{seen}: {verdict}."

    # -- fixes -------------------------------------------------------------------------------

    @staticmethod
    def _restart(sa_ref: ServiceAccountRef | None) -> str:
        ns = sa_ref.namespace if sa_ref else "NAMESPACE"
        return (
            f"kubectl rollout restart deployment -n {_sh(ns)} DEPLOYMENT   "
            f"# each workload that runs as {_line(sa_ref or 'the service account')}"
        )

    def _annotate_fix(self, sa_ref: ServiceAccountRef | None, role_arn: str | None, summary: str) -> str:
        ns, name = (sa_ref.namespace, sa_ref.name) if sa_ref else ("NAMESPACE", "SERVICE_ACCOUNT")
        annotation = _sh(f"eks.amazonaws.com/role-arn={role_arn}")
        return (
            f"{summary}\n\n"
            f"kubectl annotate serviceaccount -n {_sh(ns)} {_sh(name)} {annotation} --overwrite\n"
            + self._restart(sa_ref)
        )

    def _role_mismatch_fix(self, sa_ref: ServiceAccountRef, *, requested: str, annotated: str) -> str:
        annotation = _sh(f"eks.amazonaws.com/role-arn={requested}")
        return (
            f"Restart the pods of {_line(sa_ref)} so they use the annotated role {_line(_role_name(annotated))}, or "
            f"annotate the service account with {_line(_role_name(requested))} if that is the right one.\n\n"
            f"# the annotation ({_line(annotated)}) is right: restart, and drop any AWS_ROLE_ARN override from the pod spec\n"
            + self._restart(sa_ref)
            + f"\n# the requested role ({_line(requested)}) is right:\n"
            f"kubectl annotate serviceaccount -n {_sh(sa_ref.namespace)} {_sh(sa_ref.name)} "
            f"{annotation} --overwrite\n"
            + self._restart(sa_ref)
        )

    def _sa_not_found_fix(self, sa_ref: ServiceAccountRef, role_arn: str | None) -> str:
        annotation = _sh(f"eks.amazonaws.com/role-arn={role_arn or 'ROLE_ARN'}")
        return (
            f"Create the service account {_line(sa_ref)} annotated with the role, or point the pod's "
            "serviceAccountName at an existing one.\n\n"
            f"kubectl create serviceaccount -n {_sh(sa_ref.namespace)} {_sh(sa_ref.name)}\n"
            f"kubectl annotate serviceaccount -n {_sh(sa_ref.namespace)} {_sh(sa_ref.name)} "
            f"{annotation} --overwrite\n"
            + self._restart(sa_ref)
        )

    @staticmethod
    def _oidc_provider_fix(cluster: str | None, issuer: str | None, audience: str | None) -> str:
        name = _sh(cluster or "CLUSTER")
        url = _sh(f"https://{issuer}") if issuer else "$(aws eks describe-cluster --name " + name + " --query cluster.identity.oidc.issuer --output text)"
        return (
            f"Create the IAM OIDC identity provider for the cluster's issuer.\n\n"
            f"eksctl utils associate-iam-oidc-provider --cluster {name} --approve\n"
            f"# or, without eksctl:\n"
            f"aws iam create-open-id-connect-provider --url {url} --client-id-list {_sh(audience or DEFAULT_AUDIENCE)}"
        )

    @staticmethod
    def _thumbprint_fix(provider_arn: str | None, issuer: str | None) -> str:
        host = (issuer or "ISSUER").split("/", 1)[0]
        return (
            "Update the OIDC provider's thumbprint to the issuer's current certificate chain.\n\n"
            f"# the SHA-1 of the last certificate in the chain of {_line(host)}:\n"
            f"openssl s_client -servername {_sh(host)} -showcerts -connect {_sh(host + ':443')} </dev/null 2>/dev/null "
            "| awk '/BEGIN/{c=\"\"} {c=c $0 \"\\n\"} /END/{last=c} END{printf \"%s\", last}' "
            "| openssl x509 -fingerprint -sha1 -noout | tr -d ':' | cut -d= -f2\n"
            f"aws iam update-open-id-connect-provider-thumbprint --open-id-connect-provider-arn "
            f"{_sh(provider_arn or 'PROVIDER_ARN')} --thumbprint-list THUMBPRINT"
        )

    def _role_not_found_fix(self, role_arn: str | None, provider_arn: str | None, sa_ref: ServiceAccountRef | None, audience: str) -> str:
        name = _role_name(role_arn)
        if provider_arn and sa_ref:
            from trailscan.policy import irsa_trust_policy

            trust = _dump(irsa_trust_policy(provider_arn, sa_ref.namespace, sa_ref.name, audience))
            return (
                f"Create the role {_line(name)} with a trust policy for {_line(sa_ref)}, or annotate the service "
                "account with an existing role.\n\n"
                f"aws iam create-role --role-name {_sh(name)} --assume-role-policy-document file://trust.json\n"
                f"# trust.json:\n{trust}"
            )
        return f"Create the role {name}, or point the workload at an existing role."

    def _trust_fix(self, role: Role, provider_arn: str, sa_ref: ServiceAccountRef | None, audience: str, cause: str) -> str:
        if sa_ref is None:
            return (
                f"Change the trust policy of {role.name} so that a statement federating {provider_arn} allows "
                f"{WEB_IDENTITY_ACTION} for this subject and audience."
            )
        fixed = merge_irsa_statement(role.trust_policy, provider_arn, sa_ref.namespace, sa_ref.name, audience)
        what = {
            "TRUST_PROVIDER_MISMATCH": f"federate this cluster's OIDC provider {provider_arn}",
            "TRUST_ACTION_MISSING": f"allow {WEB_IDENTITY_ACTION}",
            "TRUST_SUBJECT_MISMATCH": f"admit {sa_ref.subject}",
            "TRUST_AUDIENCE_MISMATCH": f"admit the audience {audience}",
        }.get(cause, f"admit {sa_ref.subject}")
        return (
            f"Update the trust policy of {role.name} to {what}; other statements are kept.\n\n"
            f"aws iam update-assume-role-policy --role-name {_sh(role.name)} --policy-document file://trust.json\n"
            f"# trust.json:\n{_dump(fixed)}"
        )

    def _pod_trust_fix(self, role: Role | None, role_arn: str | None, cluster: str | None, tags: Any) -> str:
        wanted = pod_identity_trust_policy()
        if role is not None:
            policy = load_policy(role.trust_policy, name=f"trust policy of {role.name}")
            statements = policy["Statement"] if isinstance(policy["Statement"], list) else [policy["Statement"]]
            policy["Statement"] = [*statements, *wanted["Statement"]]
            return (
                f"Let pods.eks.amazonaws.com assume {role.name} with sts:AssumeRole and sts:TagSession; other "
                "statements are kept.\n\n"
                f"aws iam update-assume-role-policy --role-name {_sh(role.name)} --policy-document file://trust.json\n"
                f"# trust.json:\n{_dump(policy)}"
            )
        name = _sh(cluster or "CLUSTER")
        find = f"aws eks list-pod-identity-associations --cluster-name {name}"
        if tags is not None and getattr(tags, "workload", None):
            find += f" --namespace {_sh(tags.namespace)} --service-account {_sh(tags.service_account)}"
        return (
            f"Make the trust policy of {_role_name(role_arn) if role_arn else 'the associated role'} let "
            "pods.eks.amazonaws.com call sts:AssumeRole and sts:TagSession.\n\n"
            + ("" if role_arn else f"# find the role: {find}, then aws eks describe-pod-identity-association --cluster-name {name} --association-id ID\n")
            + f"aws iam update-assume-role-policy --role-name {_sh(_role_name(role_arn) if role_arn else 'ROLE_NAME')} "
            "--policy-document file://trust.json   # keep the role's other statements\n"
            f"# the statement the trust policy needs:\n{_dump(wanted)}"
        )

    @staticmethod
    def _agent_fix(node_role: str | None) -> str:
        name = _role_name(node_role) if node_role else "NODE_ROLE"
        statement = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": POD_IDENTITY_ACTION, "Resource": "*"}],
        }
        return (
            f"Allow the node role {name} to call {POD_IDENTITY_ACTION} (AmazonEKSWorkerNodePolicy includes it).\n\n"
            f"aws iam attach-role-policy --role-name {_sh(name)} --policy-arn {WORKER_NODE_POLICY}\n"
            f"# or an inline policy:\naws iam put-role-policy --role-name {_sh(name)} --policy-name eks-pod-identity-agent "
            f"--policy-document file://policy.json\n# policy.json:\n{_dump(statement)}"
        )

    def _node_fallback_fix(self, user_agent: str | None, action: str, cluster: str | None) -> str:
        sdk = parse_user_agent(user_agent)
        upgrade = ""
        if sdk is not None:
            support = credential_support(sdk)
            if support.irsa is False or support.pod_identity is False:
                wanted = support.irsa_minimum if support.irsa is False else support.pod_identity_minimum
                upgrade = (
                f"\n# first upgrade {_line(sdk.label)} from {_line(sdk.version)} to {wanted} or later: "
                "older versions ignore pod credentials"
            )
        name = _sh(cluster or "CLUSTER")
        return (
            "Give the workload its own role (IRSA or EKS Pod Identity) and grant "
            f"{action} there, not to the node role.{upgrade}\n\n"
            "# IRSA:\n"
            "kubectl annotate serviceaccount -n NAMESPACE SERVICE_ACCOUNT eks.amazonaws.com/role-arn=ROLE_ARN --overwrite\n"
            "kubectl rollout restart deployment -n NAMESPACE DEPLOYMENT\n"
            "# or EKS Pod Identity:\n"
            f"aws eks create-pod-identity-association --cluster-name {name} --namespace NAMESPACE "
            "--service-account SERVICE_ACCOUNT --role-arn ROLE_ARN"
        )

    def _missing_permission_fix(self, role_arn: str | None, identity_arn: str | None, action: str, resource: str | None) -> str:
        statement = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource or "*"}],
        }
        policy_name = _sh("allow-" + action.replace(":", "-"))
        if role_arn:
            command = (
                f"aws iam put-role-policy --role-name {_sh(_role_name(role_arn))} --policy-name {policy_name} "
                "--policy-document file://policy.json"
            )
            who = f"the role {_role_name(role_arn)}"
        elif identity_arn and ":user/" in identity_arn:
            command = (
                f"aws iam put-user-policy --user-name {_sh(identity_arn.rsplit('/', 1)[-1])} --policy-name {policy_name} "
                "--policy-document file://policy.json"
            )
            who = f"the user {identity_arn.rsplit('/', 1)[-1]}"
        else:
            command = "# attach it to the caller's identity policy"
            who = "the caller"
        narrow = "" if resource else " (narrow Resource to the ARNs the workload uses where the action supports it)"
        return f"Allow {action} to {who}{narrow}.\n\n{command}\n# policy.json:\n{_dump(statement)}"

    def _boundary_fix(self, role: Role | None, role_arn: str | None, action: str, resource: str | None) -> str:
        boundary = role.boundary_arn if role is not None and role.boundary_arn else "the role's permissions boundary"
        statement = {"Effect": "Allow", "Action": action, "Resource": resource or "*"}
        return (
            f"Allow {action} in the permissions boundary {boundary} (a boundary caps what any policy of "
            f"{_role_name(role_arn)} can grant).\n\n"
            f"# add this statement to a new default version of {boundary}:\n{_dump(statement)}\n"
            f"aws iam create-policy-version --policy-arn {boundary if boundary.startswith('arn:') else 'BOUNDARY_POLICY_ARN'} "
            "--policy-document file://boundary.json --set-as-default"
        )

    @staticmethod
    def _resource_policy_fix(which: str, principal: str | None, action: str, resource: str | None) -> str:
        statement = {
            "Effect": "Allow",
            "Principal": {"AWS": principal or "ROLE_ARN"},
            "Action": action,
            "Resource": resource or "RESOURCE_ARN",
        }
        return (
            f"Allow the caller in the {which} of {resource or 'the resource'}.\n\n"
            f"# add this statement to the {which}:\n{_dump(statement)}"
        )

    def _explicit_deny_fix(self, denial: Denial, action: str, role_arn: str | None, resource: str | None) -> str:
        kind = self._policy_kind(denial.policy_type)
        target = denial.policy_arn or kind
        where = {
            "scp": "the organization's management account (aws organizations list-policies-for-target --target-id ACCOUNT_ID --filter SERVICE_CONTROL_POLICY)",
            "rcp": "the organization's management account (aws organizations list-policies-for-target --target-id ACCOUNT_ID --filter RESOURCE_CONTROL_POLICY)",
            "boundary": f"aws iam get-role --role-name {_role_name(role_arn)} --query Role.PermissionsBoundary",
            "session": "the code or tool that assumed the role with a session policy (Policy / PolicyArns)",
            "resource": f"the resource policy of {resource or 'the resource'}",
            "vpce": "the VPC endpoint policy (aws ec2 describe-vpc-endpoints)",
            "identity": f"aws iam list-role-policies / list-attached-role-policies --role-name {_role_name(role_arn)}",
        }.get(denial.policy_type or "", "the policies that apply to the call")
        return (
            f"Change {target} so it no longer denies {action} to this caller, or stop calling it.\n\n"
            f"Find it in {where}. An explicit deny cannot be overridden by any Allow."
        )

    @staticmethod
    def _unexplained_fix(unchecked: Sequence[str], *, default: str) -> str:
        hints = _inventory_hint(unchecked) if unchecked else []
        if hints:
            options = ", ".join(dict.fromkeys(option.split(" (")[0] for option, _ in hints))
            lines = "\n".join(f"{option}: {how}" for option, how in hints)
            return f"Run again with the inventory trailscan lacked: {options}.\n\n{lines}"
        return default


# --------------------------------------------------------------------------
# Investigating: ingest → inventory → explain, as `trailscan since` and `findings` run it
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryRequest:
    """Where the inventory comes from (SPEC §5).  Nothing given: CloudTrail alone.

    ``live_iam``: read the roles the failures involve through boto3 — ``None`` (default)
    does so when no ``iam_files`` are given and AWS credentials are configured.
    ``clusters`` are described live (``describe_cluster``, node groups, Pod Identity
    associations) in ``regions`` (default: the session's region).
    """

    service_account_files: tuple[str, ...] = ()
    kube_context: str | None = None
    iam_files: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    live_iam: bool | None = None


@dataclass(frozen=True)
class IngestRequest:
    """What ``trailscan since`` reads: ``source`` ``files`` (``paths``), ``s3`` (``bucket``,
    ``prefix``, ``org_id``) or ``lookup``; ``None`` picks s3 when a bucket is given, else lookup."""

    source: str | None = None
    paths: tuple[str, ...] = ()
    bucket: str | None = None
    prefix: str = ""
    org_id: str | None = None
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    quick: bool = False

    @property
    def chosen_source(self) -> str:
        if self.source:
            return self.source
        if self.paths:
            return "files"
        return "s3" if self.bucket else "lookup"


def aws_session() -> Any:
    """A ``boto3.Session`` from standard AWS configuration (see :func:`trailscan.aws.default_session`)."""
    from trailscan.aws import default_session

    return default_session()


def has_aws_credentials(session: Any) -> bool:
    """Whether standard AWS configuration yields credentials (never raises)."""
    from botocore.exceptions import BotoCoreError

    try:
        return session.get_credentials() is not None
    except (BotoCoreError, OSError, ValueError):  # a broken profile means "none", not a crash
        return False


def load_inventory(
    request: InventoryRequest, *, role_arns: Iterable[str] = (), session: Any = None
) -> tuple[Inventory | None, list[str]]:
    """The inventory *request* asks for, and notices for the user (what was not read).

    Returns ``(None, notices)`` when nothing at all was asked for or could be read: the
    explainer then works from CloudTrail alone.  Unreadable files raise
    :class:`InputError`; AWS refusals become inventory gaps.
    """
    from trailscan.inventory import load_eks_live, load_iam_file, load_iam_live, merge_inventories
    from trailscan.kube import fetch_service_accounts, load_service_accounts

    parts: list[Inventory] = []
    notices: list[str] = []
    label = request.clusters[0] if len(request.clusters) == 1 else ""
    for path in request.iam_files:
        parts.append(load_iam_file(path))
    accounts: list[ServiceAccount] = []
    for path in request.service_account_files:
        accounts.extend(load_service_accounts(path, cluster=label))
    if request.kube_context:
        accounts.extend(fetch_service_accounts(request.kube_context))
    if request.service_account_files or request.kube_context:
        parts.append(Inventory().with_service_accounts(accounts))
    live = request.live_iam
    needs_session = live is not False and not request.iam_files or bool(request.clusters)
    if needs_session and session is None:
        try:
            session = aws_session()
        except UsageError as error:
            notices.append(f"{error}: nothing read live from AWS")
            live, request = False, replace(request, clusters=())
    if live is None:
        live = not request.iam_files and has_aws_credentials(session)
        if not request.iam_files and not live:
            notices.append("no --iam file and no AWS credentials: IAM roles, policies and OIDC providers not read")
    wanted = set(role_arns)
    if request.clusters:
        clusters = load_eks_live(session, request.clusters, request.regions or None)
        parts.append(Inventory().with_clusters(clusters))
        # The roles of Pod Identity associations: a refused AssumeRoleForPodIdentity names none.
        wanted |= {a.role_arn for c in clusters for a in c.pod_identity_associations}
    if live:
        parts.append(load_iam_live(session, role_arns=sorted(wanted)))
    if not parts:
        return None, notices
    return merge_inventories(parts), notices


def investigate(
    store: Store,
    *,
    window: Window | None,
    inventory: InventoryRequest = InventoryRequest(),
    ingest: IngestRequest | None = None,
    session: Any = None,
    progress: Any = None,
) -> FindingsReport:
    """Ingest the window (when *ingest* is given), read the inventory for the roles the
    failures involve, and explain them: what ``trailscan since`` and ``trailscan findings`` do.

    *session* (a ``boto3.Session``) is made from standard AWS configuration when an AWS
    source or live inventory needs one.  Unreadable input files are listed in the
    report's ``problems``; the readable ones are stored and explained all the same.
    """
    problems: list[str] = []
    if ingest is not None:
        if window is None:
            raise UsageError("an ingest needs a time window")
        problems = _ingest(store, ingest, window, session, progress)
    failures = collect_failures(store, window)
    loaded, notices = load_inventory(inventory, role_arns=failures.role_arns(), session=session)
    report = explain_failures(failures, loaded)
    report.notes[:0] = notices
    report.problems.extend(problems)
    return report


def _ingest(store: Store, request: IngestRequest, window: Window, session: Any, progress: Any) -> list[str]:
    source = request.chosen_source
    if source == "files":
        from trailscan.sources.files import ingest_files

        if not request.paths:
            raise UsageError("--source files needs --path", "pass --path FILE_OR_DIR (repeatable)")
        result, _coverage = ingest_files(store, list(request.paths), progress=progress)
        return [str(problem) for problem in result.problems]
    if session is None:
        session = aws_session()
    if source == "s3":
        from trailscan.sources.s3 import ingest_s3

        result, _ = ingest_s3(
            store,
            session,
            window=window,
            bucket=request.bucket,
            prefix=request.prefix,
            org_id=request.org_id,
            accounts=list(request.accounts),
            regions=list(request.regions),
            progress=progress,
        )
        return [str(problem) for problem in result.problems]
    if source == "lookup":
        from trailscan.sources.lookup import ingest_lookup

        result, _ = ingest_lookup(
            store, session, window=window, regions=list(request.regions) or None, quick=request.quick, progress=progress
        )
        return [str(problem) for problem in result.problems]
    raise UsageError(f"--source {source!r}: expected files, s3 or lookup")
