"""Denied calls: why AWS refused an API call a workload made with credentials it had.

First whose credentials they were (the node's instance role means the pod never got its
own), then what AWS itself says — its Access Troubleshooter's evaluation, then its
message — then, where AWS is silent (EC2's ``Client.UnauthorizedOperation``, S3's "Access
Denied"), what every policy layer says: :func:`trailscan.policy.authorize` over the
request CloudTrail shows and every layer the inventory holds (:mod:`.request`), the
deciding layer named (:mod:`.layered`).  A layer that was not read is named, never taken
as allowing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trailscan.arn import role_arn_of_session, role_name
from trailscan.errors import InputError
from trailscan.explain import fixes
from trailscan.explain.collect import FailureGroup, Uniform, json_value
from trailscan.explain.layer_fixes import read_layers_fix
from trailscan.explain.layered import aws_answer_verdict, layered_verdict, message_note
from trailscan.explain.request import Judgement, judge, request_resource
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
from trailscan.policy import Denial, iam_action_for, parse_denial_message

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
    #: unread layers: (holder, the AWS CLI command that shows it, NAME for --policies)
    to_read: list[tuple[str, str, str]] = field(default_factory=list)
    _judgement: Judgement | str | None = None

    @property
    def resource(self) -> str | None:
        """The resource refused: as AWS's message names it, else the record's resource of the
        action's type, else one the request parameters name (never "*")."""
        if self.denial.resource:
            return self.denial.resource
        found = self.request_resource
        return found if found != "*" else None

    @property
    def request_resource(self) -> str | None:
        """The request's resource as a policy evaluation takes it: an ARN, "*" for an action on
        no resource, or None when not known."""
        if self.denial.resource:
            return self.denial.resource
        text = Uniform.of(self.group, "request_text").known
        parameters: Any = json_value(text) if text else None
        return request_resource(self.action, json_value(self.group.get("resources")),
                                parameters if isinstance(parameters, dict) else None, self.where["region"],
                                self.group.get("account_id"))

    def judged(self) -> Judgement | str:
        """The layered evaluation of the request (computed once), or why there is none."""
        if self._judgement is None:
            self._judgement = judge(self.group, self.ev.inv, action=self.action, resource=self.request_resource,
                                    role=self.ev.role(self.role_arn))
        return self._judgement

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


# -- what AWS says decides first: its own evaluation, then its message ---------------------------


@RULES.rule("EXPLICIT_DENY", "BOUNDARY_DENY", "RESOURCE_POLICY_DENY", "MISSING_PERMISSION", said=True)
def aws_evaluation(c: DeniedCase) -> Verdict | None:
    """AWS's Access Troubleshooter answered for this refusal: its evaluation wins, and
    trailscan's own is shown beside it (the finding says when they disagree)."""
    return aws_answer_verdict(c)


#: The policy types of AWS's message whose refusal is the resource's (or endpoint's) policy.
_RESOURCE_TYPES = ("resource", "vpce")


@RULES.rule("EXPLICIT_DENY", said=True)
def explicit_deny_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason != "explicit_deny" or c.denial.policy_type in _RESOURCE_TYPES:
        return None
    return c.verdict(
        "EXPLICIT_DENY",
        f"{c.caller} was refused {c.action}{' on ' + c.resource if c.resource else ''} by an explicit deny in "
        f"{policy_kind(c.denial.policy_type)}{' ' + c.denial.policy_arn if c.denial.policy_arn else ''}. "
        + message_note(c, "explicit_deny", _LAYER_OF.get(c.denial.policy_type or "")),
        fixes.explicit_deny_fix(c.denial, c.action, c.role_arn, c.resource),
    )


@RULES.rule("BOUNDARY_DENY", said=True)
def boundary_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason != "no_boundary":
        return None
    return c.verdict(
        "BOUNDARY_DENY",
        f"{c.caller} may not call {c.action}: the role's permissions boundary does not allow it, whatever its "
        "policies grant. " + message_note(c, "implicit_deny", "boundary"),
        fixes.boundary_fix(c.ev.role(c.role_arn), c.role_arn, c.action, c.resource, **c.where),
    )


@RULES.rule("RESOURCE_POLICY_DENY", said=True)
def resource_policy_said(c: DeniedCase) -> Verdict | None:
    explicit = c.denial.reason == "explicit_deny" and c.denial.policy_type in _RESOURCE_TYPES
    if not (explicit or c.denial.reason in ("no_resource_policy", "no_vpce_policy") or c.code == "VpceAccessDenied"):
        return None
    endpoint = c.denial.policy_type == "vpce" or c.code == "VpceAccessDenied"
    which = "VPC endpoint policy" if endpoint else "resource policy"
    layer = "vpc_endpoint" if endpoint else "resource"
    if explicit:
        return c.verdict(
            "RESOURCE_POLICY_DENY",
            f"The {which} of {c.resource or 'the resource'} explicitly denies {c.caller} {c.action}"
            f"{' (' + c.denial.policy_arn + ')' if c.denial.policy_arn else ''}. "
            + message_note(c, "explicit_deny", layer),
            fixes.explicit_deny_fix(c.denial, c.action, c.role_arn, c.resource),
        )
    return c.verdict(
        "RESOURCE_POLICY_DENY",
        f"The {which} of {c.resource or 'the resource'} does not allow {c.caller} {c.action}. "
        + message_note(c, "implicit_deny", layer),
        fixes.resource_policy_fix(which, c.role_arn or c.identity_arn, c.action, c.resource),
    )


@RULES.rule("EXPLICIT_DENY", said=True)
def organization_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason not in ("no_scp", "no_rcp", "no_session_policy"):
        return None
    return c.verdict(
        "EXPLICIT_DENY",
        f"{c.caller} was refused {c.action} by {policy_kind(c.denial.policy_type)}: none of them allows the "
        "action, so it is denied however the role's own policies read. "
        + message_note(c, "implicit_deny", _LAYER_OF.get(c.denial.policy_type or "")),
        fixes.explicit_deny_fix(c.denial, c.action, c.role_arn, c.resource),
    )


@RULES.rule("MISSING_PERMISSION", said=True)
def missing_permission_said(c: DeniedCase) -> Verdict | None:
    if c.denial.reason != "no_identity_policy":
        return None
    return c.verdict(
        "MISSING_PERMISSION",
        f"No identity-based policy of {whose(c.role_arn, c.identity_arn, c.workload)} allows {c.action}"
        f"{' on ' + c.resource if c.resource else ''}, so AWS refused the call. "
        + message_note(c, "implicit_deny", "identity"),
        fixes.missing_permission_fix(c.role_arn, c.identity_arn, c.action, c.resource, **c.where),
    )


#: AWS's message's policy types, as :data:`trailscan.policy.LAYERS` names the layers.
_LAYER_OF = {"identity": "identity", "scp": "scp", "rcp": "rcp", "boundary": "boundary", "session": "session",
             "resource": "resource", "vpce": "vpc_endpoint"}


# -- every policy layer, as AWS's evaluation reads them ----------------------------------------


@RULES.rule("EXPLICIT_DENY", "BOUNDARY_DENY", "RESOURCE_POLICY_DENY", "MISSING_PERMISSION")
def policy_layers(c: DeniedCase) -> Verdict | None:
    """The layered evaluation decides where AWS's message is silent (EC2's
    ``Client.UnauthorizedOperation``, S3's "Access Denied"): the cause is the layer that
    refuses — only when every layer that could change it was read and every context key
    it depends on is known."""
    judged = c.judged()
    if isinstance(judged, str):
        role_arn = c.role_arn
        if role_arn and c.ev.inv.role_status(role_arn) == "missing":
            c.found.append(f"the role {role_arn} no longer exists in IAM")
        elif role_arn:
            c.unchecked.append(f"no IAM inventory for {role_arn}: its identity policies and permissions boundary")
        else:
            c.unchecked.append(f"the caller {c.identity_arn or 'unknown'} is not a role: its policies")
        return None
    return layered_verdict(c, judged)


def unexplained(c: DeniedCase) -> Verdict:
    decode = (
        fixes.comment("EC2 encodes why; decode it with:"),
        f"aws sts decode-authorization-message --encoded-message {sh(c.denial.encoded_message)} "
        "--query DecodedMessage --output text",
    ) if c.denial.encoded_message else ()
    default = (f"Look for a service control, resource control or resource policy denying {c.action}, or a session "
               "policy passed when the role was assumed.")
    if c.to_read:
        found = read_layers_fix(c.to_read, "Read the policy layers trailscan could not, and run it again: the cause "
                                           "is in one of them, or in a context key CloudTrail does not show.")
    else:
        found = fixes.unexplained_fix(c.unchecked, default=default)
    return c.verdict(
        "UNEXPLAINED",
        f"{c.caller} was refused {c.action} ({c.code}) and AWS's message does not say why. "
        + (" ".join(sentence(text[0].upper() + text[1:]) for text in c.found) + " " if c.found else "")
        + unchecked_text(c.unchecked),
        fixes.extend(found, *decode),
    )


def explain_denied_call(ev: Evidence, group: FailureGroup) -> Verdict:
    """The verdict for one group of refused API calls."""
    return RULES.decide(_case(ev, group), unexplained)
