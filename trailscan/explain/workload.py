"""Workload resolution, and what the inventory holds for the decision modules.

:class:`Evidence` is the inventory as the decision modules ask it: which roles, service
accounts, clusters and node roles are known, and which Kubernetes workload a refused
call belongs to (SPEC §7 ``exact``, ``by_role``, ``node``, ``unknown``).
"""

from __future__ import annotations

from collections.abc import Mapping

from trailscan.arn import issuer_id, same_role, session_name_of
from trailscan.explain.collect import FailureGroup, MintedSession
from trailscan.findings import Candidate, Workload
from trailscan.identity import POD_IDENTITY_SERVICE, is_node_session, parse_web_identity, pod_identity_tags
from trailscan.inventory import IAM, KUBERNETES, Inventory, Role
from trailscan.kube import ServiceAccount

__all__ = ["Evidence"]


class Evidence:
    """The inventory (possibly empty) and the sessions minted for the failures' access keys."""

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
        """The service accounts (annotations, Pod Identity associations) that use *role_arn*."""
        if not role_arn:
            return ()
        found: list[Candidate] = []
        for sa in self.inv.service_accounts:
            if same_role(sa.role_arn, role_arn):
                found.append(Candidate(sa.cluster or None, sa.namespace, sa.name))
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

    def denied_workload(self, group: FailureGroup, role_arn: str | None) -> tuple[Workload, str | None]:
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
            # Session tags name a pod only when EKS Pod Identity set them: any caller of
            # sts:AssumeRole may pass tags of the same names.
            tags = pod_identity_tags(minted.session_tags) if minted.caller_invoked_by == POD_IDENTITY_SERVICE else None
            if tags and tags.workload:
                return Workload(tags.cluster, tags.namespace, tags.service_account, "exact"), minted.role_arn
        session = session_name_of(group.get("identity_arn"))
        if is_node_session(ec2_role_delivery=group.get("ec2_role_delivery"), session_name=session) or (
            role_arn and any(same_role(role_arn, arn) for arn in self.node_roles)
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
