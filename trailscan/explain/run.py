"""Explaining: resolve, decide and merge failure groups into findings.

:func:`explain_failures` gives each group of :class:`~trailscan.explain.collect.Failures`
its verdict from the decision module of its kind, then merges groups into findings by
(kind, cause, workload, role, action); :func:`explain_store` collects and explains.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import pairwise

from trailscan.arn import principal_name
from trailscan.explain.as_of import associations_as_of, org_as_of, provider_as_of
from trailscan.explain.changes import (
    LOOKBACK,
    AsOf,
    ChangeEvent,
    accounts_of,
    changes_for,
    describe,
    inventory_as_of,
    resources_as_of,
    role_as_of,
    sentence,
    status_of,
)
from trailscan.explain.collect import FailureGroup, Failures, collect_failures
from trailscan.explain.denied import explain_denied_call
from trailscan.explain.irsa import explain_irsa
from trailscan.explain.pod_identity import explain_pod_identity
from trailscan.explain.rules import Verdict
from trailscan.explain.workload import Evidence
from trailscan.findings import Finding, FindingsReport, iso
from trailscan.inventory import Inventory
from trailscan.layers import PolicyLayers
from trailscan.model import QUIET, Window, judged_at, span_words, utc_now
from trailscan.store import Store

__all__ = ["SAMPLES", "explain_failures", "explain_store"]

#: Where IAM, global STS and Organizations record their events.
GLOBAL_REGION = "us-east-1"
#: Failures first seen this soon after the window's start were under way when it began.
UNDER_WAY = timedelta(hours=1)

#: Changes that take away what a workload needs: a failure that stops after one was not fixed by it.
_REMOVALS = frozenset({"DeleteRole", "DeleteOpenIDConnectProvider", "DeleteCluster", "DeletePodIdentityAssociation"})

#: How many event ids a finding carries as samples.
SAMPLES = 5

_DECIDE = {"irsa": explain_irsa, "pod_identity": explain_pod_identity, "denied_call": explain_denied_call}


def explain_store(
    store: Store, inventory: Inventory | None = None, *, window: Window | None = None, all_principals: bool = False
) -> FindingsReport:
    """Findings for the window's failed calls in *store*, explained against *inventory*
    (None: CloudTrail alone — causes that need the inventory stay ``UNEXPLAINED``); see
    :func:`explain_failures` for *all_principals*."""
    return explain_failures(collect_failures(store, window), inventory, all_principals=all_principals)


def explain_failures(
    failures: Failures, inventory: Inventory | None = None, *, all_principals: bool = False
) -> FindingsReport:
    """Resolve, explain and group :class:`Failures` into a :class:`FindingsReport`.

    Findings whose caller is shown to be no EKS workload (``not_eks``: an IAM user, a
    session one started …) are left out unless *all_principals*: they go to the
    report's ``left_out``, and a note says how many refused calls by how many principals.
    """
    known = inventory or Inventory()
    if failures.issued:  # the session policies CloudTrail shows are a policy layer of their own
        known = known.merge(Inventory(layers=PolicyLayers(sessions=failures.issued)))
    evidence = Evidence(known, minted=failures.minted, has_inventory=inventory is not None, accepted=failures.accepted)
    merged: dict[tuple, list[tuple[FailureGroup, Verdict]]] = {}
    judged: dict[int, AsOf] = {}
    # Each failure is judged against the configuration in force when it happened: a group
    # whose failures span a change to what decides it is cut there, and each part judged.
    groups = [part for group in failures.groups for part in group.split(
        c.time for c in _changes_of(group, None, known, failures.changes))]
    for group in groups:
        verdict, as_of = _judge(evidence, group, failures.changes)
        if as_of is not None:
            judged[id(group)] = as_of
        key = (group.kind, verdict.cause, verdict.workload, verdict.role_arn, verdict.action, _caller(verdict))
        merged.setdefault(key, []).append((group, verdict))
    # A finding stops only when no failure of its workload and call followed, whatever its cause.
    latest: dict[tuple, datetime] = {}
    for key, members in merged.items():
        subject = (key[0], *key[2:])
        latest[subject] = max([latest.get(subject, members[0][0].last_seen), *(g.last_seen for g, _ in members)])
    context = _Context(known, failures.changes, judged, latest, judged_at(failures.window_end, utc_now()))
    left_out: list[Finding] = []
    left_out_note = None
    outside = [] if all_principals else [key for key in merged if key[2].resolution == "not_eks"]
    if outside:
        left_out = [_finding(merged[key], context) for key in outside]
        left_out_note = _left_out_note([member for key in outside for member in merged.pop(key)], left_out)
    findings = sorted((_finding(members, context) for members in merged.values()), key=_order)
    left_out.sort(key=_order)
    notes = (list(inventory.notes) if inventory else []) + evidence.notes
    if inventory:
        for part, reasons in sorted(inventory.gaps.items()):
            notes.extend(f"inventory ({part}) incomplete: {reason}" for reason in reasons)
    if findings and not failures.changes and failures.coverage and not failures.global_events and not any(
            row.region == GLOBAL_REGION for row in failures.coverage):
        notes.append(f"changes: no event of {GLOBAL_REGION} was read, where IAM, global STS and Organizations record "
                     "theirs: the changes to roles, providers and SCPs could not be read, and each finding is judged "
                     f"against today's configuration; read {GLOBAL_REGION} too")
    if (lookback_note := _lookback_note(findings, failures)) is not None:
        notes.append(lookback_note)
    if (org_note := _organization_changes_note(findings, known, failures)) is not None:
        notes.append(org_note)
    if left_out_note:
        notes.append(left_out_note)
    return FindingsReport(
        failures.window_start,
        failures.window_end,
        list(failures.coverage),
        findings,
        notes,
        left_out=left_out,
        window_events=failures.window_events,
    )


def _lookback_note(findings: list[Finding], failures: Failures) -> str | None:
    """When failures were under way from the window's start (first seen within its first
    hour, no change before it found) and the store holds nothing of the day before: the change
    they began after may be there, unseen.  A change shows within minutes (workloads retry), so
    failures that began later began after a change the window holds, if any.  LookupEvents
    looks the day before's change events up by name; a bucket and local files are read for
    the window only."""
    start = failures.window_start
    if failures.lookback_events != 0 or start is None or not failures.coverage:
        return None
    if all(row.source == "lookup" for row in failures.coverage):
        return None
    early = [f for f in findings if f.began_after is None and f.first_seen - start < UNDER_WAY]
    if not early:
        return None
    since = start - LOOKBACK
    named = ", ".join(f"{f.cause} of {f.workload.label()}" for f in early[:3]) + (", …" if len(early) > 3 else "")
    return (f"changes: {len(early)} finding{'s' if len(early) != 1 else ''} failing from the window's start "
            f"({named}) may have begun after a change made before it, and the store holds no event of the 24 hours "
            "before the window "
            f"({iso(since)} – {iso(start)}); ingest that day too (`trailscan ingest … --since {iso(since)} "
            f"--until {iso(start)}`), then run `trailscan findings` for the window again")


def _organization_changes_note(findings: list[Finding], known: Inventory, failures: Failures) -> str | None:
    """When a denied call's SCPs were read but the Organizations calls that change them could
    not be: only the management account or a delegated administrator may call AttachPolicy,
    DetachPolicy and UpdatePolicy, so they are recorded there (in us-east-1), and a member
    account's LookupEvents or own trail does not hold them."""
    managements = sorted(set(known.layers.organizations.values()))
    rows = failures.coverage
    if not managements or not rows or not any(f.kind == "denied_call" for f in findings):
        return None
    if any(c.change.event_source == "organizations.amazonaws.com" for c in failures.changes):
        return None
    if any(row.account in ("", "*") for row in rows):  # local files: whose events they hold is not known
        return None
    if any(row.account in managements and row.region == GLOBAL_REGION for row in rows):
        return None
    return (f"changes: AWS Organizations records SCP and RCP changes in the management account "
            f"({', '.join(managements)}; or a delegated administrator's), in {GLOBAL_REGION}, whose events were not "
            "read: a policy attached, detached or edited since could not be seen, and the SCPs and RCPs are judged as "
            "read today; read the organization trail too")


def _left_out_note(members: list[tuple[FailureGroup, Verdict]], left_out: list[Finding], named: int = 3) -> str:
    """``left out 111 refused calls by 10 principals that are not EKS workloads (role
    stratus-red-team-ec2-get-password-data-role, user christophe, …); …``: a principal is
    a role (whichever session of it) or, without one, the caller; the busiest are named."""
    events: dict[str, int] = {}
    for group, verdict in members:
        principal = verdict.role_arn or verdict.principal_arn or ""
        events[principal] = events.get(principal, 0) + group.events
    principals = sorted(events, key=lambda arn: (-events[arn], arn))
    names = list(dict.fromkeys(principal_name(arn) or "a caller of unknown name" for arn in principals))
    shown = ", ".join(names[:named]) + (", …" if len(names) > named else "")
    total = sum(f.count for f in left_out)
    return (
        f"left out {total} refused call{'s' if total != 1 else ''} by {len(principals)} "
        f"principal{'s' if len(principals) != 1 else ''} that are not EKS workloads ({shown}); "
        "--all-principals (all_principals=True) includes them"
    )


def _order(f: Finding) -> tuple:
    return (
        f.workload.cluster or "~",
        f.workload.namespace or "~",
        f.workload.service_account or "~",
        f.kind,
        f.cause,
        f.role_arn or "",
        f.action,
    )


def _caller(verdict: Verdict) -> str | None:
    """Who stands in for the role when there is none: an IAM user, root, a federated user.
    Two IAM users are two callers (each fix names its own); sessions are grouped by role."""
    principal = verdict.principal_arn
    if verdict.role_arn or not principal or ":assumed-role/" in principal:
        return None
    return principal


class _Context:
    """What findings are completed with: the inventory, the change events, the as-of judgements."""

    def __init__(self, inventory: Inventory, changes: list[ChangeEvent], judged: dict[int, AsOf],
                 latest: dict[tuple, datetime] | None = None, until: datetime | None = None) -> None:
        self.inventory, self.changes, self.judged = inventory, changes, judged
        #: (kind, workload, role, action, caller) → the last failure of any cause
        self.latest = latest or {}
        #: What was read ends here: the window's end, or now when that is earlier.
        self.until = until


def _group_role(group: FailureGroup) -> str | None:
    for name in ("role_arn", "session_issuer_arn", "caller_role_arn"):
        value = group.get(name)
        if isinstance(value, str) and ":role/" in value:
            return value
    return None


def _judge(evidence: Evidence, group: FailureGroup, changes: list[ChangeEvent]) -> tuple[Verdict, AsOf | None]:
    """The group's verdict, judged against the configuration as it was at its first failure
    where a recorded change has changed it since — its role; for a denied call, the bucket or
    key policy it was refused on and the SCPs/RCPs on its accounts' paths; for IRSA, the
    cluster's OIDC provider; for Pod Identity, the cluster's associations — else against
    today's inventory."""
    if not changes:
        return _DECIDE[group.kind](evidence, group), None
    moment = group.first_seen
    role_arn = _group_role(group)
    inventory = evidence.inv
    found = AsOf(None, None)
    if role_arn:
        found = role_as_of(inventory.role(role_arn), role_arn, changes, moment, managed=inventory.layers.managed)
        if found.as_of is not None:
            inventory = inventory_as_of(inventory, role_arn, found)
    if group.kind == "denied_call":
        resources = group.get("resources")
        text = resources if isinstance(resources, str) else ""
        layers, part = resources_as_of(inventory.layers, text, changes, moment)
        inventory = replace(inventory, layers=layers) if layers is not None else inventory
        found = found.plus(part)
        accounts = accounts_of(role_arn, group.get("identity_arn"), group.get("account_id"), text)
        layers, part = org_as_of(inventory.layers, changes, moment, accounts)
        inventory = replace(inventory, layers=layers) if layers is not None else inventory
        found = found.plus(part)
    elif group.kind == "irsa" and role_arn and group.get("identity_provider"):
        then, part = provider_as_of(inventory, group.get("identity_provider"), role_arn.split(":")[4], changes, moment)
        inventory, found = then or inventory, found.plus(part)
    elif group.kind == "pod_identity" and group.get("cluster"):
        then, part = associations_as_of(inventory, group.get("cluster"), changes, moment)
        inventory, found = then or inventory, found.plus(part)
    if inventory is evidence.inv:
        verdict = _DECIDE[group.kind](evidence, group)
        return _unsettled(verdict, found, group), found if found.unknown or found.unread else None
    then_evidence = copy.copy(evidence)
    then_evidence.inv = inventory
    return _unsettled(_DECIDE[group.kind](then_evidence, group), found, group), found


#: The causes read from a part of the configuration (not said by AWS: those stand).
_RESTS_ON = {
    "trust": frozenset({"TRUST_PROVIDER_MISMATCH", "TRUST_ACTION_MISSING", "TRUST_SUBJECT_MISMATCH",
                        "POD_IDENTITY_TRUST"}),
    "identity": frozenset({"MISSING_PERMISSION", "EXPLICIT_DENY"}),
    "resource": frozenset({"RESOURCE_POLICY_DENY"}),
}
#: For a denied call, the part matters only when the evaluation found its layer deciding (an
#: explicit deny in an SCP stands whatever the role's own policies were).
_LAYER_OF_PART = {"identity": "identity", "resource": "resource"}
_PART = {"trust": "trust policy", "identity": "permission policies"}


def _unsettled(verdict: Verdict, found: AsOf, group: FailureGroup) -> Verdict:
    """*verdict*, or ``UNEXPLAINED`` when it rests on a part of the role that changed after
    every one of the group's failures and whose version then the store does not hold: today's
    version of it did not refuse those calls, so it is not asserted as their cause."""
    if verdict.said:  # AWS's own words: whatever the configuration was, they stand
        return verdict
    changed = [(part, when) for part, when in found.unsettled if when > group.last_seen and _rests_on(verdict, part)]
    if not changed:
        return verdict
    part, when = max(changed, key=lambda item: item[1])
    kind, _, named = part.partition(":")
    what = (f"the {named}" if named else
            f"the {_PART[kind]} of {verdict.role_arn.rsplit('/', 1)[-1] if verdict.role_arn else 'the role'}")
    settle = (f"{what} as it was at {group.first_seen.strftime('%Y-%m-%d %H:%M:%SZ')} (the CloudTrail record of the "
              f"change that set it, or AWS Config's history of the {'resource' if named else 'role'})")
    return replace(
        verdict,
        cause="UNEXPLAINED",
        explanation=(f"Today's configuration would give {verdict.cause}, but {what} changed at "
                     f"{when.strftime('%H:%M')} UTC, after these failures, and its version then is not in the store: "
                     f"what it said is not known, so no cause is asserted. Would settle it: {settle}. Today's reading: "
                     f"{verdict.explanation}"),
        fix=f"Find {settle} and run again. If today's {named or _PART[kind]} is still wrong:\n{verdict.fix}",
    )


def _rests_on(verdict: Verdict, part: str) -> bool:
    """Whether *verdict*'s cause was read from *part* (``trust``, ``identity``, ``resource:…``)."""
    kind = part.partition(":")[0]
    return verdict.cause in _RESTS_ON.get(kind, ()) and verdict.layer == _LAYER_OF_PART.get(kind, verdict.layer)


def _changes_of(group: FailureGroup, verdict: Verdict | None, inventory: Inventory, changes: list[ChangeEvent]
                ) -> list[ChangeEvent]:
    """The recorded changes to what decides *group* (its role, provider, cluster, policies,
    SCPs, resource), oldest first."""
    if not changes:
        return []
    role_arn = (verdict.role_arn if verdict else None) or _group_role(group)
    resources = group.get("resources")
    text = resources if isinstance(resources, str) else None
    return changes_for(
        changes,
        kind=group.kind,
        role_arn=role_arn,
        provider=group.get("identity_provider"),
        cluster=(verdict.workload.cluster if verdict else None) or group.get("cluster"),
        role=inventory.role(role_arn) if role_arn else None,
        resources=text,
        layers=inventory.layers,
        accounts=accounts_of(role_arn, group.get("identity_arn"), group.get("account_id"), text),
    )


def _what_changed(members: list[tuple[FailureGroup, Verdict]], verdict: Verdict, context: _Context,
                  first_seen: datetime, last_seen: datetime) -> dict:
    """status, changes, policy_as_of, and the words the explanation and fix gain."""
    if not context.changes:
        return {}
    picked = _changes_of(members[-1][0], verdict, context.inventory, context.changes)
    cadence = _cadence(members)
    status, began, stopped, too_soon = status_of(picked, first_seen, last_seen, until=context.until, cadence=cadence)
    judged = [context.judged[id(g)] for g, _ in members if id(g) in context.judged]
    as_of = min((j.as_of for j in judged if j.as_of is not None), default=None)
    words: list[str] = []
    if began is not None:
        words.append(f"The failures began {describe(began, moment=first_seen)}.")
    if too_soon is not None and context.until is not None:
        words.append(
            f"No failure has come since {sentence(too_soon)} ({describe(too_soon)}), "
            f"{span_words(context.until - too_soon.time)} before the end of what was read: too soon to say they "
            "stopped (CloudTrail delivers within about 5 minutes"
            + (f", and they came about every {span_words(cadence)}" if cadence > QUIET else "")
            + "); run it again later.")
    for j in judged:
        if j.missing:
            words.append(f"Judged as of the failure: the role did not exist then ({sentence(j.used[-1])}).")
        elif j.as_of is not None:
            used = ", ".join(f"{c.name} {c.change.event_id} ({sentence(c)})" for c in j.used if c.time <= j.as_of)
            since = ", ".join(f"{c.name} of {c.policy_arn or c.change.target} ({sentence(c)})"
                              for c in j.used if c.time > j.as_of)
            words.append("Judged against the configuration in force at the failure"
                         + (f", as set by {used}" if used else "") + (f", before {since}" if since else "") + ".")
        for unknown in j.unknown:
            words.append(f"Unknown: {unknown} is not in the store; judged against today's.")
        for unread in j.unread:
            words.append(f"Unknown: {unread} is not in the store; left unread, so no cause rests on it.")
    fix_words = ""
    if stopped is not None:
        words.append(f"It stopped after {sentence(stopped)} ({describe(stopped)}): no failure followed.")
        if stopped.name in _REMOVALS:  # it took away what the calls need: they stopped, not it
            fix_words = (f"No failure came after {sentence(stopped)} ({stopped.name} by "
                         f"{stopped.change.actor or 'an unknown caller'}), but that change removes what these calls "
                         "need rather than fixing them: the workload most likely stopped calling. If it runs again:")
        elif verdict.cause == "UNEXPLAINED":  # no cause established: nor that the change fixed it
            fix_words = (f"No failure came after {sentence(stopped)} ({stopped.name} by "
                         f"{stopped.change.actor or 'an unknown caller'}); whether that change fixed it is not "
                         "established. If it comes back:")
        else:
            fix_words = (f"Already fixed: {sentence(stopped)} ({stopped.name} by "
                         f"{stopped.change.actor or 'an unknown caller'}), and no failure followed; nothing to do "
                         "unless it comes back.")
    return {
        "status": status,
        "changes": tuple(c.change for c in picked),
        "policy_as_of": as_of,
        "began_after": began.change if began else None,
        "stopped_after": stopped.change if stopped else None,
        "words": " ".join(dict.fromkeys(words)),
        "fix_words": fix_words,
    }


def _cadence(members: list[tuple[FailureGroup, Verdict]]) -> timedelta:
    """The median time between one failure and the next (zero for a single failure)."""
    times = sorted(t for group, _ in members for t in group.event_times)
    gaps = sorted(later - earlier for earlier, later in pairwise(times))
    return gaps[len(gaps) // 2] if gaps else timedelta(0)


def _finding(members: list[tuple[FailureGroup, Verdict]], context: _Context | None = None) -> Finding:
    members.sort(key=lambda item: item[0].last_seen, reverse=True)
    latest_group, verdict = members[0]
    event_ids = [event_id for group, _ in members for event_id in group.event_ids]
    first_seen = min(group.first_seen for group, _ in members)
    last_seen = latest_group.last_seen
    if context:
        subject = (latest_group.kind, verdict.workload, verdict.role_arn, verdict.action, _caller(verdict))
        last_seen = max(last_seen, context.latest.get(subject, last_seen))
    extra = _what_changed(members, verdict, context, first_seen, last_seen) if context else {}
    words, fix_words = extra.pop("words", ""), extra.pop("fix_words", "")
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
        first_seen=first_seen,
        last_seen=latest_group.last_seen,
        regions=tuple(sorted({r for group, _ in members for r in group.regions})),
        sample_event_ids=tuple(event_ids[:SAMPLES]),
        event_ids=tuple(event_ids),
        explanation=f"{verdict.explanation} {words}" if words else verdict.explanation,
        fix=f"{fix_words}\n{verdict.fix}" if fix_words else verdict.fix,
        account=latest_group.get("account_id"),
        **extra,
    )


def _event_source(kind: str) -> str:
    return "sts.amazonaws.com" if kind == "irsa" else ""


def _event_name(kind: str) -> str:
    return "AssumeRoleWithWebIdentity" if kind == "irsa" else ""
