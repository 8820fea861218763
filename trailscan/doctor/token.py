"""The projected service-account token a pod presents: can this user read it, and what it says.

IRSA's token is the file ``AWS_WEB_IDENTITY_TOKEN_FILE`` names (the webhook mounts it at
``/var/run/secrets/eks.amazonaws.com/serviceaccount/token``, audience ``sts.amazonaws.com``
unless the service account's ``eks.amazonaws.com/audience`` says otherwise); Pod
Identity's is ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``
(``/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token``,
audience ``pods.eks.amazonaws.com``).  Both are JWTs the kubelet refreshes before they
expire; a copy, or a ``subPath`` mount (which never receives updates), goes stale.

The claims are decoded, never verified: the doctor compares what the token says with what
STS or the EKS Auth API will require of it.  The token itself is never printed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trailscan.doctor.model import FAIL, OK, WARN, Check
from trailscan.explain.fixes import fix
from trailscan.identity import SUBJECT_PREFIX

__all__ = [
    "IRSA_AUDIENCE",
    "KUBE_SA_DIR",
    "POD_IDENTITY_AUDIENCE",
    "TokenClaims",
    "TokenRead",
    "check_claims",
    "check_token_file",
    "decode_claims",
    "read_token",
]

IRSA_AUDIENCE = "sts.amazonaws.com"
POD_IDENTITY_AUDIENCE = "pods.eks.amazonaws.com"
#: Where Kubernetes mounts the pod's own (default) service-account token, when automounted.
KUBE_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

#: The kubelet replaces a projected token once 80% of its lifetime has passed (or after 24 h).
_REFRESH_SHARE = 0.8


@dataclass(frozen=True)
class TokenClaims:
    """What a service-account JWT claims (decoded, not verified)."""

    issuer: str | None
    subject: str | None
    audiences: tuple[str, ...]
    expires: datetime | None
    issued: datetime | None
    namespace: str | None = None
    service_account: str | None = None
    pod: str | None = None
    node: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def summary(self) -> str:
        parts = [f"iss {self.issuer or '(none)'}", f"sub {self.subject or '(none)'}",
                 f"aud {', '.join(self.audiences) or '(none)'}"]
        if self.expires:
            parts.append(f"exp {_iso(self.expires)}")
        if self.pod:
            parts.append(f"bound to pod {self.pod}" + (f" on node {self.node}" if self.node else ""))
        return "; ".join(parts)


def decode_claims(token: str) -> TokenClaims:
    """The claims of a JWT, decoded without verifying its signature.

    Raises :class:`ValueError` naming what is wrong when *token* is not a JWT (three
    base64url parts, the second a JSON object)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError(f"not a JWT: {len(parts)} dot-separated parts, not 3")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a JWT: its payload is not base64url-encoded JSON") from None
    if not isinstance(payload, dict):
        raise ValueError("not a JWT: its payload is not a JSON object")
    aud = payload.get("aud")
    audiences = (aud,) if isinstance(aud, str) else tuple(str(a) for a in aud) if isinstance(aud, list) else ()
    kube = payload.get("kubernetes.io") if isinstance(payload.get("kubernetes.io"), dict) else {}
    return TokenClaims(
        issuer=_text(payload.get("iss")),
        subject=_text(payload.get("sub")),
        audiences=audiences,
        expires=_moment(payload.get("exp")),
        issued=_moment(payload.get("iat")),
        namespace=_text(kube.get("namespace")),
        service_account=_text(_name(kube.get("serviceaccount"))),
        pod=_text(_name(kube.get("pod"))),
        node=_text(_name(kube.get("node"))),
        raw=payload,
    )


@dataclass(frozen=True)
class TokenRead:
    """A token file as this process found it: its text, or why it could not be read."""

    path: str
    text: str | None
    error: str | None
    mode: int | None = None
    owner: tuple[int, int] | None = None
    claims: TokenClaims | None = None


def read_token(path: str) -> TokenRead:
    """Read and decode the token at *path* as this process's user would."""
    try:
        info = os.stat(path)
        mode, owner = stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid)
    except OSError:
        mode, owner = None, None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return TokenRead(path, None, "does not exist", mode, owner)
    except PermissionError:
        return TokenRead(path, None, "is not readable by this user", mode, owner)
    except IsADirectoryError:
        return TokenRead(path, None, "is a directory, not a file", mode, owner)
    except (OSError, UnicodeDecodeError) as error:
        return TokenRead(path, None, f"cannot be read ({getattr(error, 'strerror', None) or error})", mode, owner)
    if not text.strip():
        return TokenRead(path, text, "is empty", mode, owner)
    try:
        claims = decode_claims(text)
    except ValueError as error:
        return TokenRead(path, text, f"does not hold a token ({error})", mode, owner)
    return TokenRead(path, text, None, mode, owner, claims)


def check_token_file(check_id: str, variable: str, read: TokenRead) -> Check:
    """``token.<method>.file``: the file *variable* names is there and readable by this user."""
    where = f"{variable}={read.path}"
    facts = _file_facts(read)
    if read.error is None:
        return Check(check_id, OK, None, f"{where} is readable by this user{facts}.")
    user = f"this process runs as uid {os.getuid()}, gid {os.getgid()}, groups {_groups()}"
    if "not readable" in read.error:
        detail = (f"{where} {read.error}{facts}; {user}. A projected token is mode 0644 unless the volume sets "
                  "defaultMode, and 0600 owned by the containers' user when they all share one runAsUser.")
        remedy = fix(
            "Let the container's user read the token: set the pod's securityContext.fsGroup (the kubelet then "
            "gives that group read access), run every container as one runAsUser, or drop a restrictive "
            "defaultMode from the token volume. Then restart the pod.",
            "# in the pod template:",
            "#   securityContext:",
            "#     fsGroup: 65534",
        )
    elif read.error == "does not exist":
        detail = (f"{where} {read.error}: no token volume is mounted at that path in this container (the webhook's "
                  "skip-containers annotation, a hand-written variable, or a mount removed from the spec).")
        remedy = fix(
            "Let the webhook inject the variable and the volume together: remove hand-written AWS_WEB_IDENTITY_"
            "TOKEN_FILE / AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE values and restart the pod. From a workstation, "
            "`trailscan doctor pod NS/POD` shows which containers carry the token volume.",
        )
    else:
        detail = f"{where} {read.error}{facts}."
        remedy = fix("Point the variable at the projected token the webhook mounts, then restart the pod.")
    return Check(check_id, FAIL, "TOKEN_UNREADABLE", detail, remedy)


@dataclass(frozen=True)
class Expectation:
    """What the token must say for its credential method."""

    audience: str
    audience_source: str
    subject: str | None
    subject_source: str
    own_issuer: str | None = None


def check_claims(check_id: str, claims: TokenClaims, expect: Expectation, now: datetime) -> Check:
    """``token.<method>.claims``: expired, the wrong audience, another service account."""
    summary = claims.summary()
    if claims.expires is not None and claims.expires <= now:
        ago = _duration(now - claims.expires)
        return Check(check_id, FAIL, "TOKEN_EXPIRED",
                     f"The token expired at {_iso(claims.expires)}, {ago} ago ({summary}). The kubelet refreshes a "
                     "projected token before it expires; one that is not refreshed is a copy, or is mounted with "
                     "subPath (which never receives updates).",
                     fix("Mount the projected token volume as a whole directory (no subPath), let the SDK read "
                         "the file the variable names (never a copy), and check the node's clock; then restart the "
                         "pod."))
    if expect.audience not in claims.audiences:
        custom = "" if expect.audience != IRSA_AUDIENCE or "pods.eks" in expect.audience_source else (
            " If the service account's eks.amazonaws.com/audience annotation asks for this audience on purpose "
            "(it must then be a client id of the IAM OIDC provider), run the doctor with --audience.")
        return Check(check_id, FAIL, "TOKEN_AUDIENCE_MISMATCH",
                     f"The token's audience is {', '.join(claims.audiences) or 'empty'}, but {expect.audience_source} "
                     f"needs {expect.audience} ({summary}).{custom}",
                     fix(f"Give the token the audience {expect.audience}: the projected volume's audience comes from "
                         "the service account's eks.amazonaws.com/audience annotation when the pod is created "
                         "(IRSA), and is always pods.eks.amazonaws.com for Pod Identity. Correct it, then restart "
                         "the pod."))
    if expect.subject and claims.subject != expect.subject:
        return Check(check_id, FAIL, "TOKEN_SUBJECT_MISMATCH",
                     f"The token names {claims.subject or 'no subject'}, but this pod runs as {expect.subject} "
                     f"({expect.subject_source}; {summary}): a token copied from another pod, or a variable pointing "
                     "at another service account's token.",
                     fix("Use the token the kubelet projects for this pod's own service account: remove the "
                         "hand-written token path or copied file, then restart the pod."))
    notes = []
    if expect.own_issuer and claims.issuer and claims.issuer != expect.own_issuer:
        notes.append(f"its issuer differs from this pod's own service-account token ({expect.own_issuer})")
    if claims.expires and claims.issued and claims.expires > claims.issued:
        lifetime = claims.expires - claims.issued
        if now - claims.issued > min(lifetime * _REFRESH_SHARE, timedelta(hours=24)) + timedelta(minutes=5):
            notes.append(f"it is {_duration(now - claims.issued)} old, past the point where the kubelet replaces it "
                         "(a copy, or a subPath mount)")
    if notes:
        return Check(check_id, WARN, None, f"The token is valid ({summary}), but " + "; ".join(notes) + ".")
    left = f", {_duration(claims.expires - now)} left" if claims.expires else ""
    return Check(check_id, OK, None, f"{summary}{left}.")


def own_identity(directory: Path = KUBE_SA_DIR) -> tuple[str | None, str | None, str]:
    """The pod's own subject and issuer, from its automounted service-account token, and
    where they came from; ``(None, None, why)`` when it is not mounted."""
    read = read_token(str(directory / "token"))
    if read.claims is not None and read.claims.subject:
        return read.claims.subject, read.claims.issuer, f"its service-account token at {directory} says so"
    return None, None, f"no readable service-account token at {directory} (automountServiceAccountToken: false?)"


def expected_subject(service_account: str | None) -> str | None:
    """``NS/NAME`` (or a whole subject) → ``system:serviceaccount:NS:NAME``."""
    if not service_account:
        return None
    if service_account.startswith(SUBJECT_PREFIX):
        return service_account
    namespace, _, name = service_account.partition("/")
    return f"{SUBJECT_PREFIX}{namespace}:{name}" if name else None


# -- helpers ----------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(value: Any) -> Any:
    return value.get("name") if isinstance(value, dict) else None


def _moment(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(delta: timedelta) -> str:
    seconds = int(abs(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _file_facts(read: TokenRead) -> str:
    if read.mode is None or read.owner is None:
        return ""
    return f" (mode {read.mode:04o}, owner uid {read.owner[0]}, gid {read.owner[1]})"


def _groups() -> str:
    try:
        return ", ".join(str(g) for g in os.getgroups()) or "none"
    except OSError:
        return "unknown"
