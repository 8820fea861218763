"""Denied calls: why AWS refused an API call a workload made with credentials it had.

First whose credentials they were (the node's instance role means the pod never got its
own), then what AWS's message says, then — where the message is silent, as EC2's
``Client.UnauthorizedOperation`` is — what the role's own policies and boundary say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trailscan.arn import role_arn_of_session, role_name
from trailscan.errors import InputError
from trailscan.explain import fixes
from trailscan.explain.collect import FailureGroup, json_value
from trailscan.explain.rules import Rules, Verdict
from trailscan.explain.text import (
    denial_phrase,
    policy_kind,
    sdk_sentence,
    sentence,
    sh,
    unchecked_text,
    whose,
)
from trailscan.explain.workload import Evidence, Origin
from trailscan.findings import Workload
from trailscan.inventory import Role
from trailscan.policy import Denial, evaluate, iam_action_for, parse_denial_message

__all__ = ["RULES", "explain_denied_call"]


@dataclass
class DeniedCase:
    """One group of refused API calls."""

    ev: Evidence
    group: FailureGroup
    workload: Workload
    action: str
    identity_arn: str | None
    role_arn: str | None
    code: str
    denial: Denial
    caller: str
    origin: Origin = field(default_factory=Origin)
    unchecked: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    @property
    def resource(self) -> str | None:
        """The resource refused: as AWS's message names it, else the record's only resource ARN."""
        if self.denial.resource:
            return self.denial.resource
        resources = json_value(self.group.get("resources"))
        arns = [r.get("ARN") for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []
        arns = [arn for arn in arns if isinstance(arn, str) and arn.startswith("arn:")]
        return arns[0] if len(arns) == 1 else None

    @property
    def where(self) -> dict[str, str | None]:
        """Region and account, for a placeholder ARN when no resource is known."""
        regions = self.group.regions
        return {"region": regions[0] if len(regions) == 1 else None, "account": self.group.get("account_id")}

    def verdict(self, cause: str, explanation: str, fix: str) -> Verdict:
        """The verdict, its explanation followed by where the credentials came from: the
        role chain, and why the caller is no EKS workload when it is not."""
        said = [sentence(explanation)]
        if self.origin.not_eks:
            said.append(sentence(f"Not an EKS workload: {self.origin.not_eks}"))
            fix += ("\n\nThe caller is no EKS workload: make sure the refusal was not intended (a person without "
                    "that right, a security test) before granting anything.")
        said.append(self.origin.sentence())
        explanation = " ".join(part for part in said if part)
        return Verdict(cause, self.workload, self.role_arn, self.identity_arn, self.action, explanation, fix)


def _case(ev: Evidence, group: FailureGroup) -> DeniedCase:
    source, name = group.get("event_source") or "", group.get("event_name") or ""
    try:
        action = iam_action_for(source, name)
    except InputError:
        action = f"{source.split('.')[0]}:{name}"
    identity_arn = group.get("identity_arn")
    role_arn = group.get("session_issuer_arn") or role_arn_of_session(identity_arn)
    workload, origin = ev.denied_workload(group, role_arn)
    role_arn = role_arn or origin.role_arn
    caller = workload.label() if workload.resolution == "exact" else (
        f"the node role {role_name(role_arn)}" if workload.resolution == "node"
        else (f"the role {role_name(role_arn)}" if role_arn else (identity_arn or "the caller"))
    )
    return DeniedCase(
        ev=ev,
        group=group,
        workload=workload,
        action=action,
        identity_arn=identity_arn,
        role_arn=role_arn,
        code=group.get("error_code") or "",
        denial=parse_denial_message(group.get("error_message") or ""),
        caller=caller,
        origin=origin,
    )


RULES: Rules[DeniedCase] = Rules("denied_call")


@RULES.rule("NODE_ROLE_FALLBACK")
def node_role(c: DeniedCase) -> Verdict | None:
    if c.workload.resolution != "node":
        return None
    said = f" AWS says: {denial_phrase(c.denial)}." if c.denial.reason else ""
    user_agent = c.group.get("user_agent")
    return c.verdict(
        "NODE_ROLE_FALLBACK",
        f"{c.action} was called with the node's instance role {role_name(c.role_arn)}: the pod never got "
        f"credentials of its own and its SDK fell back to the node's. {sdk_sentence(user_agent)}" + said,
        fixes.node_fallback_fix(user_agent, c.action, c.workload.cluster),
    )


# -- what AWS's message says decides first -------------------------------------------------


@RULES.rule("EXPLICIT_DENY")
def explicit_deny_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason != "explicit_deny":
        return None
    return c.verdict(
        "EXPLICIT_DENY",
        f"{c.caller} was refused {c.action}{' on ' + c.resource if c.resource else ''} by an explicit deny in "
        f"{policy_kind(c.denial.policy_type)}{' ' + c.denial.policy_arn if c.denial.policy_arn else ''}.",
        fixes.explicit_deny_fix(c.denial, c.action, c.role_arn, c.resource),
    )


@RULES.rule("BOUNDARY_DENY")
def boundary_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason != "no_boundary":
        return None
    return c.verdict(
        "BOUNDARY_DENY",
        f"{c.caller} may not call {c.action}: the role's permissions boundary does not allow it, whatever its "
        "policies grant.",
        fixes.boundary_fix(c.ev.role(c.role_arn), c.role_arn, c.action, c.resource, **c.where),
    )


@RULES.rule("RESOURCE_POLICY_DENY")
def resource_policy_said(c: DeniedCase) -> Verdict | None:
    if not (c.denial.reason in ("no_resource_policy", "no_vpce") or c.code == "VpceAccessDenied"):
        return None
    which = "VPC endpoint policy" if c.denial.reason == "no_vpce" or c.code == "VpceAccessDenied" else "resource policy"
    return c.verdict(
        "RESOURCE_POLICY_DENY",
        f"The {which} of {c.resource or 'the resource'} does not allow {c.caller} {c.action}.",
        fixes.resource_policy_fix(which, c.role_arn or c.identity_arn, c.action, c.resource),
    )


@RULES.rule("EXPLICIT_DENY")
def organization_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason not in ("no_scp", "no_rcp", "no_session_policy"):
        return None
    return c.verdict(
        "EXPLICIT_DENY",
        f"{c.caller} was refused {c.action} by {policy_kind(c.denial.policy_type)}: none of them allows the "
        "action, so it is denied however the role's own policies read.",
        fixes.explicit_deny_fix(c.denial, c.action, c.role_arn, c.resource),
    )


@RULES.rule("MISSING_PERMISSION")
def missing_permission_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason != "no_identity_policy":
        return None
    return c.verdict(
        "MISSING_PERMISSION",
        f"No identity-based policy of {whose(c.role_arn, c.identity_arn, c.workload)} allows {c.action}"
        f"{' on ' + c.resource if c.resource else ''}, so AWS refused the call.",
        fixes.missing_permission_fix(c.role_arn, c.identity_arn, c.action, c.resource, **c.where),
    )


# -- the message is silent (EC2's Client.UnauthorizedOperation): the role's policies decide ------


@RULES.rule("EXPLICIT_DENY", "BOUNDARY_DENY", "MISSING_PERMISSION")
def role_policies(c: DeniedCase) -> Verdict | None:
    role = c.ev.role(c.role_arn)
    if role is not None:
        decided = _decide_from_policies(c, role)
        if isinstance(decided, Verdict):
            return decided
        c.found.append(decided)
    elif c.role_arn and c.ev.inv.role_status(c.role_arn) == "missing":
        c.found.append(f"the role {c.role_arn} no longer exists in IAM")
    elif c.role_arn:
        c.unchecked.append(f"no IAM inventory for {c.role_arn}: its identity policies and permissions boundary")
    else:
        c.unchecked.append(f"the caller {c.identity_arn or 'unknown'} is not a role: its policies")
    return None


def _decide_from_policies(c: DeniedCase, role: Role) -> Verdict | str:
    """The cause the role's own policies establish, or a sentence saying why they establish none."""
    action, resource, caller = c.action, c.resource, c.caller
    identity = evaluate(role.policies, action, resource)
    boundary = (
        evaluate([(f"permissions boundary {role.boundary_arn or ''}".strip(), role.permissions_boundary)], action, resource)
        if role.permissions_boundary is not None else None
    )
    where = f" on {resource}" if resource else ""
    if identity.effect == "explicit_deny":
        statements = "; ".join(ref.describe() for ref in identity.matched)
        return c.verdict(
            "EXPLICIT_DENY",
            (f"{caller} was refused {action}{where}: {statements} of the role {role.name} explicitly denies it, "
             "and an explicit deny always wins."),
            fixes.fix(f"Narrow or remove the Deny in {statements}: it denies {action} to {role.arn}, and an explicit "
                      "deny cannot be overridden by any Allow."),
        )
    if boundary is not None and boundary.effect == "explicit_deny":
        return c.verdict(
            "EXPLICIT_DENY",
            (f"{caller} was refused {action}{where}: the permissions boundary {role.boundary_arn} of {role.name} "
             "explicitly denies it."),
            fixes.fix(f"Change the Deny in the permissions boundary {role.boundary_arn}, or attach another boundary."),
        )
    missing = identity.effect == "implicit_deny" and not identity.conditional and role.policies_complete
    if boundary is not None and not boundary.allowed and not boundary.conditional:
        also = " No identity policy of the role allows it either." if missing else ""
        return c.verdict(
            "BOUNDARY_DENY",
            (f"{caller} may not call {action}{where}: the permissions boundary {role.boundary_arn} of {role.name} "
             f"does not allow it, whatever the role's policies grant.{also}"),
            fixes.extend(
                fixes.boundary_fix(role, role.arn, action, resource, **c.where),
                *((fixes.comment("and, in the role's own policies:"),
                   *fixes.script_of(fixes.missing_permission_fix(role.arn, None, action, resource, **c.where)))
                  if missing else ()),
            ),
        )
    if missing:
        unread = f" (its permissions boundary {role.boundary_arn} could not be read)" if role.boundary_arn and boundary is None else ""
        return c.verdict(
            "MISSING_PERMISSION",
            (f"No identity-based policy of {whose(role.arn, None, None)} allows {action}{where}, so AWS "
             f"refused the call (its message did not say why; the role's policies were evaluated{unread})."),
            fixes.missing_permission_fix(role.arn, None, action, resource, **c.where),
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


def unexplained(c: DeniedCase) -> Verdict:
    decode = (
        fixes.comment("EC2 encodes why; decode it with:"),
        f"aws sts decode-authorization-message --encoded-message {sh(c.denial.encoded_message)} "
        "--query DecodedMessage --output text",
    ) if c.denial.encoded_message else ()
    return c.verdict(
        "UNEXPLAINED",
        f"{c.caller} was refused {c.action} ({c.code}) and AWS's message does not say why. "
        + (" ".join(sentence(text[0].upper() + text[1:]) for text in c.found) + " " if c.found else "")
        + unchecked_text(c.unchecked),
        fixes.extend(fixes.unexplained_fix(c.unchecked, default="Look for a service control, resource control or "
                                           f"resource policy denying {c.action}, or a session policy passed when "
                                           "the role was assumed."), *decode),
    )


def explain_denied_call(ev: Evidence, group: FailureGroup) -> Verdict:
    """The verdict for one group of refused API calls."""
    return RULES.decide(_case(ev, group), unexplained)
