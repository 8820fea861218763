"""What changed: the change events behind a finding, its status, and the policy in force.

:func:`collect_changes` reads the successful changes of the window and the
:data:`LOOKBACK` before it (the named query ``change_events``: one filtered scan).
:func:`changes_for` picks those that touched a finding's configuration — its role (by
name), OIDC provider (ARN or issuer), cluster, Pod Identity association, the managed
policies and boundary of its role, the organization's SCPs (denied calls), the bucket
or key it was refused on — and :func:`status_of` says whether it still fails: ``stopped``
when a change came after its last failure and no failure followed it for a quiet spell,
else ``ongoing``.

:func:`role_as_of` builds the role as it was at a failure: walking back from today's
inventory through the recorded changes, the trust policy set by the last
``CreateRole``/``UpdateAssumeRolePolicy`` and the inline policies set by the last
``PutRolePolicy``/``DeleteRolePolicy`` before it, the managed policies and their default
versions, the permissions boundary; a ``DeleteRole`` not followed by a ``CreateRole`` before
it means the role did not exist.  A trust or permission policy changed since, whose earlier
version the store does not hold, is unknown: said so, and judged as today (a cause read
from it alone is then not asserted: ``trailscan.explain.run``); a boundary is left unread.
:mod:`trailscan.explain.as_of` does the same for the SCPs/RCPs, the OIDC provider and the
Pod Identity associations; :func:`org_changes` picks the Organizations changes on an
account's path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trailscan.findings import Change
from trailscan.inventory import Inventory, Role
from trailscan.layers import PolicyLayers, ResourcePolicy
from trailscan.model import QUIET, Window
from trailscan.policy import load_policy
from trailscan.queries import QueryBook, load_queries
from trailscan.store import Store

__all__ = [
    "LOOKBACK",
    "AsOf",
    "ChangeEvent",
    "accounts_of",
    "change_event_rows",
    "changes_for",
    "collect_changes",
    "describe",
    "inventory_as_of",
    "resources_as_of",
    "role_as_of",
    "status_of",
]

#: Changes are read from this long before the window: what broke a call often came first.
LOOKBACK = timedelta(hours=24)

_TRUST = ("CreateRole", "UpdateAssumeRolePolicy")
_INLINE = ("PutRolePolicy", "DeleteRolePolicy")
_LIFECYCLE = ("CreateRole", "DeleteRole")
_ATTACH = ("AttachRolePolicy", "DetachRolePolicy")
_BOUNDARY = ("PutRolePermissionsBoundary", "DeleteRolePermissionsBoundary")
_ORGANIZATIONS = "organizations.amazonaws.com"
PLACEMENT = ("AttachPolicy", "DetachPolicy")

#: How a change reads in a sentence ("stopped after the trust policy was updated at 14:29").
_WORDS = {
    "CreateRole": "the role was created",
    "DeleteRole": "the role was deleted",
    "UpdateAssumeRolePolicy": "the trust policy was updated",
    "PutRolePolicy": "an inline policy was put",
    "DeleteRolePolicy": "an inline policy was deleted",
    "AttachRolePolicy": "a managed policy was attached",
    "DetachRolePolicy": "a managed policy was detached",
    "PutRolePermissionsBoundary": "the permissions boundary was set",
    "DeleteRolePermissionsBoundary": "the permissions boundary was removed",
    "CreatePolicyVersion": "a new policy version was created",
    "SetDefaultPolicyVersion": "the default policy version was changed",
    "CreateOpenIDConnectProvider": "the OIDC provider was created",
    "DeleteOpenIDConnectProvider": "the OIDC provider was deleted",
    "AddClientIDToOpenIDConnectProvider": "an audience was added to the OIDC provider",
    "RemoveClientIDFromOpenIDConnectProvider": "an audience was removed from the OIDC provider",
    "UpdateOpenIDConnectProviderThumbprint": "the OIDC provider's thumbprints were updated",
    "CreatePodIdentityAssociation": "the Pod Identity association was created",
    "UpdatePodIdentityAssociation": "the Pod Identity association was updated",
    "DeletePodIdentityAssociation": "the Pod Identity association was deleted",
    "CreateCluster": "the cluster was created",
    "DeleteCluster": "the cluster was deleted",
    "UpdatePolicy": "an SCP was updated",
    "AttachPolicy": "an SCP was attached",
    "DetachPolicy": "an SCP was detached",
    "PutBucketPolicy": "the bucket policy was put",
    "DeleteBucketPolicy": "the bucket policy was deleted",
    "PutKeyPolicy": "the key policy was put",
}


@dataclass(frozen=True)
class ChangeEvent:
    """One row of ``change_events``: the :class:`Change` a finding shows, and what it touched."""

    change: Change
    account: str | None
    role_name: str | None
    policy_arn: str | None
    policy_name: str | None
    provider: str | None  # the provider's issuer, without scheme (from its ARN or URL)
    cluster: str | None
    association_role: str | None  # the role name a Pod Identity association names
    bucket: str | None
    key_id: str | None
    document: str | None
    version_id: str | None = None
    set_as_default: bool = False
    org_target: str | None = None  # the root, OU or account an SCP/RCP was attached to or detached from
    client_id: str | None = None  # the audience added to or removed from an OIDC provider
    client_ids: tuple[str, ...] | None = None  # the audiences an OIDC provider was created with
    content_set: bool = False  # an UpdatePolicy that set the policy's content (not only its name)
    association_id: str | None = None
    association_role_arn: str | None = None
    namespace: str | None = None  # a Pod Identity association's service account
    service_account: str | None = None

    @property
    def time(self) -> datetime:
        return self.change.event_time

    @property
    def name(self) -> str:
        return self.change.event_name

    def policy(self) -> dict[str, Any] | None:
        """The document the call set, loaded; None when it set none or it does not parse."""
        if not self.document:
            return None
        try:
            return load_policy(orjson.loads(self.document), name=f"{self.name} {self.change.event_id}")
        except Exception:  # noqa: BLE001 - an unreadable document is an unknown version
            return None


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def issuer_key(value: str | None) -> str | None:
    if not value:
        return None
    if ":oidc-provider/" in value:
        value = value.split(":oidc-provider/", 1)[1]
    return value.removeprefix("https://").rstrip("/").lower() or None


def _strings(text: str | None) -> tuple[str, ...] | None:
    """A JSON list of strings (``clientIDList``), or None when absent or not one."""
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return tuple(str(v) for v in value) if isinstance(value, list) else None


def change_event_rows(
    store: Store, window: Window | None = None, *, role: str | None = None, book: QueryBook | None = None,
    lookback: timedelta = timedelta(0),
) -> tuple[list[str], list[tuple]]:
    """The named query ``change_events`` over *window* and the *lookback* before it (every
    change, without a window): its column names and rows, oldest first."""
    query = (book or load_queries())["change_events"]
    since = window.start - lookback if window and window.start else None
    return store.query(query.typed_sql(), query.bind({"since": since, "until": window.end if window else None,
                                                      "role": role}))


def collect_changes(
    store: Store, window: Window | None = None, *, role: str | None = None, book: QueryBook | None = None,
    lookback: timedelta = LOOKBACK,
) -> list[ChangeEvent]:
    """The successful change events of *window* and the *lookback* before it, oldest first."""
    names, rows = change_event_rows(store, window, role=role, book=book, lookback=lookback)
    found = []
    for row in rows:
        r = dict(zip(names, row))
        association = r["association_role_arn"]
        found.append(ChangeEvent(
            change=Change(utc(r["event_time"]), r["event_name"], r["event_source"], r["actor"], r["target"],
                          r["event_id"]),
            account=r["account_id"],
            role_name=r["role_name"],
            policy_arn=r["policy_arn"],
            policy_name=r["policy_name"],
            provider=issuer_key(r["provider_arn"] or r["provider_url"]),
            cluster=r["cluster"],
            association_role=association.rsplit("/", 1)[-1] if association else None,
            bucket=r["bucket"],
            key_id=r["key_id"],
            document=r["document"],
            version_id=r["version_id"],
            set_as_default=str(r["set_as_default"]).lower() == "true",
            org_target=r["org_target"],
            client_id=r["client_id"],
            client_ids=_strings(r["client_ids"]),
            content_set=bool(r["content_set"]),
            association_id=r["association_id"],
            association_role_arn=association,
            namespace=r["namespace"],
            service_account=r["service_account"],
        ))
    return found


def changes_for(
    changes: Sequence[ChangeEvent],
    *,
    kind: str,
    role_arn: str | None,
    provider: str | None = None,
    cluster: str | None = None,
    role: Role | None = None,
    resources: str | None = None,
    layers: PolicyLayers | None = None,
    accounts: Iterable[str] = (),
) -> list[ChangeEvent]:
    """The changes of *changes* that touched this configuration, oldest first.  For a
    denied call, the Organizations changes on the path of *accounts* when *layers* hold the
    organization's tree (else every one: an SCP binds every account below its target)."""
    organization: set[int] = set()
    if kind == "denied_call":
        layers = layers or PolicyLayers()
        organization = {id(c) for c in org_changes(changes, layers, org_targets(layers, accounts))}
    role_name = role_arn.rsplit("/", 1)[-1] if role_arn and ":role/" in role_arn else None
    issuer = issuer_key(provider)
    policy_arns = set(role.attached_policy_arns) if role else set()
    if role and role.boundary_arn:
        policy_arns.add(role.boundary_arn)
    if role_name:  # policies attached or detached in the records count too
        policy_arns.update(c.policy_arn for c in changes if c.role_name == role_name and c.policy_arn)
    resources = resources or ""
    picked = []
    for c in changes:
        source = c.change.event_source
        if role_name and (c.role_name == role_name or c.association_role == role_name):
            picked.append(c)
        elif issuer and c.provider == issuer:
            picked.append(c)
        elif cluster and c.cluster == cluster:
            picked.append(c)
        elif c.policy_arn and c.policy_arn in policy_arns and source == "iam.amazonaws.com":
            picked.append(c)
        elif id(c) in organization:
            picked.append(c)
        elif c.bucket and f"arn:aws:s3:::{c.bucket}" in resources:
            picked.append(c)
        elif c.key_id and c.key_id.rsplit("/", 1)[-1] in resources:
            picked.append(c)
    return picked


def accounts_of(*texts: object) -> set[str]:
    """The AWS account ids named in *texts* (ARNs, a resources list's JSON, an account id)."""
    found: set[str] = set()
    for text in texts:
        if isinstance(text, str):
            found.update(re.findall(r"(?<![\d])(\d{12})(?![\d])", text))
    return found


def org_targets(layers: PolicyLayers, accounts: Iterable[str]) -> set[str] | None:
    """Every root, OU and account on the paths of *accounts*; None when no path is known."""
    targets: set[str] = set()
    for account in accounts:
        path = layers.org_path(account)
        if path:
            targets.update(path)
    return targets or None


def org_changes(changes: Iterable[ChangeEvent], layers: PolicyLayers, targets: set[str] | None
                ) -> list[ChangeEvent]:
    """The Organizations changes that bear on *targets* (an account's path): a policy attached
    to or detached from one of them, or the content of a policy attached to one (today, or
    by a recorded ``AttachPolicy``).  With no path known, all of them."""
    mine = [c for c in changes if c.change.event_source == _ORGANIZATIONS]
    if targets is None:
        return mine
    on_path = {pid for (target, _), ids in layers.attached.items() if target in targets for pid in ids}
    on_path |= {c.policy_arn for c in mine if c.name in PLACEMENT and c.org_target in targets and c.policy_arn}
    return [c for c in mine if (c.org_target in targets if c.name in PLACEMENT else c.policy_arn in on_path)]


def status_of(changes: Sequence[ChangeEvent], first_seen: datetime, last_seen: datetime, *,
              until: datetime | None = None, cadence: timedelta = timedelta(0),
              ) -> tuple[str, ChangeEvent | None, ChangeEvent | None, ChangeEvent | None]:
    """``(status, began_after, stopped_after, too_soon)``: the last change at or before the
    first failure, and the first change after the last one. The failures ``stopped`` after
    it only when the quiet from it to *until* (the end of what was read) outlasts both
    :data:`~trailscan.model.QUIET` and *cadence* (the failures' usual interval): no failure
    yet is not no failure. Before that, it is ``too_soon`` and they are ``ongoing``."""
    before = [c for c in changes if c.time <= first_seen]
    after = [c for c in changes if c.time > last_seen]
    began = before[-1] if before else None
    if not after:
        return "ongoing", began, None, None
    if until is not None and until - after[0].time < max(QUIET, cadence):
        return "ongoing", began, None, after[0]
    return "stopped", began, after[0], None


def describe(change: ChangeEvent | Change, *, moment: datetime | None = None) -> str:
    """``UpdateAssumeRolePolicy on payments-api by arn:…:user/alice at 14:27:00Z``, or, with
    *moment*, how long before it (``2 min after …``)."""
    c = change.change if isinstance(change, ChangeEvent) else change
    said = f"{c.event_name} on {c.target or 'an unnamed target'} by {c.actor or 'an unknown caller'}"
    if moment is not None:
        minutes = max(0, int((moment - c.event_time).total_seconds() // 60))
        return f"{minutes} min after {said}"
    return f"{said} at {c.event_time.strftime('%Y-%m-%d %H:%M:%SZ')}"


def sentence(change: ChangeEvent | Change) -> str:
    """``the trust policy was updated at 14:29`` (UTC)."""
    c = change.change if isinstance(change, ChangeEvent) else change
    return f"{_WORDS.get(c.event_name, c.event_name)} at {c.event_time.strftime('%H:%M')} UTC"


@dataclass(frozen=True)
class AsOf:
    """The role as it was at a moment: ``role`` (None: it did not exist), the time of the
    newest recorded change it rests on (None: today's configuration), and what is unknown."""

    role: Role | None
    as_of: datetime | None
    missing: bool = False
    unknown: tuple[str, ...] = ()  #: not in the store: judged against today's
    used: tuple[ChangeEvent, ...] = ()
    unread: tuple[str, ...] = ()  #: not in the store: left unread, so no verdict rests on it
    #: (part, time of its last change): a part judged as today though it changed after the
    #: failure — ``trust`` (the trust policy), ``identity`` (an inline or managed policy) or
    #: ``resource:bucket policy of ARN`` (the bucket or key policy of the refused call's resource)
    unsettled: tuple[tuple[str, datetime], ...] = ()

    def plus(self, other: AsOf) -> AsOf:
        """This judgement and *other*'s (of another part of the configuration) as one."""
        times = [t for t in (self.as_of, other.as_of) if t is not None]
        return AsOf(self.role, max(times) if times else None, self.missing, (*self.unknown, *other.unknown),
                    (*self.used, *other.used), (*self.unread, *other.unread), (*self.unsettled, *other.unsettled))


def role_as_of(role: Role | None, role_arn: str, changes: Iterable[ChangeEvent], moment: datetime,
               *, managed: Mapping[str, Any] | None = None) -> AsOf:
    """The role *role* (today's; None when the inventory has none) as it was at *moment*;
    *managed*: the managed policies read (ARN → :class:`~trailscan.policy.NamedPolicy`), where
    a boundary it had then and has no longer may be found."""
    name = role_arn.rsplit("/", 1)[-1]
    mine = [c for c in changes if c.role_name == name and c.change.event_source == "iam.amazonaws.com"]
    before = [c for c in mine if c.time <= moment]
    after = [c for c in mine if c.time > moment]
    changes = list(changes)
    versions = _version_changes(role, changes, moment)
    if not versions and not any(c.name in (*_TRUST, *_INLINE, *_LIFECYCLE, *_ATTACH, *_BOUNDARY) for c in after):
        return AsOf(role, None)
    lifecycle = [c for c in before if c.name in _LIFECYCLE]
    if lifecycle and lifecycle[-1].name == "DeleteRole":
        return AsOf(None, lifecycle[-1].time, missing=True, used=(lifecycle[-1],))
    if role is None:
        return AsOf(None, None, unknown=(f"the role {name} as it was at the failure (it is not in today's inventory)",))
    used: list[ChangeEvent] = []
    unknown: list[str] = []
    unsettled: list[tuple[str, datetime]] = []
    trust = role.trust_policy
    if any(c.name in _TRUST for c in after):
        set_by = [c for c in before if c.name in _TRUST]
        document = set_by[-1].policy() if set_by else None
        if document is not None:
            trust, _ = document, used.append(set_by[-1])
        else:
            unknown.append(f"the trust policy of {name} before {sentence(next(c for c in after if c.name in _TRUST))}")
            unsettled.append(("trust", max(c.time for c in after if c.name in _TRUST)))
    created = lifecycle[-1] if lifecycle and lifecycle[-1].name == "CreateRole" else None
    policies = list(role.policies)
    for policy_name in dict.fromkeys(c.policy_name for c in after if c.name in _INLINE and c.policy_name):
        set_by = [c for c in before if c.name in _INLINE and c.policy_name == policy_name]
        others = [(n, d) for n, d in policies if n != policy_name]
        if set_by and set_by[-1].name == "DeleteRolePolicy":
            policies, _ = others, used.append(set_by[-1])
        elif set_by and (document := set_by[-1].policy()) is not None:
            policies, _ = [*others, (policy_name, document)], used.append(set_by[-1])
        elif not set_by and created is not None:
            policies, _ = others, used.append(created)  # the role was created without it
        else:
            unknown.append(f"the inline policy {policy_name} of {name} as it was at the failure")
            unsettled.append(("identity", max(c.time for c in after if c.name in _INLINE and c.policy_name == policy_name)))
    attached = list(role.attached_policy_arns)
    inferred = False
    for arn in dict.fromkeys(c.policy_arn for c in after if c.name in _ATTACH and c.policy_arn):
        prior = [c for c in before if c.name in _ATTACH and c.policy_arn == arn]
        later = next(c for c in after if c.name in _ATTACH and c.policy_arn == arn)
        # Attached then: the last attach or detach before says; else a detach since says it was.
        was = prior[-1].name == "AttachRolePolicy" if prior else later.name == "DetachRolePolicy"
        if was == (arn in attached):
            continue
        if not was:  # attached since: judged without it
            short = arn.rsplit("/", 1)[-1]
            policies = [(n, d) for n, d in policies if n != short]
            attached.remove(arn)
            if prior:
                used.append(prior[-1])
            else:
                used.append(later)
                inferred = True
        else:
            unknown.append(f"the managed policy {arn}, attached to {name} at the failure and detached since")
            unsettled.append(("identity", max(c.time for c in after if c.name in _ATTACH and c.policy_arn == arn)))
    for arn, later in versions.items():
        document, set_by, why = _default_version_at(arn, changes, moment)
        if document is None:
            unknown.append(why or f"the default version of {arn} at the failure, before {sentence(later)}")
            unsettled.append(("identity", max(c.time for c in changes if c.name in _VERSIONS and c.policy_arn == arn)))
            continue
        short = arn.rsplit("/", 1)[-1]
        policies = [(n, document if n == short else d) for n, d in policies]
        used.append(set_by)
    unread: list[str] = []
    boundary_arn, boundary_document = role.boundary_arn, role.permissions_boundary
    if (boundary := _boundary_at(role, before, after, changes, moment, managed or {})) is not None:
        (boundary_arn, boundary_document), set_by, why = boundary
        if set_by is not None:
            used.append(set_by)
        else:  # known only to have changed since: the configuration at the failure, its boundary unread
            inferred = True
        if why:
            unread.append(why)
    if not used and not unread:
        return AsOf(role, None, unknown=tuple(unknown), unsettled=tuple(unsettled))
    judged = replace(role, trust_policy=trust, policies=policies, attached_policy_arns=attached,
                     boundary_arn=boundary_arn, permissions_boundary=boundary_document)
    # A configuration known only from a later change ("attached since") is the one at the failure.
    times = [c.time for c in used if c.time <= moment] + ([moment] if inferred else [])
    return AsOf(judged, max(times), unknown=tuple(unknown), used=tuple(used), unread=tuple(unread),
                unsettled=tuple(unsettled))


_VERSIONS = ("CreatePolicyVersion", "SetDefaultPolicyVersion")


def _boundary_at(role: Role, before: list[ChangeEvent], after: list[ChangeEvent], changes: list[ChangeEvent],
                 moment: datetime, managed: Mapping[str, Any]
                 ) -> tuple[tuple[str | None, dict[str, Any] | None], ChangeEvent | None, str | None] | None:
    """The permissions boundary of *role* at *moment* when one was set or removed since:
    ``((ARN, document), the change it rests on, what is unknown)``; None: as today.

    The last ``PutRolePermissionsBoundary``/``DeleteRolePermissionsBoundary`` (or the
    ``CreateRole``) before says which ARN; its document is today's when it is the same ARN,
    else the managed policy read or the version recorded.  A boundary whose ARN or document
    is unknown is left *unread* (an ARN without a document), so no verdict rests on it."""
    later = next((c for c in after if c.name in _BOUNDARY), None)
    if later is None:
        return None
    set_by = next((c for c in reversed(before) if c.name in (*_BOUNDARY, "CreateRole")), None)
    if set_by is None:
        placeholder = "(its ARN then is not recorded)"
        return (placeholder, None), None, (f"the permissions boundary of {role.name} before {sentence(later)} "
                                           "(no change before the failure is recorded)")
    arn = None if set_by.name == "DeleteRolePermissionsBoundary" else set_by.policy_arn
    if arn is None:
        return (None, None), set_by, None
    if arn == role.boundary_arn and role.permissions_boundary is not None:
        return (arn, role.permissions_boundary), set_by, None
    read = managed.get(arn)
    document = getattr(read, "document", None)
    if document is None:
        document, _, _ = _default_version_at(arn, changes, moment)
    if document is None:
        return (arn, None), set_by, f"the permissions boundary {arn} of {role.name} at the failure"
    return (arn, document), set_by, None


def _version_changes(role: Role | None, changes: list[ChangeEvent], moment: datetime) -> dict[str, ChangeEvent]:
    """The attached managed policies whose default version changed after *moment*: ARN → that change."""
    if role is None:
        return {}
    found: dict[str, ChangeEvent] = {}
    for c in changes:
        if (c.time > moment and c.name in _VERSIONS and c.policy_arn in role.attached_policy_arns
                and (c.name == "SetDefaultPolicyVersion" or c.set_as_default)):
            found.setdefault(c.policy_arn, c)
    return found


def _default_version_at(arn: str, changes: list[ChangeEvent], moment: datetime
                        ) -> tuple[dict[str, Any] | None, ChangeEvent | None, str | None]:
    """The document of *arn*'s default version at *moment*: the last version made default
    before it, whose document a recorded ``CreatePolicyVersion`` holds."""
    mine = [c for c in changes if c.policy_arn == arn and c.name in _VERSIONS]
    made = [c for c in mine if c.time <= moment and (c.name == "SetDefaultPolicyVersion" or c.set_as_default)]
    if not made:
        return None, None, None
    last = made[-1]
    source = last if last.name == "CreatePolicyVersion" else next(
        (c for c in reversed(mine) if c.name == "CreatePolicyVersion" and c.version_id == last.version_id), None)
    document = source.policy() if source else None
    if document is None:
        return None, None, f"the version {last.version_id or '?'} of {arn} (default at the failure) is not in the store"
    return document, last, None


def inventory_as_of(inventory: Inventory, role_arn: str, found: AsOf) -> Inventory:
    """*inventory* with the role of *role_arn* as *found* says it was."""
    roles = {arn: r for arn, r in inventory.roles.items() if r.name != role_arn.rsplit("/", 1)[-1]
             or r.account != (role_arn.split(":") + [""] * 5)[4]}
    missing = set(inventory.missing_roles)
    if found.role is not None:
        roles[found.role.arn] = found.role
    elif found.missing:
        missing.add(role_arn)
    return replace(inventory, roles=roles, missing_roles=missing)


_RESOURCE = ("PutBucketPolicy", "DeleteBucketPolicy", "PutKeyPolicy")


def _resource_arn(change: ChangeEvent, resources: str) -> tuple[str, str] | None:
    """(holder ARN, kind) of the bucket or key *change* set the policy of, when the refused
    call's resources (*resources*, their JSON text) name it."""
    if change.bucket and f"arn:aws:s3:::{change.bucket}" in resources:
        return f"arn:aws:s3:::{change.bucket}", "s3"
    if change.key_id:
        if change.key_id.startswith("arn:"):
            return (change.key_id, "kms") if change.key_id in resources else None
        found = re.search(r'arn:aws[\w-]*:kms:[^"\s]*:key/' + re.escape(change.key_id), resources)
        if found:
            return found.group(0), "kms"
    return None


def resources_as_of(layers: PolicyLayers, resources: str | None, changes: Iterable[ChangeEvent], moment: datetime
                    ) -> tuple[PolicyLayers | None, AsOf]:
    """The bucket and key policies of a refused call's resources as they were at *moment*:
    the layers with them (None: as today), and what they rest on and what is unknown."""
    text = resources or ""
    mine = [(c, held) for c in changes if c.name in _RESOURCE and (held := _resource_arn(c, text))]
    later: dict[tuple[str, str], ChangeEvent] = {}
    for c, held in mine:
        if c.time > moment:
            later.setdefault(held, c)
    replaced = dict(layers.resources)
    used: list[ChangeEvent] = []
    unknown: list[str] = []
    unsettled: list[tuple[str, datetime]] = []
    for (arn, kind), after in later.items():
        before = [c for c, held in mine if held == (arn, kind) and c.time <= moment]
        label = "bucket policy" if kind == "s3" else "key policy"
        if before and before[-1].name == "DeleteBucketPolicy":
            replaced[arn] = ResourcePolicy(arn, kind, None, f"deleted by {before[-1].name} {before[-1].change.event_id}")
            used.append(before[-1])
        elif before and (document := before[-1].policy()) is not None:
            replaced[arn] = ResourcePolicy(arn, kind, document, f"set by {before[-1].name} {before[-1].change.event_id}")
            used.append(before[-1])
        else:
            unknown.append(f"the {label} of {arn} before {sentence(after)}")
            unsettled.append((f"resource:{label} of {arn}", max(c.time for c, held in mine if held == (arn, kind))))
    found = AsOf(None, max((c.time for c in used), default=None), unknown=tuple(unknown), used=tuple(used),
                 unsettled=tuple(unsettled))
    return (replace(layers, resources=replaced) if used else None), found
