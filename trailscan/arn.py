"""ARNs, role names and OIDC issuers: the small pure helpers every stage shares.

One module so that "is this the same role?" or "which issuer is this?" has one answer:

* role ARNs ``arn:PARTITION:iam::ACCOUNT:role[/PATH]/NAME`` — :func:`role_key`,
  :func:`same_role`, :func:`role_name`, :func:`service_linked_role_service`;
* assumed-role session ARNs ``arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`` —
  :func:`session_name_of`, :func:`role_arn_of_session`;
* any ARN's account and last name segment — :func:`account_of`, :func:`resource_name`,
  and :func:`principal_name` for people (``role NAME``, ``user NAME``);
* OIDC issuers in every spelling (an issuer URL, ``host/path``, a provider ARN) —
  :func:`issuer_of`, :func:`issuer_id`, :func:`provider_arn_for`.
"""

from __future__ import annotations

import re

__all__ = [
    "account_of",
    "issuer_id",
    "issuer_of",
    "principal_name",
    "provider_arn_for",
    "resource_name",
    "role_arn_of_session",
    "role_key",
    "role_name",
    "same_role",
    "service_linked_role_service",
    "session_name_of",
    "short_name",
]

_PROVIDER_MARKER = ":oidc-provider/"
_SESSION_ARN = re.compile(
    r"^arn:(?P<partition>[\w-]+):sts::(?P<account>[^:]*):assumed-role/(?P<role>[^/]+)/(?P<session>.+)$"
)


def role_key(arn: str | None) -> tuple[str, str] | None:
    """``(account, name)`` of a role ARN, its path ignored; None for anything else.

    Role names are unique per account whatever their path, so two ARNs that differ in
    path only name the same role."""
    if not arn:
        return None
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam" or not parts[5].startswith("role/"):
        return None
    name = parts[5].rsplit("/", 1)[-1]
    if not parts[4] or not name:
        return None
    return parts[4], name


def same_role(a: str | None, b: str | None) -> bool:
    """Whether two role ARNs name one role (paths aside); other strings compare as they are."""
    if not a or not b:
        return False
    ka, kb = role_key(a), role_key(b)
    return ka == kb if ka and kb else a == b


def role_name(arn: str | None, default: str = "ROLE") -> str:
    """The last segment of a role ARN (its name), or *default*."""
    return arn.rsplit("/", 1)[-1] if arn else default


def service_linked_role_service(arn: str | None) -> str | None:
    """The service of a service-linked role ARN
    (``arn:aws:iam::1:role/aws-service-role/inspector2.amazonaws.com/AWSServiceRoleForAmazonInspector2``
    → ``inspector2.amazonaws.com``); None for any other ARN.  IAM keeps the path prefix
    ``/aws-service-role/`` for service-linked roles ("can only be used for AWS Service linked
    Roles"), so the path alone says so.  A session ARN drops the path: pass the session
    issuer's ARN."""
    parts = (arn or "").split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam":
        return None
    segments = parts[5].split("/")
    if len(segments) >= 4 and segments[0] == "role" and segments[1] == "aws-service-role" and segments[2]:
        return segments[2]
    return None


def account_of(arn: str | None) -> str | None:
    """The account field of an ARN; None when it has none (S3 ARNs, not an ARN)."""
    parts = (arn or "").split(":", 5)
    return parts[4] if len(parts) == 6 and parts[0] == "arn" and parts[4] else None


def resource_name(arn: str) -> str:
    """The last ``/`` segment of an ARN: a role's, policy's or user's name."""
    return arn.rsplit("/", 1)[-1]


def principal_name(arn: str | None) -> str:
    """A caller for people: ``…:role/path/NAME`` and ``…:assumed-role/NAME/SESSION`` →
    ``role NAME``; ``…:user/NAME`` → ``user NAME``; ``…:federated-user/NAME`` →
    ``federated user NAME``; ``arn:aws:iam::ACCOUNT:root`` → ``root of ACCOUNT``; anything
    else as it is."""
    if not arn:
        return ""
    resource = arn.split(":", 5)[-1]
    kind, _, rest = resource.partition("/")
    if kind == "assumed-role" and rest:
        return f"role {rest.split('/')[0]}"
    if kind in ("role", "user") and rest:
        return f"{kind} {rest.rsplit('/', 1)[-1]}"
    if kind == "federated-user" and rest:
        return f"federated user {rest}"
    if resource == "root" and account_of(arn):
        return f"root of {account_of(arn)}"
    return arn


def short_name(arn: str | None) -> str:
    """``arn:aws:iam::1:role/path/NAME`` → ``NAME``; an assumed-role ARN → its role's name."""
    if not arn:
        return ""
    resource = str(arn).split(":", 5)[-1]
    if resource.startswith("assumed-role/"):
        return resource.split("/")[1]
    return resource.rsplit("/", 1)[-1]


def session_name_of(arn: str | None) -> str | None:
    """``SESSION`` of ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``; None for other ARNs."""
    match = _SESSION_ARN.match(arn or "")
    return match.group("session") if match else None


def role_arn_of_session(arn: str | None) -> str | None:
    """``arn:aws:iam::ACCOUNT:role/ROLE`` for an assumed-role session ARN.

    A session ARN drops the role's path, so prefer ``sessionContext.sessionIssuer.arn``
    when the record has it; this is the fallback.
    """
    match = _SESSION_ARN.match(arn or "")
    if not match:
        return None
    return f"arn:{match.group('partition')}:iam::{match.group('account')}:role/{match.group('role')}"


def issuer_of(value: str) -> str:
    """An OIDC issuer as ``host/path``, the form IAM condition keys use.

    Accepts the issuer URL (``https://oidc.eks.eu-west-1.amazonaws.com/id/ABC``, as
    ``describe_cluster`` and the token's ``iss`` say), the bare ``host/path`` (as IAM's
    ``get-open-id-connect-provider`` says), or a provider ARN
    (``arn:aws:iam::ACCOUNT:oidc-provider/host/path``).  The host is lower-cased (DNS is
    case-insensitive); the path, whose id is case-sensitive, is kept.
    """
    text = value.strip()
    if text.startswith("arn:") and _PROVIDER_MARKER in text:
        text = text.split(_PROVIDER_MARKER, 1)[1]
    for scheme in ("https://", "http://"):
        if text.lower().startswith(scheme):
            text = text[len(scheme) :]
            break
    host, sep, path = text.rstrip("/").partition("/")
    return host.lower() + sep + path


def issuer_id(issuer: str) -> str:
    """The last path segment of an issuer (an EKS cluster's OIDC id), or the issuer itself."""
    host_path = issuer_of(issuer)
    return host_path.rsplit("/", 1)[-1] if "/" in host_path else host_path


def provider_arn_for(issuer: str, account: str, partition: str = "aws") -> str:
    """The ARN IAM gives the OIDC provider of *issuer* in *account*."""
    return f"arn:{partition}:iam::{account}:oidc-provider/{issuer_of(issuer)}"
