"""EKS Pod Identity: why a pod got no credentials from the Pod Identity agent.

Two calls fail: the agent's ``eks-auth:AssumeRoleForPodIdentity`` (made with the node
role), and EKS's own ``sts:AssumeRole`` of the associated role (made by
``pods.eks.amazonaws.com``).  The role's trust policy is checked first, then the node
role's permission to call the agent's API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trailscan.explain import fixes
from trailscan.explain.collect import FailureGroup, json_value
from trailscan.explain.rules import Rules, Verdict
from trailscan.explain.text import POD_IDENTITY_ACTION, denial_phrase, sentence, unchecked_text
from trailscan.explain.workload import Evidence
from trailscan.findings import Candidate, Workload
from trailscan.identity import POD_IDENTITY_SERVICE, pod_identity_tags
from trailscan.inventory import Role
from trailscan.policy import (
    Denial,
    TrustVerdict,
    analyze_pod_identity_trust,
    evaluate,
    iam_action_for,
    parse_denial_message,
)

__all__ = ["RULES", "explain_pod_identity"]

_TRUST_MESSAGE = "EKS does not have permissions to assume the associated role"


@dataclass
class PodIdentityCase:
    """One group of failed Pod Identity calls."""

    ev: Evidence
    group: FailureGroup
    workload: Workload
    role_arn: str | None
    caller_role: str | None
    cluster: str | None
    tags: Any
    code: str
    message: str
    denial: Denial
    is_agent_call: bool
    action: str
    candidates_note: str
    role: Role | None
    trust: TrustVerdict | None
    unchecked: list[str] = field(default_factory=list)

    def verdict(self, cause: str, explanation: str, fix: str) -> Verdict:
        role = self.caller_role if cause == "POD_IDENTITY_AGENT_DENIED" else self.role_arn
        return Verdict(cause, self.workload, role, self.group.get("caller_arn"), self.action, sentence(explanation), fix)


def _case(ev: Evidence, group: FailureGroup) -> PodIdentityCase:
    source, name = group.get("event_source") or "", group.get("event_name") or ""
    tags = pod_identity_tags(json_value(group.get("session_tags")))
    cluster = (tags.cluster if tags else None) or group.get("cluster")
    if tags and tags.workload:
        workload = Workload(cluster, tags.namespace, tags.service_account, "exact")
    else:
        workload = Workload(cluster=cluster)
    is_agent_call = source == "eks-auth.amazonaws.com"
    role_arn = group.get("role_arn")
    candidates_note = ""
    if is_agent_call and not role_arn:
        workload, role_arn, candidates_note = _association_candidates(ev, cluster, workload)
    role = ev.role(role_arn)
    return PodIdentityCase(
        ev=ev,
        group=group,
        workload=workload,
        role_arn=role_arn,
        caller_role=group.get("caller_role_arn"),
        cluster=cluster,
        tags=tags,
        code=group.get("error_code") or "",
        message=group.get("error_message") or "",
        denial=parse_denial_message(group.get("error_message") or ""),
        is_agent_call=is_agent_call,
        action=POD_IDENTITY_ACTION if is_agent_call else iam_action_for(source or "sts.amazonaws.com", name or "AssumeRole"),
        candidates_note=candidates_note,
        role=role,
        trust=analyze_pod_identity_trust(role.trust_policy) if role else None,
    )


def _association_candidates(ev: Evidence, cluster: str | None, workload: Workload) -> tuple[Workload, str | None, str]:
    """For a failed AssumeRoleForPodIdentity (no role in the event): the associations of the
    cluster whose role's trust refuses Pod Identity."""
    found = ev.inv.cluster(cluster) if cluster else None
    if not found or not found.pod_identity_associations:
        return workload, None, ""
    failing = []
    for association in found.pod_identity_associations:
        role = ev.role(association.role_arn)
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


RULES: Rules[PodIdentityCase] = Rules("pod_identity")


@RULES.rule("POD_IDENTITY_TRUST", said=True)
def trust_said(c: PodIdentityCase) -> Verdict | None:
    """EKS says it, or STS refused pods.eks.amazonaws.com."""
    if not (_TRUST_MESSAGE.lower() in c.message.lower() or (
        not c.is_agent_call and c.denial.action in ("sts:AssumeRole", "sts:TagSession")
        and (c.denial.principal_arn or "").startswith(POD_IDENTITY_SERVICE)
    )):
        return None
    detail = f" {c.trust.detail}" if c.trust and c.trust.cause else ""
    return c.verdict(
        "POD_IDENTITY_TRUST",
        f"EKS Pod Identity could not assume {c.role_arn or 'the role associated with the pod'}"
        f"{' in cluster ' + c.cluster if c.cluster else ''}: the role's trust policy does not let "
        f"{POD_IDENTITY_SERVICE} call sts:AssumeRole and sts:TagSession ({c.message or c.code}).{detail}"
        + (f" {c.candidates_note}" if c.candidates_note else ""),
        fixes.pod_trust_fix(c.role, c.role_arn, c.cluster, c.tags),
    )


@RULES.rule("POD_IDENTITY_TRUST")
def trust_policy(c: PodIdentityCase) -> Verdict | None:
    """The role's trust policy, read from the inventory, shows it."""
    if not (c.trust and c.trust.cause and c.role is not None):
        return None
    return c.verdict(
        "POD_IDENTITY_TRUST",
        f"The trust policy of {c.role.name} does not let EKS Pod Identity assume it: {c.trust.detail}",
        fixes.pod_trust_fix(c.role, c.role_arn, c.cluster, c.tags),
    )


@RULES.rule("POD_IDENTITY_AGENT_DENIED", said=True)
def agent_denied_said(c: PodIdentityCase) -> Verdict | None:
    """The node role may not call eks-auth:AssumeRoleForPodIdentity, as AWS's message says."""
    if not (c.is_agent_call and (
        (c.denial.action or "").lower() == POD_IDENTITY_ACTION.lower() or c.denial.reason is not None
    )):
        return None
    return c.verdict(
        "POD_IDENTITY_AGENT_DENIED",
        f"The Pod Identity agent on the node runs with the node role {c.caller_role}, which may not call "
        f"{POD_IDENTITY_ACTION}" + (f" ({denial_phrase(c.denial)})" if c.denial.reason else f" ({c.message})"),
        fixes.agent_fix(c.caller_role),
    )


@RULES.rule("POD_IDENTITY_AGENT_DENIED")
def agent_denied(c: PodIdentityCase) -> Verdict | None:
    """No policy of the node role allows the agent's call."""
    if not (c.is_agent_call and c.caller_role):
        return None
    node_role = c.ev.role(c.caller_role)
    if node_role is None:
        c.unchecked.append(f"no IAM inventory for the node role {c.caller_role}: whether it may call {POD_IDENTITY_ACTION}")
        return None
    decision = evaluate(node_role.policies, POD_IDENTITY_ACTION, None)
    if decision.allowed or not node_role.policies_complete:
        return None
    return c.verdict(
        "POD_IDENTITY_AGENT_DENIED",
        f"No policy of the node role {node_role.name} allows {POD_IDENTITY_ACTION}, which the Pod "
        "Identity agent calls for every pod",
        fixes.agent_fix(c.caller_role),
    )


def unexplained(c: PodIdentityCase) -> Verdict:
    if c.role is None and c.role_arn:
        c.unchecked.append(f"no IAM inventory for {c.role_arn}: its trust policy")
    elif c.role_arn is None:
        c.unchecked.append("the associated role is not in the event: its trust policy (pass --cluster to read the associations)")
    return c.verdict(
        "UNEXPLAINED",
        f"EKS Pod Identity failed{' in cluster ' + c.cluster if c.cluster else ''} ({c.code}: {c.message or 'no message'}), "
        "and no cause could be established. " + unchecked_text(c.unchecked),
        fixes.unexplained_fix(c.unchecked, default="Check the cluster's Pod Identity associations and their roles' trust policies."),
    )


def explain_pod_identity(ev: Evidence, group: FailureGroup) -> Verdict:
    """The verdict for one group of failed Pod Identity calls."""
    return RULES.decide(_case(ev, group), unexplained)
