"""Verdicts from every policy layer: the layer that decided, named with its statements.

:func:`layered_verdict` maps :func:`trailscan.policy.authorize`'s decision (see
:mod:`.request`) to a cause, as the issue's table says:

======================================  ==========================================================
decision                                cause
======================================  ==========================================================
explicit deny in an identity policy,    ``EXPLICIT_DENY``, naming the policy and statement (Sid or
the boundary, a session policy, an      index; the SCP's or RCP's ARN and where it is attached)
SCP or an RCP; an SCP level or session
policy that does not allow
explicit deny in, or no Allow from,     ``RESOURCE_POLICY_DENY``, naming which: bucket, key, queue,
the resource's or the VPC endpoint's    topic, secret, repository, function, trust or endpoint policy
policy (a cross-account request, a KMS
key that does not delegate to IAM)
the boundary does not allow             ``BOUNDARY_DENY``
no identity policy allows, every other  ``MISSING_PERMISSION``
layer read
allowed, or undetermined                no cause: ``UNEXPLAINED`` names the context keys that would
                                        settle it and the layers not read
======================================  ==========================================================

When the group's events differ in a key the decision depends on (two regions, a
time-bound condition), each value is judged and the finding takes the first cause of the
table that holds, naming the others.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from trailscan.explain import fixes
from trailscan.explain.causes import codes
from trailscan.explain.layer_fixes import allow_in_layer_fix, deny_in_layer_fix
from trailscan.explain.rules import Verdict
from trailscan.explain.text import whose
from trailscan.layers import READ
from trailscan.policy import ALLOW, EXPLICIT_DENY, IMPLICIT_DENY, UNKNOWN_RESOURCE, AuthDecision, LayerResult

if TYPE_CHECKING:  # pragma: no cover
    from trailscan.explain.denied import DeniedCase
    from trailscan.explain.request import Judgement

__all__ = ["aws_answer_verdict", "cause_of", "layered_verdict", "message_note"]

#: How each layer is named in a sentence.
LAYER_WORDS = {
    "identity": "an identity-based policy of the role",
    "boundary": "the role's permissions boundary",
    "session": "the session policy",
    "scp": "a service control policy",
    "rcp": "a resource control policy",
    "resource": "the resource's policy",
    "vpc_endpoint": "the VPC endpoint's policy",
}

_PRECEDENCE = {code: index for index, code in enumerate(codes("denied_call"))}


def cause_of(decision: str, layer: str | None) -> str | None:
    """The cause a decided refusal at *layer* establishes (None for allow or undetermined)."""
    if decision == EXPLICIT_DENY:
        return "RESOURCE_POLICY_DENY" if layer in ("resource", "vpc_endpoint") else "EXPLICIT_DENY"
    if decision != IMPLICIT_DENY:
        return None
    return {"identity": "MISSING_PERMISSION", "boundary": "BOUNDARY_DENY", "resource": "RESOURCE_POLICY_DENY",
            "vpc_endpoint": "RESOURCE_POLICY_DENY", "scp": "EXPLICIT_DENY", "rcp": "EXPLICIT_DENY",
            "session": "EXPLICIT_DENY"}.get(layer or "")


def layered_verdict(c: DeniedCase, j: Judgement) -> Verdict | None:
    """The cause every layer establishes, or None (and what was found, for UNEXPLAINED)."""
    found = layered_outcome(c, j)
    return replace(c.verdict(*found[:3]), layer=found[3]) if found else None


def layered_outcome(c: DeniedCase, j: Judgement) -> tuple[str, str, str, str | None] | None:
    """(cause, explanation, fix, deciding layer) every layer establishes, or None (recording
    what was found)."""
    judged = list(j.variants) or [("", j.decision)]
    decided = [(label, d, cause_of(d.decision, d.layer)) for label, d in judged]
    causes = [item for item in decided if item[2] is not None]
    if not causes or len(causes) < len(decided) and not j.variants:
        _record_unexplained(c, j, j.decision)
        return None
    label, decision, cause = min(causes, key=lambda item: _PRECEDENCE[item[2] or "UNEXPLAINED"])
    assert cause is not None
    explanation, fix = _explain(c, j, decision, cause)
    others = [f"with {other_label}: {_short(d)}" for other_label, d, _ in decided if other_label != label]
    if label:
        explanation = f"With {label}: {explanation}"
    if others:
        explanation += " The group's events differ: " + "; ".join(others) + "."
    return cause, explanation, fix, decision.layer


def _short(decision: AuthDecision) -> str:
    cause = cause_of(decision.decision, decision.layer)
    if cause is None:
        return decision.describe()
    return f"{cause} ({decision.describe()})"


def _documents(j: Judgement) -> dict[str, object]:
    """Every document the evaluation read, by the name its statements are reported under."""
    found: dict[str, object] = {}
    policies = j.policies
    items = [*policies.identity, *policies.session, *(p for level in policies.scps for p in level),
             *(p for level in policies.rcps for p in level)]
    items += [p for p in (policies.permissions_boundary, policies.resource, policies.vpc_endpoint) if p is not None]
    for item in items:
        name = getattr(item, "name", None)
        if name:
            found[name] = item.document  # type: ignore[union-attr]
    return found


def _refs_text(j: Judgement, decision: AuthDecision) -> str:
    parts = []
    for ref in decision.statements:
        where = j.where(ref.policy)
        parts.append(ref.describe() + (f", attached to {where}" if where else "") + _keys_seen(j, ref.statement))
    return "; ".join(parts)


def _keys_seen(j: Judgement, statement: object) -> str:
    """The request's values of the condition keys a statement tests: why it applied."""
    condition = statement.get("Condition") if isinstance(statement, dict) else None
    if not isinstance(condition, dict):
        return ""
    context = {key.lower(): (key, value) for key, value in j.request.context.items()}
    seen = []
    for block in condition.values():
        for key in block if isinstance(block, dict) else ():
            found = context.get(str(key).lower())
            if found is not None:
                value = found[1]
                seen.append(f"{found[0]} is {value if value is not None else 'absent'}")
            elif str(key).lower() in {absent.lower() for absent in j.request.absent}:
                seen.append(f"{key} is absent")
    return f" (the request's {', '.join(dict.fromkeys(seen))})" if seen else ""


def _explain(c: DeniedCase, j: Judgement, d: AuthDecision, cause: str) -> tuple[str, str]:
    action, caller, resource = c.action, c.caller, c.resource
    on = f" on {resource}" if resource else ""
    layer = d.layer or ""
    checked = _checked(j)
    role_arn = c.role_arn
    if d.decision == EXPLICIT_DENY:
        refs = _refs_text(j, d)
        holder = j.lookups[layer].holder if layer in j.lookups else LAYER_WORDS.get(layer, layer)
        subject = holder if layer in ("resource", "vpc_endpoint") else LAYER_WORDS.get(layer, layer)
        text = (f"{caller} was refused {action}{on}: {subject} explicitly denies it — {refs}. "
                "An explicit deny beats every Allow.")
        issued = c.ev.inv.layers.sessions.get(c.group.get("access_key_id") or "")
        return text, deny_in_layer_fix(layer, d.statements, _documents(j), action=action, role=role_arn, holder=holder,
                                       session_event=f"{issued.event_name}, event {issued.event_id}" if issued else None,
                                       where={ref.policy: j.where(ref.policy) for ref in d.statements})
    # An implicit deny: the first layer that had to allow and did not.
    if cause == "MISSING_PERMISSION":
        text = (f"No identity-based policy of {whose(role_arn, None, c.workload)} allows {action}{on}, so AWS refused "
                f"the call (its message did not say why; every policy layer that applies was evaluated: {checked}).")
        return text, fixes.missing_permission_fix(role_arn, c.identity_arn, action, resource, **c.where)
    if cause == "BOUNDARY_DENY":
        role = c.ev.role(role_arn)
        identity = _layer(d, "identity")
        also = " No identity policy of the role allows it either." if identity and identity.allows is False else ""
        text = (f"{caller} may not call {action}{on}: the permissions boundary "
                f"{role.boundary_arn if role else ''} of {role.name if role else 'the role'} does not allow it, "
                f"whatever the role's policies grant.{also} Evaluated: {checked}.")
        fix = fixes.boundary_fix(role, role_arn, action, resource, **c.where)
        if also:
            fix = fixes.extend(fix, fixes.comment("and, in the role's own policies:"),
                               *fixes.script_of(fixes.missing_permission_fix(role_arn, None, action, resource,
                                                                             **c.where)))
        return text, fix
    if layer in ("resource", "vpc_endpoint"):
        found = j.lookups.get(layer)
        holder = found.holder if found else LAYER_WORDS[layer]
        text = _resource_refusal(c, j, d, holder, on) + f" Evaluated: {checked}."
        return text, allow_in_layer_fix(layer, found.documents if found and found.read else (), holder=holder,
                                        action=action, resource=c.request_resource, principal=role_arn or c.identity_arn,
                                        **c.where)
    if layer == "scp":
        entity = _level_without_allow(j, d)
        text = (f"{caller} was refused {action}{on}: no service control policy attached to {entity} allows it, and "
                "every level from the organization root down to the account must (SCP evaluation). Evaluated: "
                f"{checked}.")
        return text, allow_in_layer_fix("scp", (), holder="SCPs", action=action, resource=resource,
                                        principal=role_arn, target=entity, **c.where)
    text = (f"{caller} was refused {action}{on}: {LAYER_WORDS.get(layer, layer)} does not allow it — a session gets "
            f"only what its role's policies and its session policies both allow. Evaluated: {checked}.")
    return text, allow_in_layer_fix(layer, (), holder=LAYER_WORDS.get(layer, layer), action=action, resource=resource,
                                    principal=role_arn, **c.where)


def _resource_refusal(c: DeniedCase, j: Judgement, d: AuthDecision, holder: str, on: str) -> str:
    action, caller = c.action, c.caller
    if d.layer == "vpc_endpoint":
        return (f"{holder} does not allow {action}{on}: a request through an endpoint gets only what the endpoint's "
                "policy allows.")
    identity = _layer(d, "identity")
    identity_says = ("its own policies allow it" if identity and identity.allows else
                     "its own policies do not allow it either")
    if "kms" in action.split(":", 1)[0].lower() and j.policies.resource is not None:
        account = j.request.caller.account
        return (f"{holder} neither allows {caller} {action} nor delegates to IAM (arn:aws:iam::{account}:root): "
                "a KMS key's policy must, before any identity policy counts (AWS KMS, \"Key policies\"); "
                f"{identity_says}.")
    if d.cross_account:
        return (f"The request crosses accounts ({j.request.caller.account} → the resource's): both the caller's "
                f"policies and {holder} must allow it, and {holder} does not allow {caller} {action} "
                f"({identity_says}).")
    return f"{holder} does not allow {caller} {action}{on} ({identity_says})."


def _layer(d: AuthDecision, name: str) -> LayerResult | None:
    return next((layer for layer in d.layers if layer.layer == name), None)


def _level_without_allow(j: Judgement, d: AuthDecision) -> str:
    levels = [layer for layer in d.layers if layer.layer == "scp"]
    for result in levels:
        if result.allows is False and result.level is not None:
            policies = j.policies.scps[result.level] if result.level < len(j.policies.scps) else ()
            for policy in policies:
                where = j.where(getattr(policy, "name", ""))
                if where:
                    return where
            return f"level {result.level} of the organization path"
    return "a level of the organization path"


def _checked(j: Judgement) -> str:
    parts = []
    for layer, found in j.lookups.items():
        if found.state == READ:
            parts.append(f"{found.holder} (read)")
        elif found.why:
            parts.append(f"{found.holder}: none ({found.why})")
    return "; ".join(["the role's identity policies and boundary", *parts])


def _record_unexplained(c: DeniedCase, j: Judgement, d: AuthDecision) -> None:
    """What the layers established though no cause could be: for UNEXPLAINED."""
    action = c.action
    if d.decision == ALLOW:
        refs = "; ".join(ref.describe() for ref in d.statements) or "the policies read"
        c.found.append(f"every policy layer trailscan read would allow {action}: {refs} — so the refusal comes from "
                       "outside the inventory: a layer not read, or one that changed since")
    else:
        established = []
        identity, boundary = _layer(d, "identity"), _layer(d, "boundary")
        if identity and identity.allows is False:
            established.append(f"no identity-based policy of the role allows {action}")
        elif identity and identity.allows is True:
            established.append(f"the role's identity policies allow {action}")
        if boundary and boundary.allows is False:
            established.append("its permissions boundary does not allow it")
        if established:
            c.found.append("; ".join(established))
        keys = [("the request's resource" if key == UNKNOWN_RESOURCE else key) for key in d.missing_keys]
        if keys:
            c.found.append(f"whether {LAYER_WORDS.get(d.layer or '', 'a policy')} refuses it depends on "
                           f"{', '.join(keys)}, which the CloudTrail records do not show")
    for item in j.unread:
        c.unchecked.append(item)
    for found in j.lookups.values():
        if found.state not in ("read", "none") and found.command:
            c.to_read.append((found.holder, found.command, found.name))


def message_note(c: DeniedCase, effect: str, layer: str | None) -> str:
    """What trailscan's own evaluation says beside AWS's message: the statements that deny,
    or that its reading disagrees (AWS's message wins)."""
    judged = c.judged()
    if isinstance(judged, str) or layer is None:
        return ""
    d = judged.decision
    if effect == "explicit_deny" and d.decision == EXPLICIT_DENY and d.layer == layer:
        return f"It is {_refs_text(judged, d)}."
    if effect == "implicit_deny" and d.decision == IMPLICIT_DENY and d.layer == layer:
        return ""
    found = judged.lookups.get(layer)
    if found is not None and found.state not in ("read", "none"):
        return f"(trailscan could not name the statement: {found.holder}: {found.why}.)"
    return (f"trailscan's own reading of the policies says {d.describe()}: they may have changed since, or depend on "
            "what CloudTrail does not show; AWS's answer stands.")


def aws_answer_verdict(c: DeniedCase) -> Verdict | None:
    """AWS's Access Troubleshooter evaluation decides, when it was read (see :mod:`trailscan.troubleshooter`);
    trailscan's own evaluation is shown beside it, and when they disagree the finding says
    so — AWS's answer stands."""
    authorization = c.denial.authorization_id
    if not authorization:
        return None
    layers = c.ev.inv.layers
    answer = layers.answers.get(authorization)
    if answer is None:
        gap = layers.gaps.get(f"authorization:{authorization}")
        if gap:
            c.unchecked.append(f"AWS's own evaluation (authorization id {authorization}): {gap}")
        return None
    check = answer.deciding(c.action)
    cause = cause_of(_DECISION.get(check.effect, ""), check.layer) if check else None
    if check is None or cause is None:
        c.found.append(f"AWS's own evaluation (authorization id {authorization}) names no check that refused "
                       f"{c.action}")
        return None
    said = (f"AWS's own evaluation (Access Troubleshooter, authorization id {authorization}): "
            f"{check.describe(answer.policies)}.")
    judged = c.judged()
    ours = _ours(c, judged)
    if ours is not None and ours[0] == cause:
        return c.verdict(cause, f"{said} trailscan's evaluation agrees: {ours[1]}", ours[2])
    mine = ("trailscan could not evaluate it" if isinstance(judged, str) else
            f"trailscan's evaluation of the policies it read says {judged.decision.describe()}")
    text = (f"{said} {mine} — they disagree, and AWS's answer stands (the inventory may be out of date, or the "
            "decision depends on what CloudTrail does not show).")
    return c.verdict(cause, f"{c.caller} was refused {c.action}. {text}", _fix_for(c, cause, check.layer))


_DECISION = {"EXPLICIT_DENY": EXPLICIT_DENY, "IMPLICIT_DENY": IMPLICIT_DENY}


def _ours(c: DeniedCase, judged: Judgement | str) -> tuple[str, str, str, str | None] | None:
    if isinstance(judged, str):
        return None
    saved = list(c.found), list(c.unchecked), list(c.to_read)
    outcome = layered_outcome(c, judged)
    c.found[:], c.unchecked[:], c.to_read[:] = saved  # only the outcome is wanted here
    return outcome


def _fix_for(c: DeniedCase, cause: str, layer: str) -> str:
    """A fix in the layer AWS named, when trailscan's own evaluation reached another."""
    if cause == "MISSING_PERMISSION":
        return fixes.missing_permission_fix(c.role_arn, c.identity_arn, c.action, c.resource, **c.where)
    if cause == "BOUNDARY_DENY":
        return fixes.boundary_fix(c.ev.role(c.role_arn), c.role_arn, c.action, c.resource, **c.where)
    if cause == "RESOURCE_POLICY_DENY":
        which = "VPC endpoint policy" if layer == "vpc_endpoint" else "resource policy"
        return fixes.resource_policy_fix(which, c.role_arn or c.identity_arn, c.action, c.resource)
    return fixes.fix(f"Change {LAYER_WORDS.get(layer, layer)} that AWS names so it no longer refuses {c.action} to this "
                     "caller: an explicit deny beats every Allow, and every SCP level must allow.")
