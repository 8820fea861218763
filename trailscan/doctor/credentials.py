"""Where the SDK's credentials come from in this process, exactly as botocore resolves them.

botocore's default chain (``botocore.credentials.create_credential_resolver``) asks, in
order: environment keys (``AWS_ACCESS_KEY_ID``), an assume-role profile, web identity
(``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``: IRSA), the profile sources (SSO,
shared credentials and config files, ``credential_process``), container credentials
(``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``: EKS
Pod Identity), and last the instance metadata service (the node's instance role).  The
first provider that returns credentials wins; one that raises stops the chain (the SDK
raises that error); none at all is ``NoCredentialsError: Unable to locate credentials``.

:func:`walk_chain` runs botocore's own providers in botocore's own order and records, for
each, why it did not answer — then fetches the winner's credentials (for web identity,
that is the ``AssumeRoleWithWebIdentity`` call) with one attempt and short timeouts.  Two
departures, both to answer in seconds: a container endpoint that does not accept a TCP
connection is reported without botocore's three attempts a second apart, and every AWS
call is made once.

:func:`probe_imds` explains an instance metadata service that gave nothing (disabled, no
answer to the IMDSv2 token request — the hop limit of 1 that keeps containers out — or no
instance profile); :func:`caller_identity` asks STS who the credentials are.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "AGENT_HOSTS",
    "ChainStep",
    "ChainWalk",
    "ImdsProbe",
    "agent_uri_problem",
    "caller_identity",
    "imds_endpoint",
    "probe_imds",
    "walk_chain",
]

#: Hosts botocore's ``ContainerMetadataFetcher`` accepts over plain HTTP (any loopback
#: address too; any host over HTTPS): ECS's agent, the EKS Pod Identity agent (IPv4, IPv6).
AGENT_HOSTS = ("169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost")

#: What each of botocore's providers (its ``METHOD``) stands for, for people.
LABELS = {
    "env": "environment keys (AWS_ACCESS_KEY_ID)",
    "assume-role": "an assume-role profile",
    "assume-role-with-web-identity": "web identity (IRSA: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE)",
    "sso": "an SSO profile",
    "shared-credentials-file": "the shared credentials file",
    "login": "a console-login profile",
    "custom-process": "a credential_process",
    "config-file": "the shared config file",
    "ec2-credentials-file": "the EC2 credentials file",
    "boto-config": "the boto config file",
    "container-role": "container credentials (Pod Identity: AWS_CONTAINER_CREDENTIALS_FULL_URI)",
    "iam-role": "instance metadata (the node's instance role)",
}
_PROFILE_SOURCES = frozenset({"sso", "shared-credentials-file", "login", "custom-process", "config-file",
                              "ec2-credentials-file", "boto-config", "assume-role"})
WEB_IDENTITY, CONTAINER, IMDS, ENV = "assume-role-with-web-identity", "container-role", "iam-role", "env"


@dataclass(frozen=True)
class ChainStep:
    """One provider of the chain: ``outcome`` is ``none`` (nothing there), ``won``,
    ``raised`` (the chain stopped here), or ``not_asked`` (an earlier one won)."""

    method: str
    outcome: str
    reason: str = ""

    @property
    def label(self) -> str:
        return LABELS.get(self.method, self.method)


@dataclass
class ChainWalk:
    """botocore's chain as it ran: the steps, the winner, its credentials (frozen) or the
    error fetching them."""

    steps: list[ChainStep] = field(default_factory=list)
    winner: str | None = None
    credentials: Any = None  # botocore ReadOnlyCredentials
    error: BaseException | None = None
    error_text: str = ""

    @property
    def reached(self) -> set[str]:
        return {step.method for step in self.steps if step.outcome != "not_asked"}


def _why_not(method: str, environ: Mapping[str, str], profile: str) -> str:
    if method == ENV:
        return "AWS_ACCESS_KEY_ID is not set"
    if method == WEB_IDENTITY:
        if "AWS_WEB_IDENTITY_TOKEN_FILE" not in environ:
            return "AWS_WEB_IDENTITY_TOKEN_FILE is not set (nor web_identity_token_file in the profile)"
        return "the web identity variables are not used: a profile is set explicitly"
    if method == CONTAINER:
        return "neither AWS_CONTAINER_CREDENTIALS_FULL_URI nor AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is set"
    if method == IMDS:
        if (environ.get("AWS_EC2_METADATA_DISABLED") or "").lower() == "true":
            return "disabled by AWS_EC2_METADATA_DISABLED=true"
        return "the instance metadata service gave no credentials"
    return f"nothing for profile {profile}"


def walk_chain(
    session: Any,
    environ: Mapping[str, str],
    *,
    skip_container: str | None = None,
) -> ChainWalk:
    """Run *session*'s credential chain (a botocore session, already configured with the
    doctor's timeouts) provider by provider.  *skip_container*: why the container
    provider would fail anyway (its endpoint refuses connections), so it is not asked."""
    from botocore.exceptions import BotoCoreError

    walk = ChainWalk()
    try:
        resolver = session.get_component("credential_provider")
        profile = session.get_config_variable("profile") or "default"
    except (BotoCoreError, ValueError) as error:
        walk.error, walk.error_text = error, _first_line(error)
        return walk
    providers = list(resolver.providers)
    for index, provider in enumerate(providers):
        method = getattr(provider, "METHOD", type(provider).__name__)
        if method == CONTAINER and skip_container and (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI" in environ or "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" in environ
        ):
            walk.steps.append(ChainStep(method, "raised", skip_container))
            walk.error_text = skip_container
            _not_asked(walk, providers[index + 1:])
            return walk
        try:
            found = provider.load()
        except Exception as error:  # botocore lets any provider error end the chain: record it as the SDK sees it
            walk.steps.append(ChainStep(method, "raised", _first_line(error)))
            walk.error, walk.error_text = error, _first_line(error)
            _not_asked(walk, providers[index + 1:])
            return walk
        if found is None:
            walk.steps.append(ChainStep(method, "none", _why_not(method, environ, profile)))
            continue
        walk.winner = method
        walk.steps.append(ChainStep(method, "won"))
        _not_asked(walk, providers[index + 1:])
        try:
            walk.credentials = found.get_frozen_credentials()
        except Exception as error:  # the fetch (AssumeRoleWithWebIdentity, the agent) failed: the SDK's error
            walk.error, walk.error_text = error, _first_line(error)
        return walk
    return walk


def _not_asked(walk: ChainWalk, rest: list[Any]) -> None:
    for provider in rest:
        walk.steps.append(ChainStep(getattr(provider, "METHOD", type(provider).__name__), "not_asked"))


def describe_steps(walk: ChainWalk) -> str:
    """The chain as one paragraph: the profile sources folded into one step."""
    parts: list[str] = []
    folded: list[ChainStep] = []

    def flush() -> None:
        if folded:
            reasons = dict.fromkeys(step.reason for step in folded)
            parts.append(f"profile sources ({', '.join(s.method for s in folded)}): {'; '.join(reasons)}")
            folded.clear()

    for step in walk.steps:
        if step.method in _PROFILE_SOURCES and step.outcome == "none":
            folded.append(step)
            continue
        flush()
        if step.outcome == "none":
            parts.append(f"{step.label}: {step.reason}")
        elif step.outcome == "won":
            parts.append(f"{step.label}: WON")
        elif step.outcome == "raised":
            parts.append(f"{step.label}: raised {step.reason}")
    flush()
    skipped = [step.label for step in walk.steps if step.outcome == "not_asked"
               and step.method in (WEB_IDENTITY, CONTAINER, IMDS, ENV)]
    text = " → ".join(parts)
    if skipped:
        text += f" (not asked: {', '.join(skipped)})"
    return text


# -- the container credentials endpoint (EKS Pod Identity agent) -----------------------------


def agent_uri_problem(uri: str) -> str | None:
    """Why botocore would refuse ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (None when it accepts
    it): over HTTPS any host, over HTTP only a loopback address or :data:`AGENT_HOSTS`."""
    parts = urlsplit(uri)
    if parts.scheme == "https":
        return None
    if parts.scheme != "http" or not parts.hostname:
        return f"{uri!r} is not an http(s) URL"
    host = parts.hostname
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    if host in AGENT_HOSTS:
        return None
    return (f"botocore accepts plain HTTP only from a loopback address or {', '.join(AGENT_HOSTS)}, "
            f"not {host}")


def tcp_reaches(uri: str, timeout: float) -> str | None:
    """None when something accepts a TCP connection at *uri*'s host and port, else why not."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except OSError as error:
        return f"{host}:{port}: {error.strerror or error}"


# -- the instance metadata service ------------------------------------------------------------


def imds_endpoint(session: Any) -> str:
    """The metadata endpoint botocore uses: ``AWS_EC2_METADATA_SERVICE_ENDPOINT``, else the
    IPv4 or IPv6 default by ``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE``."""
    configured = session.get_config_variable("ec2_metadata_service_endpoint")
    if configured:
        return str(configured).rstrip("/")
    mode = (session.get_config_variable("ec2_metadata_service_endpoint_mode") or "ipv4").lower()
    return "http://[fd00:ec2::254]" if mode == "ipv6" else "http://169.254.169.254"


@dataclass(frozen=True)
class ImdsProbe:
    """What the metadata service answered: ``reachable``, the role, and the story."""

    endpoint: str
    reachable: bool
    role: str | None
    detail: str


def probe_imds(endpoint: str, timeout: float, *, disabled: bool) -> ImdsProbe:
    """Ask the metadata service as botocore does (an IMDSv2 token, then the role name)."""
    if disabled:
        return ImdsProbe(endpoint, False, None, "AWS_EC2_METADATA_DISABLED=true: the SDK does not ask it")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    token: str | None = None
    notes: list[str] = []
    request = urllib.request.Request(f"{endpoint}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
    try:
        with opener.open(request, timeout=timeout) as answer:
            token = answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        notes.append(f"the IMDSv2 token request was answered HTTP {error.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ConnectionRefusedError) or "refused" in str(reason).lower():
            return ImdsProbe(endpoint, False, None, f"nothing listens at {endpoint} ({reason})")
        if isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason).lower():
            notes.append(f"no answer to the IMDSv2 token request within {timeout:g} s (a hop limit of 1 drops the "
                         "answer before it reaches a container)")
        else:
            return ImdsProbe(endpoint, False, None, f"{endpoint} cannot be reached ({reason})")
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    listing = urllib.request.Request(f"{endpoint}/latest/meta-data/iam/security-credentials/", headers=headers)
    try:
        with opener.open(listing, timeout=timeout) as answer:
            role = answer.read().decode("utf-8", "replace").strip().splitlines()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return ImdsProbe(endpoint, True, None, "; ".join([*notes, "it answers, but the node has no instance "
                                                              "profile (404)"]))
        return ImdsProbe(endpoint, False, None, "; ".join([*notes, f"the credentials listing was answered HTTP "
                                                          f"{error.code}{' (IMDSv2 required)' if error.code == 401 else ''}"]))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        return ImdsProbe(endpoint, False, None, "; ".join([*notes, f"no answer ({getattr(error, 'reason', error)})"]))
    found = role[0] if role else None
    return ImdsProbe(endpoint, True, found, "; ".join([*notes, f"it answers with the instance role {found}"]))


# -- who the credentials are -------------------------------------------------------------------


def caller_identity(session: Any, credentials: Any, region: str | None, config: Any) -> dict[str, str]:
    """``sts:GetCallerIdentity`` with *credentials* (frozen): ``Account``, ``Arn``, ``UserId``.
    Raises botocore's errors."""
    client = session.create_client(
        "sts",
        region_name=region,
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        config=config,
    )
    answer = client.get_caller_identity()
    return {key: str(answer.get(key, "")) for key in ("Account", "Arn", "UserId")}


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
