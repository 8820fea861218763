"""The parts of the configuration outside the role, as they were at a failure.

:mod:`trailscan.explain.changes` builds the role as it was; this module does the same for
what decides around it, each by walking back from today's inventory through the changes
recorded after the failure:

* the organization's SCPs and RCPs on the account's path (``AttachPolicy``,
  ``DetachPolicy``, and ``UpdatePolicy`` with the content it set);
* the IAM OIDC provider of a cluster's issuer (created or deleted since, audiences added
  or removed since);
* the Pod Identity associations of a cluster (created, updated or deleted since).

Each returns the configuration as it was (None: as today) and an :class:`AsOf` saying what
it rests on.  What the store cannot give back — a policy's content before an update it
does not hold, an association EKS did not describe — is left *unread* (a gap), so no cause
is asserted from today's version of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from trailscan.arn import issuer_of
from trailscan.explain.changes import (
    PLACEMENT,
    AsOf,
    ChangeEvent,
    issuer_key,
    org_changes,
    org_targets,
    sentence,
)
from trailscan.inventory import Cluster, Inventory, OidcProvider, PodIdentityAssociation
from trailscan.layers import RCP, SCP, OrgPolicy, PolicyLayers

__all__ = ["associations_as_of", "org_as_of", "provider_as_of"]

_PROVIDER = ("CreateOpenIDConnectProvider", "DeleteOpenIDConnectProvider", "AddClientIDToOpenIDConnectProvider",
             "RemoveClientIDFromOpenIDConnectProvider")
_ASSOCIATION = ("CreatePodIdentityAssociation", "UpdatePodIdentityAssociation", "DeletePodIdentityAssociation")

NOTHING = AsOf(None, None)


def org_as_of(layers: PolicyLayers, changes: Iterable[ChangeEvent], moment: datetime, accounts: Iterable[str]
              ) -> tuple[PolicyLayers | None, AsOf]:
    """The SCPs and RCPs on the paths of *accounts* as they were at *moment*."""
    targets = org_targets(layers, accounts)
    if targets is None:  # the organization's layers are unread for these accounts anyway
        return None, NOTHING
    mine = org_changes(changes, layers, targets)
    later = [c for c in mine if c.time > moment]
    if not later:
        return None, NOTHING
    attached = {key: list(ids) for key, ids in layers.attached.items()}
    policies: dict[str, OrgPolicy] = dict(layers.org_policies)
    gaps = dict(layers.gaps)
    used: list[ChangeEvent] = []
    unread: list[str] = []
    inferred = False
    placed = [c for c in mine if c.name in PLACEMENT and c.org_target and c.policy_arn]
    for target, pid in dict.fromkeys((c.org_target, c.policy_arn) for c in later if c in placed):
        prior = [c for c in placed if c.time <= moment and (c.org_target, c.policy_arn) == (target, pid)]
        first = next(c for c in later if c in placed and (c.org_target, c.policy_arn) == (target, pid))
        # Attached then: the last attach or detach before says; else a detach since says it was.
        was = prior[-1].name == "AttachPolicy" if prior else first.name == "DetachPolicy"
        kinds = [policies[pid].type] if pid in policies else [
            kind for (t, kind), ids in attached.items() if t == target and pid in ids] or [SCP, RCP]
        for kind in kinds:
            ids = attached.get((target, kind))
            if ids is None or was == (pid in ids):
                continue
            if was:  # detached since: it bound the account then
                ids.append(pid)
                if pid not in policies:
                    gaps[pid] = f"{pid}, attached to {target} at the failure and detached since: not read"
                    unread.append(f"the content of {pid}, attached to {target} at the failure and detached since")
            else:  # attached since: it did not
                ids.remove(pid)
        used.append(prior[-1] if prior else first)
        inferred = inferred or not prior
    # The content after an UpdatePolicy is in its response; before the first that set it since,
    # it is what the last one before the failure left (or, if that one left it as it was, said).
    for pid in dict.fromkeys(c.policy_arn for c in later if c.name == "UpdatePolicy" and c.content_set):
        if pid not in policies:
            continue  # not read today either: unread as it is
        first = next(c for c in later if c.name == "UpdatePolicy" and c.policy_arn == pid and c.content_set)
        prior = [c for c in mine if c.name == "UpdatePolicy" and c.policy_arn == pid and c.time <= moment
                 and c.document]
        unchanged = [c for c in later if c.name == "UpdatePolicy" and c.policy_arn == pid and c.time < first.time
                     and c.document]  # a rename since, before the content changed, returned the content then
        source = prior[-1] if prior else (unchanged[0] if unchanged else None)
        document = source.policy() if source else None
        if source is not None and document is not None:
            policies[pid] = replace(policies[pid], document=document)
            used.append(source)
            inferred = inferred or source.time > moment
        else:
            del policies[pid]
            gaps[pid] = f"the content of {pid} before {sentence(first)} is not in the store"
            unread.append(f"the content of {pid} before {sentence(first)}")
            used.append(first)
            inferred = True
    if not used:
        return None, NOTHING
    then = replace(layers, attached={key: tuple(ids) for key, ids in attached.items()}, org_policies=policies,
                   gaps=gaps)
    times = [c.time for c in used if c.time <= moment] + ([moment] if inferred else [])
    return then, AsOf(None, max(times), used=tuple(used), unread=tuple(unread))


def provider_as_of(inventory: Inventory, issuer: str, account: str, changes: Iterable[ChangeEvent],
                   moment: datetime) -> tuple[Inventory | None, AsOf]:
    """The IAM OIDC provider of *issuer* in *account* as it was at *moment*.

    A successful ``CreateOpenIDConnectProvider`` since means there was none (IAM refuses a
    second provider for one URL); a ``DeleteOpenIDConnectProvider`` since means there was
    one, with the audiences of its recorded creation (and the changes after it), else
    with audiences unknown.  Audiences added since are taken off, removed ones put back."""
    host = issuer_key(issuer)
    mine = [c for c in changes if c.name in _PROVIDER and c.provider == host
            and (c.account == account or f":{account}:" in (c.change.target or ""))]
    later = [c for c in mine if c.time > moment]
    if not later:
        return None, NOTHING
    today = inventory.provider_for_issuer(issuer, account)
    known = today is not None or account in inventory.oidc_accounts
    state: OidcProvider | None = today
    used: list[ChangeEvent] = []
    for c in reversed(later):
        if c.name == "CreateOpenIDConnectProvider":
            state, known = None, True
            used.append(c)
        elif c.name == "DeleteOpenIDConnectProvider":
            state, known = _before_deletion(mine, c, issuer_of(issuer)), True
            used.append(c)
        elif state is not None and state.details_known and c.client_id:
            ids = [i for i in state.client_ids if i != c.client_id]
            if c.name == "RemoveClientIDFromOpenIDConnectProvider":
                ids.append(c.client_id)
            state = replace(state, client_ids=ids)
            used.append(c)
    if not used or not known:
        return None, NOTHING
    providers = {arn: p for arn, p in inventory.oidc_providers.items() if today is None or arn != today.arn}
    accounts = set(inventory.oidc_accounts)
    if state is not None:
        providers[state.arn] = state
    else:
        accounts.add(account)  # it did not exist: as listed
    then = replace(inventory, oidc_providers=providers, oidc_accounts=accounts)
    return then, AsOf(None, moment, used=tuple(used))


def _before_deletion(mine: list[ChangeEvent], deleted: ChangeEvent, issuer: str) -> OidcProvider:
    """The provider *deleted* removed, as its recorded creation and the changes after it say."""
    arn = deleted.change.target or f"arn:aws:iam::{deleted.account}:oidc-provider/{issuer}"
    url = issuer_of(arn)  # as the ARN spells it: the issuer's path is case-sensitive
    earlier = [c for c in mine if c.time < deleted.time]
    created = next((c for c in reversed(earlier) if c.name == "CreateOpenIDConnectProvider"), None)
    if created is None or created.client_ids is None:
        return OidcProvider(arn=arn, url=url, details_known=False)
    ids = list(created.client_ids)
    for c in earlier:
        if c.time >= created.time and c.client_id and c.name != "CreateOpenIDConnectProvider":
            ids = [i for i in ids if i != c.client_id] + (
                [c.client_id] if c.name == "AddClientIDToOpenIDConnectProvider" else [])
    return OidcProvider(arn=arn, url=url, client_ids=ids)


def associations_as_of(inventory: Inventory, cluster: str, changes: Iterable[ChangeEvent], moment: datetime
                       ) -> tuple[Inventory | None, AsOf]:
    """The Pod Identity associations of *cluster* as they were at *moment*.  An association
    whose state then the records cannot give (an update whose earlier role is not recorded,
    a deletion EKS did not describe) leaves the cluster's associations unread."""
    mine = [c for c in changes if c.name in _ASSOCIATION and c.cluster == cluster]
    later = [c for c in mine if c.time > moment]
    found = inventory.cluster(cluster)
    if not later or found is None:
        return None, NOTHING
    associations = {a.association_id: a for a in found.pod_identity_associations}
    unread: list[str] = []
    for c in reversed(later):
        if c.name == "CreatePodIdentityAssociation":
            gone = c.association_id or next((key for key, a in associations.items()
                                             if (a.namespace, a.service_account) == (c.namespace, c.service_account)), None)
            associations.pop(gone or "", None)
            continue
        earlier = [e for e in mine if e.time < c.time and e.association_id == c.association_id
                   and e.name != "DeletePodIdentityAssociation" and e.association_role_arn]
        if c.name == "UpdatePodIdentityAssociation":
            role = earlier[-1].association_role_arn if earlier else None
            current = associations.get(c.association_id or "")
            if role and current:
                associations[current.association_id] = replace(current, role_arn=role)
                continue
            unread.append(f"the role of association {c.association_id} before {sentence(c)}")
        elif c.namespace and c.service_account and c.association_role_arn and c.association_id:
            associations[c.association_id] = PodIdentityAssociation(
                c.namespace, c.service_account, c.association_role_arn, c.association_id)
        else:
            unread.append(f"association {c.association_id or '?'}, deleted since ({sentence(c)})")
    gaps = dict(found.gaps)
    if unread:
        associations = {}
        gaps["pod_identity"] = "the associations at the failure are not all in the store: " + "; ".join(unread)
    then_cluster: Cluster = replace(found, pod_identity_associations=list(associations.values()), gaps=gaps)
    clusters = [then_cluster if c is found else c for c in inventory.clusters]
    return replace(inventory, clusters=clusters), AsOf(None, moment, used=tuple(later), unread=tuple(unread))
