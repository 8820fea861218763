"""Workload resolution, and what the inventory holds for the decision modules.

:class:`Evidence` is the inventory as the decision modules ask it: which roles, service
accounts, clusters and node roles are known, and which Kubernetes workload a refused
call belongs to (SPEC §7 ``exact``, ``by_role``, ``node``, ``unknown``, ``not_eks``).

A refused call's session is traced back through the sessions that minted it
(:meth:`Evidence.trace`): a session assumed with another session's credentials belongs
to whoever holds the first one — a pod's web identity or Pod Identity session (``exact``),
or an IAM user, a SAML user … (``not_eks``).  ``not_eks`` needs positive evidence
(:func:`trailscan.identity.not_a_pod_identity`); a session whose origin is not in the
store stays ``unknown`` and is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trailscan.arn import issuer_id, issuer_of, principal_name, role_name, same_role, session_name_of
from trailscan.explain.collect import CHAIN_LIMIT, AcceptedWebIdentity, FailureGroup, MintedSession
from trailscan.findings import Candidate, Workload
from trailscan.identity import (
    POD_IDENTITY_SERVICE,
    is_node_session,
    not_a_kubernetes_token,
    not_a_pod_identity,
    parse_subject,
    parse_web_identity,
    pod_identity_tags,
)
from trailscan.inventory import IAM, Inventory, Role
from trailscan.kube import ServiceAccount, ServiceAccountSet

__all__ = ["Attribution", "Evidence", "Origin", "attribute_service_accounts"]


@dataclass(frozen=True)
class Attribution:
    """A service-account list taken as one cluster's (its OIDC ``issuer``, as ``host/path``)."""

    accounts: ServiceAccountSet
    issuer: str


def attribute_service_accounts(
    inventory: Inventory, accepted: Iterable[AcceptedWebIdentity]
) -> tuple[list[Attribution], list[str]]:
    """Which cluster each service-account list describes, and notes on the lists that
    could not be tied to one.

    A list speaks only for its own cluster.  It is that cluster's when the API server
    said so (``--kube-context``: the issuer of ``/.well-known/openid-configuration``) or
    the user tagged it (``--service-accounts CLUSTER=FILE``, a ``--cluster`` name or an
    issuer) — unless CloudTrail contradicts it outright: service accounts that obtained
    credentials from that issuer in the window are missing from the list, or annotated
    with another role, and none agrees.  An untagged file is taken as a cluster's only
    when CloudTrail agrees: at least one service account that obtained credentials from
    that issuer is in it, annotated with the role it assumed, agreements outnumber
    disagreements two to one, and no other issuer fits as well.  An empty list is never
    evidence.
    """
    seen: dict[str, dict[tuple[str, str], set[str]]] = {}
    for web in accepted:
        ref = parse_subject(web.subject)
        if ref is not None:
            seen.setdefault(issuer_of(web.issuer), {}).setdefault((ref.namespace, ref.name), set()).add(web.role_arn or "")
    attributions: list[Attribution] = []
    notes: list[str] = []
    for listing in inventory.service_account_sets:
        if not listing.accounts:
            notes.append(f"{listing.source} holds no service account: it is not evidence that any is missing")
            continue
        scores = {issuer: _score(listing, pairs) for issuer, pairs in seen.items()}
        claimed = _claimed_issuer(inventory, listing)
        if claimed is None and (listing.tag or listing.issuer):
            notes.append(
                f"{listing.source} is tagged {listing.tag!r}, a cluster whose OIDC issuer is not known: pass "
                f"--cluster {listing.tag} (or tag it with the issuer, oidc.eks.REGION.amazonaws.com/id/ID); "
                "its service accounts are not used as evidence"
            )
            continue
        if claimed is not None:
            agree, disagree = scores.get(claimed, (0, 0))
            if disagree and not agree:
                notes.append(
                    f"{listing.source} is said to describe {issuer_id(claimed)}, but none of the {disagree} service "
                    "accounts that obtained credentials from that cluster in the window is in it as it was used: "
                    "its service accounts are not used as evidence"
                )
                continue
            attributions.append(Attribution(listing, claimed))
            continue
        fitting = [issuer for issuer, (agree, disagree) in scores.items() if agree and agree >= 2 * disagree]
        if len(fitting) == 1:
            attributions.append(Attribution(listing, fitting[0]))
            agree, disagree = scores[fitting[0]]
            notes.append(
                f"{listing.source} taken as the service accounts of cluster {issuer_id(fitting[0])}: {agree} of the "
                f"{agree + disagree} service accounts that obtained credentials from its issuer in the window are in "
                "it, annotated with the roles they assumed (tag it CLUSTER=FILE to say so)"
            )
        else:
            why = (
                f"it fits {len(fitting)} clusters' evidence" if fitting
                else "no service account that obtained credentials in the window is in it as it was used"
            )
            notes.append(
                f"{listing.source} is not tied to a cluster ({why}): its service accounts are not used as evidence; "
                "tag it --service-accounts CLUSTER=FILE, or use --kube-context"
            )
    return attributions, notes


def _claimed_issuer(inventory: Inventory, listing: ServiceAccountSet) -> str | None:
    if listing.issuer:
        return issuer_of(listing.issuer)
    tag = listing.tag
    if not tag:
        return None
    cluster = inventory.cluster(tag)
    if cluster is not None and cluster.issuer_host_path:
        return cluster.issuer_host_path
    if "/" in tag:  # an issuer: https://oidc.eks.REGION.amazonaws.com/id/ID or host/path
        return issuer_of(tag)
    return None


def _score(listing: ServiceAccountSet, pairs: Mapping[tuple[str, str], set[str]]) -> tuple[int, int]:
    """(service accounts of the evidence the list has, annotated with a role they assumed;
    those it lacks or annotates otherwise)."""
    by_name = {(sa.namespace, sa.name): sa for sa in listing.accounts}
    agree = disagree = 0
    for key, roles in pairs.items():
        sa = by_name.get(key)
        if sa is not None and any(same_role(sa.role_arn, role) for role in roles):
            agree += 1
        else:
            disagree += 1
    return agree, disagree


@dataclass(frozen=True)
class Origin:
    """Where a session's credentials came from, followed back through the sessions that
    minted them.

    ``roles`` are the chain's roles, the first session's first and the traced session's
    last; ``start`` names who began it (``payments/api``, ``user alice``); ``role_arn`` is
    the traced session's role.  ``workload`` is set when the chain starts at a pod,
    ``not_eks`` (why) when it starts at a caller that is no pod; neither when the start
    is not in the store (or was a node, or is beyond :data:`CHAIN_LIMIT` sessions).
    """

    role_arn: str | None = None
    roles: tuple[str, ...] = ()
    start: str | None = None
    workload: Workload | None = None
    not_eks: str | None = None
    unseen: bool = False

    def sentence(self) -> str:
        """``Its credentials came through a role chain: payments/api → role payments-api →
        role partner-writer.``; nothing for a session a pod was given directly."""
        if not self.roles or (len(self.roles) < 2 and (self.workload is not None or not self.start)):
            return ""
        hops = [self.start] if self.start else []
        hops += [f"role {role_name(arn)}" for arn in self.roles]
        how = "through a role chain" if len(self.roles) > 1 else "from sts:AssumeRole"
        unseen = ""
        if self.unseen and self.start:
            unseen = f"; how {self.start} got its own credentials is not in the events read"
        return f"Its credentials came {how}: " + " → ".join(hops) + unseen + "."


class Evidence:
    """The inventory (possibly empty) and the sessions minted for the failures' access keys."""

    def __init__(
        self,
        inventory: Inventory,
        *,
        minted: Mapping[str, MintedSession],
        has_inventory: bool,
        accepted: Iterable[AcceptedWebIdentity] = (),
    ) -> None:
        self.inv = inventory
        self.minted = minted
        self.has_inventory = has_inventory
        self.node_roles = inventory.node_role_arns()
        self.attributions, self.notes = attribute_service_accounts(inventory, accepted)

    # -- what the inventory holds ----------------------------------------------------

    @property
    def has_iam(self) -> bool:
        return bool(self.inv.roles) or IAM in self.inv.complete or bool(self.inv.iam_accounts) or bool(self.inv.missing_roles)

    @property
    def has_service_accounts(self) -> bool:
        return bool(self.inv.service_account_sets)

    def cluster_name(self, issuer: str | None) -> str | None:
        if not issuer:
            return None
        cluster = self.inv.cluster_for_issuer(issuer)
        return cluster.name if cluster else issuer_id(issuer)

    def service_accounts_of(self, issuer: str | None) -> list[ServiceAccount] | None:
        """The service accounts of the cluster whose OIDC issuer this is; None when no list
        loaded is tied to that cluster (see :func:`attribute_service_accounts`)."""
        if not issuer:
            return None
        wanted = issuer_of(issuer)
        sets = [a.accounts for a in self.attributions if a.issuer == wanted]
        if not sets:
            return None
        return [sa for listing in sets for sa in listing.accounts]

    def candidates_for_role(self, role_arn: str | None) -> tuple[Candidate, ...]:
        """The service accounts (annotations, Pod Identity associations) that use *role_arn*."""
        if not role_arn:
            return ()
        found: list[Candidate] = []
        clusters = {id(a.accounts): self.cluster_name(a.issuer) for a in self.attributions}
        for listing in self.inv.service_account_sets:
            for sa in listing.accounts:
                if same_role(sa.role_arn, role_arn):
                    found.append(Candidate(clusters.get(id(listing)) or sa.cluster or None, sa.namespace, sa.name))
        for cluster in self.inv.clusters:
            for association in cluster.pod_identity_associations:
                if same_role(association.role_arn, role_arn):
                    found.append(Candidate(cluster.name, association.namespace, association.service_account))
        return tuple(dict.fromkeys(found))

    def node_cluster(self, role_arn: str | None) -> str | None:
        for cluster in self.inv.clusters:
            if any(same_role(role_arn, arn) for arn in cluster.node_role_arns):
                return cluster.name
        return None

    def role(self, arn: str | None) -> Role | None:
        return self.inv.role(arn) if arn else None

    # -- whose call was it ------------------------------------------------------------

    def trace(self, access_key: str | None) -> Origin:
        """Follow the session of *access_key* back through the sessions that minted it.

        A session minted by ``sts:AssumeRole`` called with another session's key is that
        session's (role chaining); the walk ends at a web identity, EKS Pod Identity, a
        SAML sign-in, a caller that is no pod (an IAM user …), a node's session, a
        session not minted in the store, a key met before, or :data:`CHAIN_LIMIT` sessions.
        """
        roles: list[str] = []
        first: MintedSession | None = None
        caller: str | None = None

        def origin(start: str | None = None, workload: Workload | None = None, not_eks: str | None = None,
                   unseen: bool = False) -> Origin:
            return Origin(first.role_arn if first else None, tuple(roles), start, workload, not_eks, unseen)

        seen: set[str] = set()
        key = access_key
        for _ in range(CHAIN_LIMIT):
            minted = self.minted.get(key or "")
            if minted is None or key in seen:
                break
            seen.add(key)
            first = first or minted
            roles.insert(0, minted.role_arn or "")
            if minted.event_name == "AssumeRoleWithWebIdentity":
                web = parse_web_identity(
                    user_name=minted.subject, principal_id=minted.principal_id, identity_provider=minted.identity_provider
                )
                sa_ref = web.service_account
                if sa_ref:
                    workload = Workload(self.cluster_name(web.issuer), sa_ref.namespace, sa_ref.name, "exact")
                    return origin(workload.label(), workload=workload)
                start = f"web identity {web.subject}" if web.subject else None
                return origin(start, not_eks=not_a_kubernetes_token(web))
            if minted.event_name == "AssumeRoleWithSAML":
                return origin(f"SAML user {minted.subject}" if minted.subject else "a SAML user",
                              not_eks="a SAML-federated user (sts:AssumeRoleWithSAML): a person signing in")
            if minted.caller_invoked_by == POD_IDENTITY_SERVICE:
                # Session tags name a pod only when EKS Pod Identity set them: any caller of
                # sts:AssumeRole may pass tags of the same names.
                tags = pod_identity_tags(minted.session_tags)
                if tags and tags.workload:
                    workload = Workload(tags.cluster, tags.namespace, tags.service_account, "exact")
                    return origin(workload.label(), workload=workload)
                return origin()
            if minted.caller_type == "AWSService":
                # Another service handing out role credentials: EC2's instance profiles are
                # how nodes get theirs, so this says nothing about pods either way.
                return origin()
            caller = principal_name(minted.caller_arn) or None
            reason = not_a_pod_identity(identity_type=minted.caller_type, session_issuer_arn=minted.caller_issuer_arn)
            if reason:
                return origin(caller, not_eks=f"its session was started by {caller or 'a caller'}, {reason}")
            if is_node_session(ec2_role_delivery=minted.caller_ec2_role_delivery,
                               session_name=session_name_of(minted.caller_arn)):
                return origin(f"the node's {caller}" if caller else None)
            key = minted.caller_access_key_id
        # The walk ended at a session whose minting was not read (or met before, or too deep).
        return origin(caller, unseen=caller is not None and self.minted.get(key or "") is None)

    def denied_workload(self, group: FailureGroup, role_arn: str | None) -> tuple[Workload, Origin]:
        """The workload behind a denied call, and where its session came from.

        In order: a caller that is itself no pod (an IAM user, root, an AWS service …:
        ``not_eks``); a session traced to a pod (``exact``); the node's own role
        (``node``); a session traced to a caller that is no pod (``not_eks``); the service
        accounts annotated with the role (``by_role``); else ``unknown``.
        """
        reason = not_a_pod_identity(
            identity_type=group.get("identity_type"),
            session_issuer_arn=group.get("session_issuer_arn"),
            invoked_by=group.get("invoked_by"),
        )
        if reason:
            caller = principal_name(group.get("identity_arn") or group.get("session_issuer_arn")) or "the caller"
            return Workload(resolution="not_eks"), Origin(start=caller, not_eks=f"{caller} is {reason}")
        origin = self.trace(group.get("access_key_id"))
        if origin.workload is not None:
            return origin.workload, origin
        session = session_name_of(group.get("identity_arn"))
        if is_node_session(ec2_role_delivery=group.get("ec2_role_delivery"), session_name=session) or (
            role_arn and any(same_role(role_arn, arn) for arn in self.node_roles)
        ):
            return Workload(cluster=self.node_cluster(role_arn), resolution="node"), origin
        if origin.not_eks:
            return Workload(resolution="not_eks"), origin
        candidates = self.candidates_for_role(role_arn)
        if candidates:
            clusters = {c.cluster for c in candidates}
            cluster = next(iter(clusters)) if len(clusters) == 1 else None
            if len(candidates) == 1:
                only = candidates[0]
                return Workload(cluster, only.namespace, only.service_account, "by_role", candidates), origin
            namespaces = {c.namespace for c in candidates}
            namespace = next(iter(namespaces)) if len(namespaces) == 1 else None
            return Workload(cluster, namespace, None, "by_role", candidates), origin
        return Workload(), origin
