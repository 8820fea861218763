"""``trailscan doctor``: the errors CloudTrail never sees, diagnosed from inside the pod.

``NoCredentialsError`` (no credentials reached the SDK) and ``EndpointConnectionError``
(DNS or the network) leave no CloudTrail record, and CloudTrail delivers what it does
record 5–15 minutes late.  Run in the pod (or anywhere, on the current environment), the
doctor looks at what the SDK looks at, in the order the checks of
:data:`trailscan.doctor.model.CHECKS` give:

1. the variables the pod identity webhook injects (``env.variables``);
2. each projected token: readable by this user, and its claims (``token.*``);
3. the STS endpoint the SDK calls and any endpoint asked for: DNS, TCP, TLS (``endpoint.*``);
4. the Pod Identity agent's endpoint, and the instance metadata service when the chain
   gets that far (``credentials.*``);
5. botocore's credential chain itself (``credentials.chain``), then who the credentials
   are (``identity.caller``): the node's instance role is ``NODE_ROLE_FALLBACK``;
6. with an IAM inventory, the token against the role's trust policy (``trust.role``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trailscan.arn import role_arn_of_session, same_role, session_name_of
from trailscan.doctor import credentials as chain
from trailscan.doctor.dns import read_resolv_conf, server_resolver, system_resolver
from trailscan.doctor.endpoints import Endpoint, check_endpoint, service_endpoint, sts_endpoints
from trailscan.doctor.model import FAIL, OK, SKIPPED, WARN, Check, DoctorReport
from trailscan.doctor.token import (
    IRSA_AUDIENCE,
    KUBE_SA_DIR,
    POD_IDENTITY_AUDIENCE,
    Expectation,
    check_claims,
    check_token_file,
    expected_subject,
    own_identity,
    read_token,
)
from trailscan.doctor.trust import TrustQuestion, check_trust, load_trust_inventory
from trailscan.errors import UsageError
from trailscan.explain.fixes import comment, fix, node_fallback_fix
from trailscan.identity import is_instance_id

__all__ = ["LocalOptions", "VARIABLES", "run_local"]

#: The variables the webhook injects (and the SDK reads), shown as they are.
VARIABLES = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_REGION", "AWS_DEFAULT_REGION")
#: Variables whose value is a secret: shown as "(set)".
_SECRET = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
_FULL_URI, _TOKEN_FILE = "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
_ROLE, _WEB_TOKEN = "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"
_PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def _without_password(value: str) -> str:
    """A proxy URL's password is a secret: ``http://user:***@host:port``."""
    from urllib.parse import urlsplit

    parts = urlsplit(value) if "://" in value else None
    if parts is None or not parts.password:
        return value
    return value.replace(f":{parts.password}@", ":***@", 1)


@dataclass(frozen=True)
class LocalOptions:
    """What ``trailscan doctor`` is asked to look at, beyond the environment itself.

    ``timeout`` bounds each network step (seconds); ``dns_server`` makes DNS ask that
    nameserver directly (``(ip, port)``) instead of the C library; ``audience`` and
    ``service_account`` (``NS/NAME``) are what the token should say when the pod's
    service account annotation or identity cannot be read from inside (the probe passes
    them); ``node_roles`` are instance roles known to be the nodes'.
    """

    timeout: float = 3.0
    endpoints: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    dns_server: tuple[str, int] | None = None
    audience: str | None = None
    service_account: str | None = None
    iam_files: tuple[str, ...] = ()
    offline: bool = False
    node_roles: tuple[str, ...] = ()
    kube_sa_dir: Path = KUBE_SA_DIR
    resolv_conf: Path = Path("/etc/resolv.conf")
    now: datetime | None = None


def run_local(options: LocalOptions = LocalOptions()) -> DoctorReport:
    """Run every in-pod check on this process's environment (``os.environ``: botocore reads
    nothing else)."""
    environ = os.environ
    if options.service_account and expected_subject(options.service_account) is None:
        raise UsageError(f"--service-account {options.service_account!r}: expected NAMESPACE/NAME")
    now = options.now or datetime.now(UTC)
    session, region, client_config = _botocore_session(environ, options.timeout)
    own_subject, own_issuer, own_source = own_identity(options.kube_sa_dir)
    wanted_subject = expected_subject(options.service_account) or own_subject
    subject_source = "given with --service-account" if options.service_account else own_source
    report = DoctorReport(_target(options, own_subject))

    report.add(check_variables(environ))
    tokens = {}
    for method, variable, audience, source in (
        ("web_identity", _WEB_TOKEN, options.audience or IRSA_AUDIENCE,
         "the service account's eks.amazonaws.com/audience annotation" if options.audience else
         "IRSA (unless the service account's eks.amazonaws.com/audience annotation names another)"),
        ("pod_identity", _TOKEN_FILE, POD_IDENTITY_AUDIENCE, "EKS Pod Identity"),
    ):
        if not environ.get(variable):
            continue
        read = read_token(environ[variable])
        tokens[method] = read
        report.add(check_token_file(f"token.{method}.file", variable, read))
        if read.claims is not None:
            expect = Expectation(audience, source, wanted_subject, subject_source, own_issuer)
            report.add(check_claims(f"token.{method}.claims", read.claims, expect, now))

    resolver = server_resolver(options.dns_server) if options.dns_server else system_resolver
    resolver_config = read_resolv_conf(options.resolv_conf)
    from botocore.utils import get_environ_proxies

    for endpoint in _endpoints(session, region, environ, options):
        report.add(check_endpoint(endpoint, timeout=options.timeout, resolver=resolver,
                                  resolver_config=resolver_config, ca_bundle=session.get_config_variable("ca_bundle"),
                                  proxies=get_environ_proxies(endpoint.url)))

    agent = check_agent(environ, options.timeout)
    if agent is not None:
        report.add(agent)
    skip_container = agent.detail if agent is not None and agent.cause == "POD_IDENTITY_AGENT_MISSING" else None
    walk = chain.walk_chain(session, environ, skip_container=skip_container)
    imds = None
    if chain.IMDS in walk.reached:
        disabled = (environ.get("AWS_EC2_METADATA_DISABLED") or "").lower() == "true"
        imds = chain.probe_imds(chain.imds_endpoint(session), options.timeout, disabled=disabled)
        report.add(check_imds(imds, walk))
    report.add(check_chain(walk, environ, report))
    report.add(check_caller(session, walk, imds, region, client_config, environ, options.node_roles))
    report.add(_trust(options, environ, tokens, walk, session, region))
    return report


# -- env.variables ----------------------------------------------------------------------------------


def check_variables(environ: Mapping[str, str]) -> Check:
    """``env.variables``: which credential method the webhook wired into this environment."""
    shown = [f"{name}={environ[name]}" for name in VARIABLES if name in environ]
    shown += [f"{name}=(set)" for name in _SECRET if environ.get(name)]
    for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_EC2_METADATA_DISABLED",
                 "AWS_CA_BUNDLE", *_PROXIES):
        if name in environ:
            shown.append(f"{name}={_without_password(environ[name])}")
    listing = "; ".join(shown) or "none of the AWS variables is set"
    irsa = bool(environ.get(_ROLE)) and bool(environ.get(_WEB_TOKEN))
    pod_identity = bool(environ.get(_FULL_URI)) and bool(environ.get(_TOKEN_FILE))
    notes = _region_notes(environ)
    problem = None
    if environ.get(_WEB_TOKEN) and not environ.get(_ROLE):
        problem = ("AWS_WEB_IDENTITY_TOKEN_FILE is set without AWS_ROLE_ARN: botocore raises InvalidConfigError "
                   "(the webhook always sets both)")
    elif environ.get(_ROLE) and not environ.get(_WEB_TOKEN):
        problem = "AWS_ROLE_ARN is set without AWS_WEB_IDENTITY_TOKEN_FILE: the SDK ignores it"
    elif environ.get(_FULL_URI) and not environ.get(_TOKEN_FILE) and not environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        problem = ("AWS_CONTAINER_CREDENTIALS_FULL_URI is set without AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: the "
                   "EKS Pod Identity agent refuses a request without the pod's token")
    elif environ.get(_FULL_URI) and (refused := chain.agent_uri_problem(environ[_FULL_URI])):
        problem = f"AWS_CONTAINER_CREDENTIALS_FULL_URI is refused by the SDK: {refused}"
    if problem:
        return Check("env.variables", FAIL, "NO_CREDENTIALS_INJECTED", f"{problem}. Set: {listing}.",
                     _inject_fix("Remove the hand-written variables and let the webhook inject them"))
    if irsa or pod_identity:
        method = "IRSA (web identity)" if irsa else "EKS Pod Identity (container credentials)"
        if irsa and pod_identity:
            notes.append("both IRSA and Pod Identity variables are set: botocore uses web identity, which comes "
                         "first in its chain (the webhook itself injects only one, Pod Identity when the service "
                         "account has an association)")
        if environ.get("AWS_ACCESS_KEY_ID"):
            notes.append("AWS_ACCESS_KEY_ID is set too: environment keys come first in every SDK's chain and shadow "
                         f"{method}")
        detail = f"{method} is wired: {listing}."
        return Check("env.variables", WARN if notes else OK, None, detail + _sentences(notes))
    others = [name for name in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
              if environ.get(name)]
    if others:
        return Check("env.variables", WARN, "NO_CREDENTIALS_INJECTED",
                     f"Neither IRSA nor Pod Identity variables are set; the SDK gets credentials from "
                     f"{', '.join(others)} instead, not from a role of the pod's own. Set: {listing}."
                     + _sentences(notes), _inject_fix("Give the pod its own role"))
    return Check("env.variables", FAIL, "NO_CREDENTIALS_INJECTED",
                 "Neither AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (IRSA) nor AWS_CONTAINER_CREDENTIALS_FULL_URI + "
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (EKS Pod Identity) are set: the SDK can only fall back to "
                 f"the node's instance role, or find nothing (NoCredentialsError). Set: {listing}." + _sentences(notes),
                 _inject_fix("Give the pod credentials of its own"))


def _inject_fix(lead: str) -> str:
    return fix(
        f"{lead}: annotate the pod's service account with an IAM role (IRSA) or create an EKS Pod Identity "
        "association, then restart the pod so the webhook mutates it. From a workstation, `trailscan doctor pod "
        "NS/POD` says which link is missing.",
        comment("IRSA:"),
        "kubectl annotate serviceaccount -n NAMESPACE SERVICE_ACCOUNT eks.amazonaws.com/role-arn=ROLE_ARN --overwrite",
        comment("or EKS Pod Identity:"),
        "aws eks create-pod-identity-association --cluster-name CLUSTER --namespace NAMESPACE "
        "--service-account SERVICE_ACCOUNT --role-arn ROLE_ARN",
        "kubectl rollout restart deployment -n NAMESPACE DEPLOYMENT",
    )


def _region_notes(environ: Mapping[str, str]) -> list[str]:
    region, default = environ.get("AWS_REGION"), environ.get("AWS_DEFAULT_REGION")
    if region and default and region != default:
        return [f"AWS_REGION ({region}) and AWS_DEFAULT_REGION ({default}) differ: botocore reads "
                "AWS_DEFAULT_REGION, the other SDKs AWS_REGION"]
    if not region and not default:
        return ["no AWS_REGION: STS is called at its global endpoint, and regional services fail with NoRegionError"]
    return []


# -- credentials.pod_identity_agent, credentials.imds, credentials.chain -----------------------------


def check_agent(environ: Mapping[str, str], timeout: float) -> Check | None:
    """``credentials.pod_identity_agent``: something accepts connections at the full URI."""
    uri = environ.get(_FULL_URI)
    if not uri:
        return None
    refused = chain.agent_uri_problem(uri)
    if refused:
        return Check("credentials.pod_identity_agent", FAIL, "NO_CREDENTIALS_INJECTED",
                     f"{_FULL_URI}={uri}: {refused}.",
                     fix("Use the address the webhook injects for EKS Pod Identity.",
                         f"# {_FULL_URI}=http://169.254.170.23/v1/credentials (IPv6: http://[fd00:ec2::23]/v1/credentials)"))
    problem = chain.tcp_reaches(uri, timeout)
    if problem:
        return Check("credentials.pod_identity_agent", FAIL, "POD_IDENTITY_AGENT_MISSING",
                     f"{_FULL_URI}={uri}: {problem}. The EKS Pod Identity agent (a DaemonSet, host network) listens "
                     "there on every node; without it the SDK fails after three attempts (CredentialRetrievalError).",
                     fix("Install or repair the EKS Pod Identity agent add-on and check its pod on this node.",
                         "aws eks create-addon --cluster-name CLUSTER --addon-name eks-pod-identity-agent",
                         "kubectl get pods -n kube-system -l app.kubernetes.io/name=eks-pod-identity-agent -o wide"))
    return Check("credentials.pod_identity_agent", OK, None, f"{_FULL_URI}={uri} accepts connections.")


def check_imds(probe: chain.ImdsProbe, walk: chain.ChainWalk) -> Check:
    """``credentials.imds``: the chain reached the metadata service; what it answered."""
    if walk.winner == chain.IMDS:
        return Check("credentials.imds", WARN, None,
                     f"{probe.endpoint}: {probe.detail}. Any process of this pod without credentials of its own runs "
                     "as that role (an IMDSv2 hop limit of 1 on the node keeps containers out).")
    if walk.winner is None and not walk.error_text:
        return Check("credentials.imds", FAIL, "IMDS_UNREACHABLE",
                     f"{probe.endpoint}: {probe.detail}. It was the chain's last resort, so the SDK found nothing "
                     "(NoCredentialsError).",
                     fix("Give the pod credentials of its own (IRSA or Pod Identity) rather than reopening the node's "
                         "metadata service to containers; the node role is shared by every pod of the node.",
                         comment("only if the workload must use the node role (not recommended):"),
                         "aws ec2 modify-instance-metadata-options --instance-id INSTANCE_ID --http-put-response-hop-limit 2"))
    return Check("credentials.imds", OK if probe.reachable else WARN, None, f"{probe.endpoint}: {probe.detail}.")


_STS_SAYS = (
    ("incorrect token audience", "TRUST_AUDIENCE_MISMATCH"),
    ("no openidconnect provider found", "OIDC_PROVIDER_MISSING"),
    ("token expired", "TOKEN_EXPIRED"),
    ("token is expired", "TOKEN_EXPIRED"),
)


def check_chain(walk: chain.ChainWalk, environ: Mapping[str, str], report: DoctorReport) -> Check:
    """``credentials.chain``: which provider won, why the others did not, and whether the
    winner's credentials could be fetched."""
    steps = chain.describe_steps(walk)
    if walk.credentials is not None:
        label = chain.LABELS.get(walk.winner or "", walk.winner or "")
        detail = f"{label} won: {steps}."
        if walk.winner == chain.IMDS:
            return Check("credentials.chain", WARN, None, detail + " These are the node's credentials: see identity.caller.")
        if walk.winner == chain.ENV and (environ.get(_ROLE) or environ.get(_FULL_URI)):
            return Check("credentials.chain", WARN, None,
                         detail + " Environment keys come first and shadow the pod's IRSA / Pod Identity wiring.")
        return Check("credentials.chain", OK, None, detail)
    cause, remedy = _chain_cause(walk, environ, report)
    if walk.winner is None and not walk.error_text:
        return Check("credentials.chain", FAIL, cause, f"NoCredentialsError (Unable to locate credentials): {steps}.",
                     remedy)
    who = chain.LABELS.get(walk.winner or "", "the chain")
    return Check("credentials.chain", FAIL, cause, f"{who} failed: {walk.error_text}. Chain: {steps}.", remedy)


def _chain_cause(walk: chain.ChainWalk, environ: Mapping[str, str], report: DoctorReport) -> tuple[str, str]:
    from botocore.exceptions import ClientError, HTTPClientError, InvalidConfigError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    error = walk.error
    raised = next((step.method for step in walk.steps if step.outcome == "raised"), None)
    if walk.winner is None and not walk.error_text:
        return "NO_CREDENTIALS_INJECTED", _inject_fix("Give the pod credentials of its own")
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return "TOKEN_UNREADABLE", fix("The SDK could not open the token file: see token.*.file.")
    if isinstance(error, InvalidConfigError):
        return "NO_CREDENTIALS_INJECTED", _inject_fix("Remove the hand-written variables and let the webhook inject them")
    if walk.winner == chain.CONTAINER or raised == chain.CONTAINER:
        if isinstance(error, ValueError) and "host" in str(error).lower():
            return "NO_CREDENTIALS_INJECTED", fix("Use the address the webhook injects: http://169.254.170.23/v1/credentials.")
        text = walk.error_text.lower()
        if error is None or any(word in text for word in ("connect", "timed out", "refused", "unreachable")):
            return "POD_IDENTITY_AGENT_MISSING", fix(
                "Install or repair the EKS Pod Identity agent add-on.",
                "aws eks create-addon --cluster-name CLUSTER --addon-name eks-pod-identity-agent")
        return "UNEXPLAINED", fix(
            "The Pod Identity agent answered with an error: an association for this service account, and the node "
            "role's eks-auth:AssumeRoleForPodIdentity permission, are what it needs.",
            "aws eks list-pod-identity-associations --cluster-name CLUSTER --namespace NAMESPACE")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "")).removeprefix("Client.").removesuffix("Exception")
        message = str(error.response.get("Error", {}).get("Message", "")).lower()
        if code == "ExpiredToken":
            return "TOKEN_EXPIRED", fix("STS says the token expired: see token.web_identity.claims.")
        for phrase, cause in _STS_SAYS:
            if phrase in message:
                return cause, fix(f"STS says so ({phrase}): see trust.role, with --iam FILE for the whole verdict.")
        return "UNEXPLAINED", fix(
            "STS refused the token for the role. Its reason is in the role's trust policy and the account's OIDC "
            "providers: run the doctor with an IAM inventory, or ask CloudTrail once it has delivered.",
            "aws iam get-account-authorization-details --filter Role > iam.json",
            "aws iam list-open-id-connect-providers > oidc.json",
            "trailscan doctor --iam iam.json --iam oidc.json",
        )
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        sts = report.get("endpoint.sts")
        cause = sts.cause if sts is not None and sts.cause in ("DNS_RESOLUTION_FAILED", "ENDPOINT_UNREACHABLE") \
            else "ENDPOINT_UNREACHABLE"
        return cause, fix("The SDK could not reach STS: see endpoint.sts.")
    return "UNEXPLAINED", fix("See the error above; run with AWS credentials debug logging for more.",
                              "python -c 'import boto3; boto3.set_stream_logger(\"botocore.credentials\")'")


# -- identity.caller ----------------------------------------------------------------------------------


def check_caller(session: Any, walk: chain.ChainWalk, imds: chain.ImdsProbe | None, region: str | None,
                 client_config: Any, environ: Mapping[str, str], node_roles: tuple[str, ...]) -> Check:
    """``identity.caller``: ``sts:GetCallerIdentity`` with the chain's credentials."""
    from botocore.exceptions import BotoCoreError, ClientError

    if walk.credentials is None:
        return Check("identity.caller", SKIPPED, None, "No credentials to ask STS with.")
    node_role = imds.role if imds is not None else None
    try:
        caller = chain.caller_identity(session, walk.credentials, region, client_config)
    except (ClientError, BotoCoreError) as error:
        if walk.winner == chain.IMDS:
            return _node_fallback(f"the node's instance role {node_role or '(name unknown)'} (sts:GetCallerIdentity "
                                  f"failed: {error})")
        return Check("identity.caller", SKIPPED, None, f"sts:GetCallerIdentity failed: {error}.", incomplete=True)
    arn = caller["Arn"]
    role = role_arn_of_session(arn)
    session_name = session_name_of(arn)
    who = f"{arn} (account {caller['Account']})"
    if walk.winner == chain.IMDS or is_instance_id(session_name) or (role and any(same_role(role, n) for n in node_roles)):
        return _node_fallback(who)
    wanted = environ.get(_ROLE)
    if wanted and walk.winner == chain.WEB_IDENTITY and role and not same_role(role, wanted):
        return Check("identity.caller", WARN, None, f"{who}, not AWS_ROLE_ARN {wanted}.")
    if wanted and walk.winner != chain.WEB_IDENTITY:
        return Check("identity.caller", WARN, None,
                     f"{who}: {chain.LABELS.get(walk.winner or '', walk.winner)} won, so the pod is not "
                     f"{wanted} (AWS_ROLE_ARN).")
    return Check("identity.caller", OK, None, who + ".")


def _node_fallback(who: str) -> Check:
    return Check("identity.caller", FAIL, "NODE_ROLE_FALLBACK",
                 f"This process runs as {who}: the node's instance role, shared by every pod on the node. The pod "
                 "never got credentials of its own; whatever error the SDK reported, its calls are judged against "
                 "the node role's policies.",
                 node_fallback_fix(None, "the actions it needs", None))


# -- trust.role --------------------------------------------------------------------------------------


def _trust(options: LocalOptions, environ: Mapping[str, str], tokens: dict[str, Any], walk: chain.ChainWalk,
           session: Any, region: str | None) -> Check:
    web = tokens.get("web_identity")
    role_arn = environ.get(_ROLE)
    if web is None or web.claims is None or not role_arn:
        return Check("trust.role", SKIPPED, None, "No IRSA token and role to evaluate (EKS Pod Identity roles are "
                     "trusted by pods.eks.amazonaws.com, not by the token).")
    claims = web.claims
    if not (claims.issuer and claims.subject and claims.audiences):
        return Check("trust.role", SKIPPED, None, f"The token lacks iss, sub or aud ({claims.summary()}).")
    boto = None
    if not options.iam_files and not options.offline and walk.credentials is not None:
        import boto3

        creds = walk.credentials
        boto = boto3.Session(aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                             aws_session_token=creds.token, region_name=region)
    inventory, unread = load_trust_inventory(options.iam_files, session=boto, role_arn=role_arn)
    if options.offline and not options.iam_files:
        unread = "--offline and no --iam file"
    question = TrustQuestion(role_arn, claims.issuer, claims.subject, claims.audiences[0])
    return check_trust(question, inventory, unread)


# -- plumbing ----------------------------------------------------------------------------------------


def _botocore_session(environ: Mapping[str, str], timeout: float) -> tuple[Any, str | None, Any]:
    """A botocore session on standard configuration, every client limited to one attempt
    and *timeout*-second connections; and the region (``AWS_REGION`` first, as the other
    SDKs and the webhook's variables have it)."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    try:
        session = botocore.session.Session()
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or session.get_config_variable("region")
    except BotoCoreError as error:
        raise UsageError(f"AWS configuration: {error}", "check AWS_PROFILE and ~/.aws/config") from None
    if region:
        session.set_config_variable("region", region)
    config = Config(connect_timeout=timeout, read_timeout=max(timeout, 5.0), retries={"max_attempts": 1})
    session.set_default_client_config(config)
    return session, region, config


def _endpoints(session: Any, region: str | None, environ: Mapping[str, str], options: LocalOptions) -> list[Endpoint]:
    from urllib.parse import urlsplit

    found = sts_endpoints(session, region, environ)
    for service in options.services:
        try:
            found.append(service_endpoint(session, service, region))
        except ValueError as error:
            raise UsageError(f"--service {service}: {error}") from None
    for url in options.endpoints:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        if not parts.hostname:
            raise UsageError(f"--endpoint {url!r}: expected a URL such as https://ec2.eu-west-1.amazonaws.com")
        name = parts.hostname + (f":{parts.port}" if parts.port else "")
        found.append(Endpoint(name, parts.geturl(), "given with --endpoint"))
    return found


def _target(options: LocalOptions, own_subject: str | None) -> dict[str, Any]:
    namespace = None
    try:
        namespace = (options.kube_sa_dir / "namespace").read_text(encoding="utf-8").strip() or None
    except OSError:
        pass
    return {"kind": "environment", "hostname": socket.gethostname(), "namespace": namespace,
            "service_account": own_subject}


def _sentences(notes: list[str]) -> str:
    return "".join(f" {note[0].upper()}{note[1:]}." for note in notes)
