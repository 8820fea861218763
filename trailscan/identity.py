"""CloudTrail identity shapes, owned in one place.

Every other stage asks this module who made a call: which service account a
web-identity subject names, whether a session is a node's instance role, which pod
an EKS Pod Identity session belongs to, which AWS SDK (and version) sent the
request.  Everything here is a pure function over plain values taken from a
CloudTrail record: no DuckDB, no boto3, no printing.

Shapes understood (each has a test in ``tests/test_identity.py``):

* the web-identity subject ``system:serviceaccount:NAMESPACE:NAME`` (CloudTrail's
  ``userIdentity.userName`` of a ``WebIdentityUser``), see :func:`parse_subject`;
* a ``WebIdentityUser``'s ``principalId`` — ``PROVIDER:AUDIENCE:SUBJECT`` where the
  provider is an ``oidc-provider`` ARN (which itself holds colons) — and its
  ``identityProvider``, see :func:`parse_web_identity`;
* assumed-role session ARNs ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``,
  see :func:`session_name_of` and :func:`role_arn_of_session`;
* node sessions: ``sessionContext.ec2RoleDelivery`` set (the instance metadata
  service delivered the credentials) or an EC2 instance id as session name,
  see :func:`is_node_session`;
* EKS Pod Identity session tags (``eks-cluster-name``, ``kubernetes-namespace``,
  ``kubernetes-service-account``, ``kubernetes-pod-name`` …) as CloudTrail writes
  them in ``requestParameters.tags`` of the ``pods.eks.amazonaws.com`` AssumeRole
  (``[{"key": …, "value": …}]``), as the IAM API spells them
  (``[{"Key": …, "Value": …}]``), or as a mapping (``principalTags``),
  see :func:`pod_identity_tags`;
* ``userAgent`` strings of every AWS SDK and CLI, see :func:`parse_user_agent`,
  with the minimum versions that can use IRSA and EKS Pod Identity credentials
  (:data:`MINIMUM_VERSIONS`, :func:`credential_support`);
* callers that cannot be an EKS pod's identity — IAM users, root, federated users, SAML
  and Identity Center users, AWS services other than EKS, service-linked roles, web
  identities that are no Kubernetes service-account token — see :func:`not_a_pod_identity`
  and :func:`not_a_kubernetes_token`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trailscan.arn import (
    issuer_id,
    issuer_of,
    provider_arn_for,
    role_arn_of_session,
    service_linked_role_service,
    session_name_of,
)

__all__ = [
    "MINIMUM_VERSIONS",
    "POD_IDENTITY_SERVICE",
    "SUBJECT_PREFIX",
    "CredentialSupport",
    "PodIdentityTags",
    "Sdk",
    "ServiceAccountRef",
    "WebIdentity",
    "credential_support",
    "is_eks_service",
    "is_instance_id",
    "is_node_session",
    "issuer_id",
    "issuer_of",
    "not_a_kubernetes_token",
    "not_a_pod_identity",
    "parse_subject",
    "parse_user_agent",
    "parse_web_identity",
    "pod_identity_tags",
    "provider_arn_for",
    "role_arn_of_session",
    "session_name_of",
]

SUBJECT_PREFIX = "system:serviceaccount:"
POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"

# --------------------------------------------------------------------------
# Web identity (IRSA)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceAccountRef:
    """A Kubernetes service account named by CloudTrail: namespace and name."""

    namespace: str
    name: str

    @property
    def subject(self) -> str:
        return f"{SUBJECT_PREFIX}{self.namespace}:{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_subject(subject: str | None) -> ServiceAccountRef | None:
    """``system:serviceaccount:NS:NAME`` → ``ServiceAccountRef(NS, NAME)``; anything else → None.

    Kubernetes names hold no colon, so exactly two parts must follow the prefix.
    """
    if not subject or not subject.startswith(SUBJECT_PREFIX):
        return None
    parts = subject[len(SUBJECT_PREFIX) :].split(":")
    if len(parts) != 2 or not all(parts):
        return None
    return ServiceAccountRef(parts[0], parts[1])


@dataclass(frozen=True)
class WebIdentity:
    """What a ``WebIdentityUser`` record says about the token that was presented.

    ``provider_arn`` is the IAM OIDC provider ARN when CloudTrail gives one;
    ``issuer`` the issuer as ``host/path`` (``oidc.eks.REGION.amazonaws.com/id/ID``);
    ``audience`` the token's ``aud`` (from ``principalId``); ``subject`` its ``sub``.
    """

    provider_arn: str | None
    issuer: str | None
    audience: str | None
    subject: str | None

    @property
    def service_account(self) -> ServiceAccountRef | None:
        return parse_subject(self.subject)


_PROVIDER_MARKER = ":oidc-provider/"


def parse_web_identity(
    *, user_name: str | None = None, principal_id: str | None = None, identity_provider: str | None = None
) -> WebIdentity:
    """Read a ``WebIdentityUser``'s ``userName``, ``principalId`` and ``identityProvider``.

    ``principalId`` is ``PROVIDER:AUDIENCE:SUBJECT``.  The provider is usually an ARN
    (``arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC``,
    five colons of its own), sometimes the issuer host; the subject holds colons too
    (``system:serviceaccount:NS:NAME``).  So the provider is cut off by its known
    shape (or by ``identityProvider``), the subject by ``userName`` when given, and
    what is left between them is the audience.
    """
    provider = identity_provider or None
    subject = user_name or None
    audience = None
    rest = principal_id or ""
    if rest:
        if provider and rest.startswith(provider + ":"):
            rest = rest[len(provider) + 1 :]
        elif rest.startswith("arn:") and _PROVIDER_MARKER in rest:
            parts = rest.split(":", 6)
            if len(parts) == 7:
                provider = provider or ":".join(parts[:6])
                rest = parts[6]
            else:
                rest = ""
        else:
            head, sep, tail = rest.partition(":")
            if sep:
                provider = provider or head
                rest = tail
            else:
                rest = ""
        if rest:
            if subject and rest.endswith(":" + subject):
                audience = rest[: -len(subject) - 1] or None
            elif SUBJECT_PREFIX in rest:
                index = rest.index(SUBJECT_PREFIX)
                audience = rest[: index - 1] if index > 0 else None
                subject = subject or rest[index:]
            else:
                audience, _, tail = rest.partition(":")
                subject = subject or tail or None
    return WebIdentity(provider, issuer_of(provider) if provider else None, audience, subject)


# --------------------------------------------------------------------------
# Assumed-role sessions and nodes
# --------------------------------------------------------------------------

_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")


def is_instance_id(value: str | None) -> bool:
    """An EC2 instance id (``i-`` and 8 or 17 hex digits)."""
    return bool(value) and _INSTANCE_ID.match(value) is not None


def is_node_session(*, ec2_role_delivery: Any = None, session_name: str | None = None) -> bool:
    """Whether credentials came from the node's instance profile.

    ``sessionContext.ec2RoleDelivery`` (``"1.0"``/``"2.0"``: IMDSv1/v2) is set only on
    credentials the instance metadata service delivered; EC2 also names such
    sessions after the instance (``i-0a1b2c3d4e5f60718``).  Either one suffices.
    """
    return bool(ec2_role_delivery) or is_instance_id(session_name)


# --------------------------------------------------------------------------
# EKS Pod Identity session tags
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class PodIdentityTags:
    """The session tags EKS Pod Identity puts on every session it creates."""

    cluster: str | None
    namespace: str | None
    service_account: str | None
    pod_name: str | None = None
    cluster_arn: str | None = None

    @property
    def workload(self) -> ServiceAccountRef | None:
        if self.namespace and self.service_account:
            return ServiceAccountRef(self.namespace, self.service_account)
        return None


def _tag_mapping(tags: Any) -> dict[str, str]:
    """Tags in any of their shapes as ``{key: value}``."""
    if isinstance(tags, Mapping):
        if "tags" in tags and not isinstance(tags.get("tags"), str):
            return _tag_mapping(tags["tags"])
        return {str(k): str(v) for k, v in tags.items() if not isinstance(v, (Mapping, list))}
    found: dict[str, str] = {}
    if isinstance(tags, list):
        for item in tags:
            if not isinstance(item, Mapping):
                continue
            key = item.get("key", item.get("Key"))
            value = item.get("value", item.get("Value"))
            if key is not None and value is not None:
                found[str(key)] = str(value)
    return found


def pod_identity_tags(tags: Any) -> PodIdentityTags | None:
    """The Pod Identity session tags in *tags*, or None when none are there.

    *tags* is ``requestParameters.tags`` of the ``pods.eks.amazonaws.com`` AssumeRole
    (``[{"key": "kubernetes-namespace", "value": "ns-a"}, …]``), the IAM API's
    ``[{"Key": …, "Value": …}]``, a ``{key: value}`` mapping (``principalTags``), or a
    whole ``requestParameters`` object holding ``tags``.
    """
    mapping = _tag_mapping(tags)
    tags_of_interest = (
        "eks-cluster-name",
        "eks-cluster-arn",
        "kubernetes-namespace",
        "kubernetes-service-account",
        "kubernetes-pod-name",
    )
    if not any(key in mapping for key in tags_of_interest):
        return None
    cluster_arn = mapping.get("eks-cluster-arn")
    cluster = mapping.get("eks-cluster-name")
    if not cluster and cluster_arn and ":cluster/" in cluster_arn:
        cluster = cluster_arn.split(":cluster/", 1)[1]
    return PodIdentityTags(
        cluster=cluster or None,
        namespace=mapping.get("kubernetes-namespace") or None,
        service_account=mapping.get("kubernetes-service-account") or None,
        pod_name=mapping.get("kubernetes-pod-name") or None,
        cluster_arn=cluster_arn or None,
    )


# --------------------------------------------------------------------------
# Callers that are no EKS pod identity
# --------------------------------------------------------------------------

#: ``userIdentity.type`` values a pod's credentials never carry, and why.  A pod gets AWS
#: credentials three ways, and each is a role session, recorded as ``AssumedRole``: IRSA
#: (``sts:AssumeRoleWithWebIdentity`` with its service-account token), EKS Pod Identity
#: (``pods.eks.amazonaws.com`` calls ``sts:AssumeRole`` for it) and, failing both, the
#: node's instance profile.  CloudTrail's userIdentity reference defines these types:
_NOT_POD_TYPES = {
    # "The request was made with the credentials of an IAM user" (a long-term access key,
    # or a GetSessionToken session of that user).
    "IAMUser": "an IAM user",
    # "The request was made with your AWS account credentials."
    "Root": "the account's root user",
    # "temporary security credentials that were obtained via a call to the AWS STS
    # GetFederationToken API", itself called with root or IAM user credentials.
    "FederatedUser": "a federated user (sts:GetFederationToken, called with an IAM user's or root's keys)",
    # "The request was made with SAML assertion": a person signing in through an identity provider.
    "SAMLUser": "a SAML-federated user",
    # "a request made on behalf of an IAM Identity Center user".
    "IdentityCenterUser": "an IAM Identity Center user",
}


def is_eks_service(name: str | None) -> bool:
    """Whether an AWS service principal is one of EKS's (``eks.amazonaws.com``,
    ``eks-nodegroup.amazonaws.com``, ``eks-fargate.amazonaws.com``, ``pods.eks.amazonaws.com`` …)."""
    labels = (name or "").lower().split(".")
    return "eks" in labels or labels[0].startswith("eks")


def not_a_pod_identity(
    *,
    identity_type: str | None,
    session_issuer_arn: str | None = None,
    invoked_by: str | None = None,
) -> str | None:
    """Why a caller (the ``userIdentity`` of a CloudTrail record) cannot be an EKS pod's
    identity; None when it may be one, or when nothing says.

    Only positive evidence counts: an IAM user, root, a federated, SAML or Identity Center
    user (:data:`_NOT_POD_TYPES`); an ``AWSService`` other than EKS ("made by an AWS
    account that belongs to an AWS service" — the one such caller a pod's credentials
    involve is ``pods.eks.amazonaws.com``); a session of a service-linked role of a
    service other than EKS (only its service can assume it, and IAM keeps the path
    ``/aws-service-role/`` for such roles).  ``AssumedRole`` sessions of other roles,
    ``AWSAccount`` (another account's caller, perhaps a pod there) and ``Unknown`` say
    nothing: None.
    """
    kind = identity_type or ""
    if kind in _NOT_POD_TYPES:
        return _NOT_POD_TYPES[kind]
    if kind == "AWSService" and not is_eks_service(invoked_by):
        return f"the AWS service {invoked_by}" if invoked_by else "an AWS service"
    service = service_linked_role_service(session_issuer_arn)
    if service and not is_eks_service(service):
        return f"the service-linked role of {service}, which only that service can assume"
    return None


def not_a_kubernetes_token(web: WebIdentity) -> str | None:
    """Why a web identity cannot be a pod's IRSA token, or None when it may be one.

    An IRSA token is the pod's projected service-account token: its subject is
    ``system:serviceaccount:NS:NAME`` and EKS's issuer ``oidc.eks.REGION.amazonaws.com/id/…``.
    A known issuer outside EKS *and* a subject that names no service account (GitHub
    Actions' ``repo:…``, a Cognito or Google user) is no Kubernetes token at all.  A
    service-account subject from another issuer (a self-managed cluster) is not ruled out.
    """
    if web.service_account is not None or not web.issuer or web.issuer.startswith("oidc.eks."):
        return None
    subject = web.subject or "unknown"
    return f"a web identity from {web.issuer} (subject {subject}), no Kubernetes service-account token"


# --------------------------------------------------------------------------
# SDKs from userAgent
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sdk:
    """An AWS SDK or CLI recognised in a ``userAgent``: ``key`` (see
    :data:`MINIMUM_VERSIONS`), a human ``label`` and the ``version`` it reported."""

    key: str
    label: str
    version: str

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return _version_tuple(self.version)

    def __str__(self) -> str:
        return f"{self.label} {self.version}"


#: Minimum versions able to use each kind of pod credentials, from the Amazon EKS user
#: guide ("Use IRSA with the AWS SDK", "Use pod identity with the AWS SDK").
#: ``key: (label, IRSA minimum, Pod Identity minimum)``; ``"0"`` means every version,
#: ``None`` that the guide gives no number we can compare with what the SDK reports.
#: Notes: Java v1 web identity support arrived in 1.11.704 (the guide now lists the later
#: 1.12.782); the Go v2 and .NET user agents report their core module (Go v2's
#: ``release-2023-11-14`` shipped with core 1.23.0 the next day; .NET's 3.7.734.0 bundle
#: is AWSSDK.Core 3.7.302).
MINIMUM_VERSIONS: dict[str, tuple[str, str | None, str | None]] = {
    "boto3": ("Boto3", "1.9.220", "1.34.41"),
    "botocore": ("botocore", "1.12.200", "1.34.41"),
    "aws-cli-v1": ("AWS CLI v1", "1.16.232", "1.30.0"),
    "aws-cli-v2": ("AWS CLI v2", "0", "2.15.0"),
    "go-v1": ("AWS SDK for Go v1", "1.23.13", "1.47.11"),
    "go-v2": ("AWS SDK for Go v2", "0", "1.23.0"),
    "java-v1": ("AWS SDK for Java v1", "1.11.704", "1.12.746"),
    "java-v2": ("AWS SDK for Java v2", "2.10.11", "2.21.30"),
    "js-v2": ("AWS SDK for JavaScript v2", "2.525.0", "2.1550.0"),
    "js-v3": ("AWS SDK for JavaScript v3", "3.27.0", "3.458.0"),
    "ruby": ("AWS SDK for Ruby", "3.58.0", "3.188.0"),
    "php": ("AWS SDK for PHP", "3.110.7", "3.287.1"),
    "cpp": ("AWS SDK for C++", "1.7.174", "1.11.263"),
    "dotnet": ("AWS SDK for .NET", "3.3.659.1", "3.7.302"),
    "kotlin": ("AWS SDK for Kotlin", "0", "1.0.1"),
    "rust": ("AWS SDK for Rust", "0", None),
    "powershell": ("AWS Tools for PowerShell", None, "4.1.502"),
}

_VERSION = r"v?(\d+(?:\.\d+)*)"
# Order matters: a CLI or Boto3 user agent also names botocore; Go v2 starts like Go v1.
_SDK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("aws-cli", re.compile(r"(?:^|\s)aws-cli/" + _VERSION)),
    ("boto3", re.compile(r"(?:^|\s)Boto3/" + _VERSION, re.IGNORECASE)),
    ("botocore", re.compile(r"(?:^|\s)Botocore/" + _VERSION, re.IGNORECASE)),
    ("go-v2", re.compile(r"aws-sdk-go-v2/" + _VERSION)),
    ("go-v1", re.compile(r"aws-sdk-go/" + _VERSION)),
    ("java", re.compile(r"aws-sdk-java/" + _VERSION)),
    ("js-v3", re.compile(r"aws-sdk-(?:nodejs|js)-v3-\S*?/" + _VERSION)),
    ("js", re.compile(r"aws-sdk-(?:nodejs|js)/" + _VERSION)),
    ("ruby", re.compile(r"aws-sdk-ruby\d?/" + _VERSION)),
    ("php", re.compile(r"aws-sdk-php/" + _VERSION)),
    ("cpp", re.compile(r"aws-sdk-cpp/" + _VERSION)),
    ("dotnet", re.compile(r"aws-sdk-dotnet-(?:core|coreclr|45|35|netstandard)[^/\s]*/" + _VERSION)),
    ("kotlin", re.compile(r"aws-sdk-kotlin/" + _VERSION)),
    ("rust", re.compile(r"aws-sdk-rust/" + _VERSION)),
    ("powershell", re.compile(r"AWSPowerShell(?:\.NetCore|\.Common)?/" + _VERSION)),
)


def parse_user_agent(user_agent: str | None) -> Sdk | None:
    """The AWS SDK or CLI that sent a request, from CloudTrail's ``userAgent``; None if none.

    Examples: ``Boto3/1.34.69 md/Botocore#1.34.69 … Botocore/1.34.69`` → Boto3 1.34.69;
    ``aws-sdk-go/1.45.1 (go1.21.4; linux; amd64)`` → Go v1; ``aws-sdk-go-v2/1.21.2 …``
    → Go v2; ``aws-sdk-java/2.25.16 …`` → Java v2 (``1.x`` → v1);
    ``aws-sdk-nodejs/2.1000.0 …`` → JavaScript v2, ``aws-sdk-js/3.540.0 …`` → v3;
    ``aws-cli/2.15.38 …`` → AWS CLI v2.  A request that went through an AWS service
    (``userAgent`` such as ``ec2.amazonaws.com``) names no SDK.
    """
    text = user_agent or ""
    for key, pattern in _SDK_PATTERNS:
        match = pattern.search(text)
        if not match:
            continue
        version = match.group(1)
        major = _version_tuple(version)[:1] or (0,)
        if key == "aws-cli":
            key = "aws-cli-v2" if major[0] >= 2 else "aws-cli-v1"
        elif key == "java":
            key = "java-v2" if major[0] >= 2 else "java-v1"
        elif key == "js":
            key = "js-v3" if major[0] >= 3 else "js-v2"
        return Sdk(key, MINIMUM_VERSIONS[key][0], version)
    return None


@dataclass(frozen=True)
class CredentialSupport:
    """Whether an SDK version can use pod credentials at all.

    ``irsa`` / ``pod_identity`` are True, False, or None when no minimum is known;
    the ``…_minimum`` fields hold the version the EKS guide names (``"0"``: every version).
    """

    sdk: Sdk
    irsa: bool | None
    irsa_minimum: str | None
    pod_identity: bool | None
    pod_identity_minimum: str | None


def credential_support(sdk: Sdk) -> CredentialSupport:
    """Compare *sdk*'s version with :data:`MINIMUM_VERSIONS`."""
    _label, irsa_min, pod_min = MINIMUM_VERSIONS[sdk.key]
    have = sdk.version_tuple

    def at_least(minimum: str | None) -> bool | None:
        if minimum is None or not have:
            return None
        return _pad(have) >= _pad(_version_tuple(minimum))

    return CredentialSupport(sdk, at_least(irsa_min), irsa_min, at_least(pod_min), pod_min)


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", version)
    return tuple(int(n) for n in numbers)


def _pad(version: tuple[int, ...], width: int = 4) -> tuple[int, ...]:
    return version + (0,) * (width - len(version))
