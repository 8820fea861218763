"""The cause table: every cause trailscan can assert, in the order a finding's root cause is chosen.

This table is the one place a cause is defined.  The decision modules (:mod:`.irsa`,
:mod:`.pod_identity`, :mod:`.denied`) declare their rules against it, and a test checks
that their order is this order; :class:`~trailscan.findings.Finding` refuses a cause
that is not here; the report takes its titles from here; and the README's table of
causes is checked against it (``tests/test_layout.py``).

To add a cause: a row here, in its place of precedence; a rule in the decision module
of its kind that may return it; a scenario in the tests that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAUSES", "KINDS", "Cause", "cause", "codes"]

#: The kinds of finding, and ``any`` for a cause every kind may end in.
KINDS = ("irsa", "pod_identity", "denied_call")


@dataclass(frozen=True)
class Cause:
    """One cause: its code, the kind of finding it belongs to, a title for people, and
    what it means (the README's table)."""

    code: str
    kind: str
    title: str
    meaning: str


CAUSES: tuple[Cause, ...] = (
    Cause("INVALID_ROLE_ARN", "irsa", "The requested role ARN is malformed",
          "the requested ARN is malformed (`ValidationError`)"),
    Cause("TOKEN_EXPIRED", "irsa", "The service-account token had expired",
          "`ExpiredTokenException`"),
    Cause("IDP_UNREACHABLE", "irsa", "STS could not reach the cluster's OIDC issuer",
          "`IDPCommunicationError`"),
    Cause("OIDC_PROVIDER_MISSING", "irsa", "IAM has no OIDC provider for the cluster's issuer",
          "IAM has no OIDC provider for the cluster's issuer"),
    Cause("OIDC_THUMBPRINT_MISMATCH", "irsa", "The OIDC provider's thumbprint does not match",
          "the provider's thumbprint does not match"),
    Cause("SA_NOT_FOUND", "irsa", "The token names a service account the cluster does not have",
          "the token's subject names a service account the cluster does not have"),
    Cause("SA_NOT_ANNOTATED", "irsa", "The service account has no eks.amazonaws.com/role-arn annotation",
          "the service account exists but has no `eks.amazonaws.com/role-arn`"),
    Cause("ROLE_MISMATCH", "irsa", "The pod asked for a role other than its service account's annotation",
          "the pod asked for a role other than its service account's `role-arn` annotation (annotation "
          "changed, pod not restarted; or `AWS_ROLE_ARN` overridden)"),
    Cause("ROLE_NOT_FOUND", "irsa", "The requested role does not exist",
          "the requested role does not exist"),
    Cause("TRUST_PROVIDER_MISMATCH", "irsa", "No trust statement federates this cluster's OIDC provider",
          "no trust statement federates this cluster's OIDC provider (e.g. recreated or other cluster)"),
    Cause("TRUST_ACTION_MISSING", "irsa", "The trust policy does not allow sts:AssumeRoleWithWebIdentity",
          "the matching statement does not allow `sts:AssumeRoleWithWebIdentity`"),
    Cause("TRUST_SUBJECT_MISMATCH", "irsa", "The trust policy's sub condition excludes the service account",
          "provider matches, but the `…:sub` condition excludes `system:serviceaccount:NS:SA`"),
    Cause("TRUST_AUDIENCE_MISMATCH", "irsa", "The trust policy's aud condition does not admit the token's audience",
          "the `…:aud` condition does not admit the token's audience, or `:aud` holds a subject"),
    Cause("POD_IDENTITY_TRUST", "pod_identity",
          "The role does not trust pods.eks.amazonaws.com for sts:AssumeRole and sts:TagSession",
          "the role does not trust `pods.eks.amazonaws.com` for both `sts:AssumeRole` and `sts:TagSession`"),
    Cause("POD_IDENTITY_AGENT_DENIED", "pod_identity", "The node role may not call eks-auth:AssumeRoleForPodIdentity",
          "the node role may not call `eks-auth:AssumeRoleForPodIdentity`"),
    Cause("NODE_ROLE_FALLBACK", "denied_call",
          "The call used the node's instance role: the pod never got its own credentials",
          "the call used the node's instance role: the pod never got its own credentials"),
    Cause("EXPLICIT_DENY", "denied_call", "An explicit deny refused the call",
          "an explicit deny (identity policy, SCP, RCP, boundary or session policy; which one, and its statement, "
          "in the explanation), or an SCP level or session policy that does not allow the action"),
    Cause("BOUNDARY_DENY", "denied_call", "The permissions boundary does not allow the action",
          "no permissions boundary allows the action"),
    Cause("RESOURCE_POLICY_DENY", "denied_call", "The resource's policy does not allow the caller",
          "the resource's policy (bucket, KMS key, queue, topic, secret, repository, function, trust) or the VPC "
          "endpoint's does not allow the caller, or denies it; which one in the explanation"),
    Cause("MISSING_PERMISSION", "denied_call", "No identity policy of the role allows the action",
          "no identity policy of the role allows the action; fix names the statement to add"),
    Cause("UNEXPLAINED", "any", "The cause could not be established",
          "none of the above could be established; the explanation lists the evidence checked"),
)

_BY_CODE = {entry.code: entry for entry in CAUSES}


def cause(code: str) -> Cause:
    """The table's row for *code*; :class:`KeyError` for a code that is not a cause."""
    return _BY_CODE[code]


def codes(kind: str | None = None) -> tuple[str, ...]:
    """The cause codes of *kind* (every cause when None), in precedence order; ``any``
    causes close every kind's list."""
    if kind is None:
        return tuple(_BY_CODE)
    return tuple(entry.code for entry in CAUSES if entry.kind == kind) + tuple(
        entry.code for entry in CAUSES if entry.kind == "any"
    )
