"""The words of explanations: sentences, what was not checked, and how callers are named.

Shared by the decision modules and the fixes.  Nothing here decides a cause.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from trailscan.arn import role_name
from trailscan.findings import Workload
from trailscan.identity import credential_support, parse_user_agent
from trailscan.policy import Denial

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
POD_IDENTITY_ACTION = "eks-auth:AssumeRoleForPodIdentity"


def dump(document: Any) -> str:
    return json.dumps(document, indent=2)


def sh(value: Any) -> str:
    """One shell word for a fix's command line, quoted only when needed (an ordinary ARN or
    name is printed as is).  The names come from CloudTrail, that is from callers: a web-
    identity subject or a requested role ARN may hold ``$(…)``, ``;`` or a newline, and
    fixes are made to be pasted into a terminal."""
    return shlex.quote(str(value))


def line(value: Any) -> str:
    """``value`` for a comment or a prose line of a fix: on one line, so it cannot start a
    command line of its own."""
    return " ".join(str(value).split())


def sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def unchecked_text(items: Sequence[str]) -> str:
    return "Not checked: " + "; ".join(items) + "." if items else ""


def inventory_hint(items: Sequence[str]) -> list[tuple[str, str]]:
    """The options that would let trailscan check what it could not: (option, how to get it)."""
    hints: dict[str, str] = {}
    text = " ".join(items)
    if "IAM" in text or "trust" in text or "role" in text or "polic" in text:
        hints["--iam FILE"] = "aws iam get-account-authorization-details > iam.json  (or AWS credentials: live IAM)"
    if "OIDC" in text:
        hints["--iam FILE"] = hints.get("--iam FILE", "aws iam get-account-authorization-details > iam.json")
        hints["--iam FILE (OIDC providers)"] = "aws iam list-open-id-connect-providers > oidc.json"
    if "service account" in text or "service-account" in text:
        hints["--service-accounts CLUSTER=FILE"] = (
            "kubectl get serviceaccounts -A -o json > sa.json, passed as --service-accounts CLUSTER=sa.json "
            "(or --kube-context NAME)"
        )
    if "cluster" in text or "node" in text or "association" in text:
        hints["--cluster NAME"] = "describes the EKS cluster live: OIDC issuer, node roles, Pod Identity associations"
    return list(hints.items())


def whose(role_arn: str | None, identity_arn: str | None, workload: Workload | None) -> str:
    if not role_arn:
        return identity_arn or "the caller"
    used = f" (used by {workload.label()})" if workload is not None and workload.resolution in ("exact", "by_role") else ""
    return f"the role {role_name(role_arn)}{used}"


def policy_kind(policy_type: str | None) -> str:
    return {
        "identity": "an identity-based policy",
        "scp": "a service control policy (AWS Organizations)",
        "rcp": "a resource control policy (AWS Organizations)",
        "boundary": "the permissions boundary",
        "session": "the session policy",
        "resource": "the resource-based policy",
        "vpce": "the VPC endpoint policy",
    }.get(policy_type or "", "a policy AWS does not name")


def denial_phrase(denial: Denial) -> str:
    if denial.reason == "explicit_deny":
        return f"an explicit deny in {policy_kind(denial.policy_type)}"
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


def sdk_sentence(user_agent: str | None) -> str:
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
