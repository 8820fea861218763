"""The cause table: every cause trailscan can assert, in the order a root cause is chosen.

This table is the one place a cause is defined.  It has two sections:

* :data:`CAUSES`, the causes of findings (kinds ``irsa``, ``pod_identity``,
  ``denied_call``, and ``any``), in the order a finding's root cause is chosen.  The
  decision modules (:mod:`.irsa`, :mod:`.pod_identity`, :mod:`.denied`) declare their
  rules against it, and a test checks that their order is this order;
  :class:`~trailscan.findings.Finding` refuses a cause that is not here; the report takes
  its titles from here.
* :data:`DOCTOR_CAUSES`, kind ``doctor``: what ``trailscan doctor`` can assert about a
  pod before (or without) CloudTrail, in the order its root cause is chosen among the
  failing checks.  The checks of :mod:`trailscan.doctor` declare the causes each may
  return against it.

A code may belong to several kinds — ``TOKEN_EXPIRED`` is both a refused web identity
in CloudTrail and a token the doctor read — with one row per kind, each with the title
and meaning that kind's reader needs (:func:`kinds_of`).  The README's tables of causes
are checked against both sections (``tests/test_layout.py``).

To add a cause: a row here, in its place of precedence; a rule in the decision module
of its kind (or a doctor check) that may return it; a scenario in the tests that
produces it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAUSES", "DOCTOR", "DOCTOR_CAUSES", "FAMILIES", "FAMILY_OF", "KINDS", "Cause", "cause", "codes", "doctor_cause",
           "family", "kinds_of"]

#: The kinds of finding, and ``any`` for a cause every kind may end in.
KINDS = ("irsa", "pod_identity", "denied_call")

#: The kind of the doctor's causes (not a kind of finding).
DOCTOR = "doctor"


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

#: The doctor's causes: what it finds in a pod, its service account, the cluster and the
#: network, in the order its root cause is chosen among failing checks (what is wired
#: before what it carries: the annotation before the injection, the injection before the
#: token, DNS before the connection, the credentials before whose they are, then the
#: OIDC provider, the role and its trust policy, as findings rank them).  ``UNEXPLAINED`` (kind ``any``) closes this list too.
DOCTOR_CAUSES: tuple[Cause, ...] = (
    Cause("SA_NOT_ANNOTATED", DOCTOR, "The service account names no IAM role",
          "the pod's service account has no `eks.amazonaws.com/role-arn` annotation and no Pod Identity "
          "association"),
    Cause("POD_PREDATES_ANNOTATION", DOCTOR, "The pod started before its service account's annotation last changed",
          "the pod was created before the `role-arn` annotation was set or changed (managedFields): the webhook "
          "mutates pods only when they are created, so the pod must be restarted"),
    Cause("WEBHOOK_MISSING", DOCTOR, "The pod identity webhook does not mutate this pod",
          "no `pod-identity-webhook` MutatingWebhookConfiguration is present, or its selectors leave this pod out"),
    Cause("NO_CREDENTIALS_INJECTED", DOCTOR, "No IRSA or Pod Identity credentials reached the pod",
          "neither `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` nor `AWS_CONTAINER_CREDENTIALS_FULL_URI` + "
          "`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` are set: the SDK finds no credentials of the pod's own"),
    Cause("TOKEN_UNREADABLE", DOCTOR, "The projected token file cannot be read",
          "the token file is missing or not readable by the container's user (`runAsUser`/`fsGroup` against "
          "the file's owner and mode)"),
    Cause("TOKEN_EXPIRED", DOCTOR, "The projected token has expired",
          "the token's `exp` is past: the kubelet stopped refreshing it, or the file is a copy"),
    Cause("TOKEN_AUDIENCE_MISMATCH", DOCTOR, "The token's audience is not the one its credential method needs",
          "the token's `aud` is not `sts.amazonaws.com` (or the service account's `eks.amazonaws.com/audience`) "
          "for IRSA, or `pods.eks.amazonaws.com` for Pod Identity"),
    Cause("TOKEN_SUBJECT_MISMATCH", DOCTOR, "The token names another service account than the pod's",
          "the token's `sub` is not `system:serviceaccount:NS:SA` of the pod: a copied token, or a token file "
          "variable pointing at another account's token"),
    Cause("COREDNS_UNAVAILABLE", DOCTOR, "No CoreDNS pod is running and ready",
          "no `k8s-app=kube-dns` pod in `kube-system` is Running and Ready"),
    Cause("DNS_RESOLUTION_FAILED", DOCTOR, "The AWS endpoint's name does not resolve",
          "the endpoint's host name does not resolve (no such name, or no answer from the resolver)"),
    Cause("ENDPOINT_UNREACHABLE", DOCTOR, "The AWS endpoint cannot be reached",
          "the endpoint resolves, but the TCP connection or the TLS handshake fails (directly or through the proxy)"),
    Cause("POD_IDENTITY_AGENT_MISSING", DOCTOR, "The EKS Pod Identity agent does not answer for this pod",
          "no ready `eks-pod-identity-agent` pod runs on the pod's node, or nothing answers at "
          "`AWS_CONTAINER_CREDENTIALS_FULL_URI` (169.254.170.23)"),
    Cause("IMDS_UNREACHABLE", DOCTOR, "The instance metadata service does not answer",
          "the SDK's last resort, the instance metadata service, does not answer (disabled, or an IMDSv2 hop "
          "limit of 1 keeps containers out), so nothing at all is found"),
    Cause("NODE_ROLE_FALLBACK", DOCTOR, "The pod runs as the node's instance role",
          "`sts:GetCallerIdentity` answers with the node's instance role: the pod never got its own credentials"),
    Cause("OIDC_PROVIDER_MISSING", DOCTOR, "IAM has no OIDC provider for the token's issuer",
          "the role's account has no IAM OIDC provider for the token's `iss`"),
    Cause("ROLE_NOT_FOUND", DOCTOR, "The role the pod asks for does not exist",
          "the IAM inventory of the role's account has no role named by `AWS_ROLE_ARN` or the annotation"),
    Cause("TRUST_PROVIDER_MISMATCH", DOCTOR, "No trust statement federates the token's OIDC provider",
          "no statement of the role's trust policy federates the token's issuer"),
    Cause("TRUST_ACTION_MISSING", DOCTOR, "The trust policy does not allow sts:AssumeRoleWithWebIdentity",
          "the statement for the provider does not allow `sts:AssumeRoleWithWebIdentity`"),
    Cause("TRUST_SUBJECT_MISMATCH", DOCTOR, "The trust policy's sub condition excludes the token's subject",
          "the `…:sub` condition excludes the token's `sub`"),
    Cause("TRUST_AUDIENCE_MISMATCH", DOCTOR, "The trust policy or the OIDC provider does not admit the token's audience",
          "the `…:aud` condition, or the provider's client ids, do not admit the token's `aud`"),
)

_BY_CODE = {entry.code: entry for entry in CAUSES}
_DOCTOR_BY_CODE = {entry.code: entry for entry in DOCTOR_CAUSES}
_ANY = tuple(entry.code for entry in CAUSES if entry.kind == "any")


def cause(code: str) -> Cause:
    """The findings table's row for *code*; :class:`KeyError` for a code that is not a
    cause of findings (doctor causes: :func:`doctor_cause`)."""
    return _BY_CODE[code]


def doctor_cause(code: str) -> Cause:
    """The doctor's row for *code* (an ``any`` cause's own row for ``UNEXPLAINED``);
    :class:`KeyError` for a code the doctor cannot assert."""
    if code in _DOCTOR_BY_CODE:
        return _DOCTOR_BY_CODE[code]
    if code in _ANY:
        return _BY_CODE[code]
    raise KeyError(code)


def kinds_of(code: str) -> tuple[str, ...]:
    """Every kind *code* belongs to: findings kinds (or ``any``) first, then ``doctor``."""
    found = tuple(entry.kind for entry in CAUSES if entry.code == code)
    return found + ((DOCTOR,) if code in _DOCTOR_BY_CODE else ())


def codes(kind: str | None = None) -> tuple[str, ...]:
    """The cause codes of *kind* (every cause of findings when None), in precedence
    order; ``any`` causes close every kind's list, ``doctor`` included."""
    if kind is None:
        return tuple(_BY_CODE)
    rows = DOCTOR_CAUSES if kind == DOCTOR else CAUSES
    return tuple(entry.code for entry in rows if entry.kind == kind) + _ANY


#: The families a cause of findings belongs to, for people scanning a list: the terminal
#: colours a cause by its family, the report's badges too.  Each family: its name for
#: people, and the AWS documentation page that explains its causes.
FAMILIES: dict[str, tuple[str, str]] = {
    "trust": ("IRSA trust and OIDC",
              "https://docs.aws.amazon.com/eks/latest/userguide/associate-service-account-role.html"),
    "service_account": ("service account and token",
                        "https://docs.aws.amazon.com/eks/latest/userguide/configure-sts-endpoint.html"),
    "permissions": ("permissions and denies",
                    "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html"),
    "pod_identity": ("EKS Pod Identity",
                     "https://docs.aws.amazon.com/eks/latest/userguide/pod-id-role.html"),
    "node": ("node role fallback",
             "https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts-minimum-sdk.html"),
    "unexplained": ("unexplained",
                    "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html"),
}

#: Each cause of findings' family (a test checks every row of :data:`CAUSES` has one).
FAMILY_OF: dict[str, str] = {
    "INVALID_ROLE_ARN": "service_account",
    "TOKEN_EXPIRED": "service_account",
    "IDP_UNREACHABLE": "trust",
    "OIDC_PROVIDER_MISSING": "trust",
    "OIDC_THUMBPRINT_MISMATCH": "trust",
    "SA_NOT_FOUND": "service_account",
    "SA_NOT_ANNOTATED": "service_account",
    "ROLE_MISMATCH": "service_account",
    "ROLE_NOT_FOUND": "trust",
    "TRUST_PROVIDER_MISMATCH": "trust",
    "TRUST_ACTION_MISSING": "trust",
    "TRUST_SUBJECT_MISMATCH": "trust",
    "TRUST_AUDIENCE_MISMATCH": "trust",
    "POD_IDENTITY_TRUST": "pod_identity",
    "POD_IDENTITY_AGENT_DENIED": "pod_identity",
    "NODE_ROLE_FALLBACK": "node",
    "EXPLICIT_DENY": "permissions",
    "BOUNDARY_DENY": "permissions",
    "RESOURCE_POLICY_DENY": "permissions",
    "MISSING_PERMISSION": "permissions",
    "UNEXPLAINED": "unexplained",
}


def family(code: str) -> str:
    """The family of a cause of findings (``unexplained`` for a code without one)."""
    return FAMILY_OF.get(code, "unexplained")
