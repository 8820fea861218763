"""`trailscan doctor` inside a pod: each cause built as it happens, and a healthy pod passes.

Real parts: botocore's own credential chain; STS (``AssumeRoleWithWebIdentity``,
``GetCallerIdentity``) and IAM from moto in server mode on 127.0.0.1; token files minted
and signed by the tests (:mod:`tests.support.tokens`); the instance metadata service, the
Pod Identity agent, a nameserver, a TLS endpoint, a CONNECT proxy and a refusing STS
served on loopback (:mod:`tests.support.loopback`).  Failing names are under ``.invalid``
and asked of the loopback nameserver: nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.loopback import ConnectProxy, DnsServer, Imds, PodIdentityAgent, StsRefusal, TlsServer
from tests.support.moto_server import MotoServer
from tests.support.tokens import ISSUER, mint, write_token
from trailscan.doctor.dns import parse_address
from trailscan.doctor.local import LocalOptions, run_local
from trailscan.doctor.model import DoctorReport

ACCOUNT = "123456789012"  # moto's
ROLE = f"arn:aws:iam::{ACCOUNT}:role/payments-api"
NODE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/eks-node-role"
ISSUER_HOST = ISSUER.removeprefix("https://")
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_HOST}"
IRSA_TOKEN = "eks.amazonaws.com/serviceaccount/token"
PI_TOKEN = "pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token"


def trust_policy(subject: str = "system:serviceaccount:payments:api", audience: str = "sts.amazonaws.com",
                 provider: str = PROVIDER, action: str = "sts:AssumeRoleWithWebIdentity") -> dict:
    issuer = provider.split(":oidc-provider/", 1)[1]
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider}, "Action": action,
        "Condition": {"StringEquals": {f"{issuer}:sub": subject, f"{issuer}:aud": audience}},
    }]}


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


@pytest.fixture
def aws(moto):
    """moto, reset, with the pod's role and the cluster's OIDC provider."""
    moto.reset()
    iam = moto.session("eu-west-1").client("iam")
    iam.create_role(RoleName="payments-api", AssumeRolePolicyDocument=json.dumps(trust_policy()))
    iam.create_role(RoleName="eks-node-role", AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                 "Action": "sts:AssumeRole"}]}))
    iam.create_open_id_connect_provider(Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["9" * 40])
    return moto


class Pod:
    """The environment of a container: the variables and files the webhook and kubelet give it."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, moto: MotoServer) -> None:
        self.root, self.monkeypatch = root, monkeypatch
        self.secrets = root / "var/run/secrets"
        self.sa_dir = self.secrets / "kubernetes.io/serviceaccount"
        for name in [n for n in os.environ if n.startswith(("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"))
                     or n.lower() in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")]:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint_url)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        # the pod's own service-account token, as automountServiceAccountToken mounts it
        write_token(self.sa_dir / "token", mint(audience=["https://kubernetes.default.svc"], lifetime=3607))
        (self.sa_dir / "namespace").write_text("payments")

    def irsa(self, token: str | None = None, role: str = ROLE) -> Path:
        path = write_token(self.secrets / IRSA_TOKEN, token or mint())
        self.monkeypatch.setenv("AWS_ROLE_ARN", role)
        self.monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(path))
        self.monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "regional")
        return path

    def pod_identity(self, uri: str, token: str | None = None) -> Path:
        path = write_token(self.secrets / PI_TOKEN, token or mint(audience="pods.eks.amazonaws.com"))
        self.monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri)
        self.monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(path))
        return path

    def imds(self, server: Imds) -> None:
        self.monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "false")
        self.monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url)

    def doctor(self, **options) -> DoctorReport:
        options.setdefault("timeout", 2.0)
        return run_local(LocalOptions(kube_sa_dir=self.sa_dir, resolv_conf=self.root / "resolv.conf", **options))


@pytest.fixture
def pod(tmp_path, monkeypatch, aws):
    return Pod(tmp_path, monkeypatch, aws)


def by_id(report: DoctorReport) -> dict[str, tuple[str, str | None]]:
    return {check.id: (check.status, check.cause) for check in report.checks}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assumed(moto: MotoServer, role: str, session: str) -> dict[str, str]:
    answer = moto.session("eu-west-1").client("sts").assume_role(RoleArn=role, RoleSessionName=session)
    creds = answer["Credentials"]
    return {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
            "Token": creds["SessionToken"]}


# -- a healthy pod ---------------------------------------------------------------------------------


def test_a_healthy_irsa_pod_passes_every_check(pod):
    pod.irsa()
    report = pod.doctor()
    checks = by_id(report)
    assert checks == {
        "env.variables": ("ok", None),
        "token.web_identity.file": ("ok", None),
        "token.web_identity.claims": ("ok", None),
        "endpoint.sts": ("ok", None),
        "credentials.chain": ("ok", None),
        "identity.caller": ("ok", None),
        "trust.role": ("ok", None),  # read live: the role and the OIDC provider, from moto's IAM
    }, [c.detail for c in report.checks]
    assert report.exit_code == 0
    chain = report.get("credentials.chain").detail
    assert chain.startswith("web identity (IRSA")
    assert "environment keys (AWS_ACCESS_KEY_ID): AWS_ACCESS_KEY_ID is not set" in chain
    assert "not asked: container credentials" in chain and "instance metadata" in chain
    assert "assumed-role/payments-api/" in report.get("identity.caller").detail
    assert report.target["service_account"] == "system:serviceaccount:payments:api"
    assert report.target["namespace"] == "payments"


def test_a_healthy_pod_identity_pod_passes_every_check(pod, aws):
    with PodIdentityAgent(assumed(aws, ROLE, "eks-prod-api-7d9f8b6c5-x2x9q-5c8a1c3e")) as agent:
        path = pod.pod_identity(agent.url)
        report = pod.doctor()
    checks = by_id(report)
    assert {status for status, _ in checks.values()} <= {"ok", "skipped"}, [c.detail for c in report.checks]
    assert checks["credentials.chain"] == ("ok", None)
    assert checks["credentials.pod_identity_agent"] == ("ok", None)
    assert report.get("credentials.chain").detail.startswith("container credentials (Pod Identity")
    assert agent.tokens and agent.tokens[-1] == path.read_text()  # the SDK sent the pod's token
    assert report.exit_code == 0


# -- no credentials ----------------------------------------------------------------------------------


def test_no_credentials_injected(pod):
    report = pod.doctor()
    checks = by_id(report)
    assert checks["env.variables"] == ("fail", "NO_CREDENTIALS_INJECTED")
    assert checks["credentials.chain"] == ("fail", "NO_CREDENTIALS_INJECTED")
    assert "NoCredentialsError" in report.get("credentials.chain").detail
    assert checks["credentials.imds"] == ("fail", "IMDS_UNREACHABLE")  # disabled here
    assert checks["identity.caller"] == ("skipped", None)
    assert report.root_cause.cause == "NO_CREDENTIALS_INJECTED"
    assert report.exit_code == 1


def test_imds_unreachable_behind_a_hop_limit(pod):
    with Imds("eks-node-role", hop_limited=True) as imds:
        pod.imds(imds)
        report = pod.doctor(timeout=1.0)
    assert by_id(report)["credentials.imds"] == ("fail", "IMDS_UNREACHABLE")
    detail = report.get("credentials.imds").detail
    assert "no answer to the IMDSv2 token request" in detail and "401" in detail
    assert any(request.startswith("PUT /latest/api/token") for request in imds.requests)


def test_node_role_fallback(pod, aws):
    credentials = assumed(aws, NODE_ROLE, "i-0123456789abcdef0")
    with Imds("eks-node-role", credentials) as imds:
        pod.imds(imds)
        report = pod.doctor()
    checks = by_id(report)
    assert checks["identity.caller"] == ("fail", "NODE_ROLE_FALLBACK")
    assert "assumed-role/eks-node-role/i-0123456789abcdef0" in report.get("identity.caller").detail
    assert checks["credentials.chain"] == ("warn", None)
    assert report.get("credentials.chain").detail.startswith("instance metadata (the node's instance role) won")
    assert checks["env.variables"] == ("fail", "NO_CREDENTIALS_INJECTED")
    assert report.root_cause.cause == "NO_CREDENTIALS_INJECTED"  # the fallback's own cause


def test_environment_keys_shadow_irsa(pod, aws):
    pod.irsa()
    creds = assumed(aws, NODE_ROLE, "static")
    pod.monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    pod.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    pod.monkeypatch.setenv("AWS_SESSION_TOKEN", creds["Token"])
    report = pod.doctor()
    checks = by_id(report)
    assert checks["env.variables"] == ("warn", None)
    assert checks["credentials.chain"] == ("warn", None)
    assert checks["identity.caller"] == ("warn", None)
    assert creds["SecretAccessKey"] not in json.dumps([c.as_json() for c in report.checks])


# -- the token -----------------------------------------------------------------------------------------


def test_token_missing(pod):
    pod.irsa()
    pod.monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(pod.root / "not-mounted/token"))
    report = pod.doctor()
    checks = by_id(report)
    assert checks["token.web_identity.file"] == ("fail", "TOKEN_UNREADABLE")
    assert checks["credentials.chain"] == ("fail", "TOKEN_UNREADABLE")  # botocore's own FileNotFoundError
    assert "does not exist" in report.get("token.web_identity.file").detail


@pytest.fixture
def as_nobody():
    """Run a block as uid/gid 65534, as a container with runAsUser: 65534 would: the kernel's own
    permission check (the tests may run as root, which reads anything).  Only the effective ids
    change, so they are given back afterwards."""
    from contextlib import contextmanager

    @contextmanager
    def switch():
        if os.geteuid() != 0:
            yield
            return
        os.setegid(65534)
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    return switch


def test_token_not_readable_by_the_containers_user(pod, as_nobody):
    """A token of mode 0600 owned by another user than the container's."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="doctor-token-", dir="/tmp"))
    folder.chmod(0o755)
    try:
        token = write_token(folder / "token", mint(), mode=0o600 if os.geteuid() == 0 else 0o000)
        pod.irsa()
        pod.monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
        with as_nobody():
            report = pod.doctor(offline=True)
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    checks = by_id(report)
    assert checks["token.web_identity.file"] == ("fail", "TOKEN_UNREADABLE")
    detail = report.get("token.web_identity.file").detail
    assert "not readable by this user" in detail and "fsGroup" in report.get("token.web_identity.file").fix
    assert checks["credentials.chain"] == ("fail", "TOKEN_UNREADABLE")  # botocore's own PermissionError


def test_token_expired(pod):
    pod.irsa(mint(issued_ago=7200, lifetime=3600))
    report = pod.doctor()
    assert by_id(report)["token.web_identity.claims"] == ("fail", "TOKEN_EXPIRED")
    assert "expired at" in report.get("token.web_identity.claims").detail
    assert report.exit_code == 1


def test_token_audience_mismatch(pod):
    # The pod's own API-server token handed to the SDK: the audience is the API server's.
    pod.irsa(mint(audience="https://kubernetes.default.svc"))
    report = pod.doctor()
    assert by_id(report)["token.web_identity.claims"] == ("fail", "TOKEN_AUDIENCE_MISMATCH")
    assert "https://kubernetes.default.svc" in report.get("token.web_identity.claims").detail


def test_a_custom_audience_is_accepted_when_given(pod):
    pod.irsa(mint(audience="sts.eu-west-1.amazonaws.com"))
    report = pod.doctor(audience="sts.eu-west-1.amazonaws.com", offline=True)
    assert by_id(report)["token.web_identity.claims"] == ("ok", None)


def test_pod_identity_token_audience(pod, aws):
    with PodIdentityAgent(assumed(aws, ROLE, "eks-prod-api")) as agent:
        pod.pod_identity(agent.url, mint(audience="sts.amazonaws.com"))
        report = pod.doctor()
    assert by_id(report)["token.pod_identity.claims"] == ("fail", "TOKEN_AUDIENCE_MISMATCH")
    assert "pods.eks.amazonaws.com" in report.get("token.pod_identity.claims").detail


def test_token_of_another_service_account(pod):
    pod.irsa(mint(service_account="reports"))
    report = pod.doctor()
    assert by_id(report)["token.web_identity.claims"] == ("fail", "TOKEN_SUBJECT_MISMATCH")
    detail = report.get("token.web_identity.claims").detail
    assert "system:serviceaccount:payments:reports" in detail and "system:serviceaccount:payments:api" in detail


# -- the Pod Identity agent -------------------------------------------------------------------------


def test_pod_identity_agent_missing(pod):
    pod.pod_identity(f"http://127.0.0.1:{closed_port()}/v1/credentials")
    report = pod.doctor()
    checks = by_id(report)
    assert checks["credentials.pod_identity_agent"] == ("fail", "POD_IDENTITY_AGENT_MISSING")
    assert checks["credentials.chain"] == ("fail", "POD_IDENTITY_AGENT_MISSING")


def test_a_full_uri_botocore_refuses(pod):
    pod.pod_identity("http://10.0.0.9/v1/credentials")
    report = pod.doctor()
    assert by_id(report)["env.variables"] == ("fail", "NO_CREDENTIALS_INJECTED")
    assert "169.254.170.23" in report.get("env.variables").detail


# -- endpoints ---------------------------------------------------------------------------------------


def test_dns_resolution_failed_no_such_name(pod):
    pod.irsa()
    with DnsServer({"sts.eu-west-1.amazonaws.com": ["127.0.0.1"]}) as dns:
        report = pod.doctor(endpoints=("https://sts.eu-west-1.amazonaws.invalid",), dns_server=parse_address(dns.address))
    check = report.get("endpoint.sts.eu-west-1.amazonaws.invalid")
    assert (check.status, check.cause) == ("fail", "DNS_RESOLUTION_FAILED")
    assert "NXDOMAIN" in check.detail
    assert ("sts.eu-west-1.amazonaws.invalid", 1) in dns.queries


def test_dns_resolution_failed_when_the_resolver_does_not_answer(pod):
    """CoreDNS down: the nameserver never answers."""
    pod.irsa()
    with DnsServer(silent=True) as dns:
        report = pod.doctor(endpoints=("https://ec2.eu-west-1.amazonaws.invalid",),
                            dns_server=parse_address(dns.address), timeout=0.5)
    check = report.get("endpoint.ec2.eu-west-1.amazonaws.invalid")
    assert (check.status, check.cause) == ("fail", "DNS_RESOLUTION_FAILED")
    assert "no answer" in check.detail
    assert "k8s-app=kube-dns" in check.fix


def test_a_name_the_loopback_nameserver_knows_resolves_and_connects(pod, aws):
    pod.irsa()
    port = int(aws.endpoint_url.rsplit(":", 1)[1])
    with DnsServer({"sts.doctor.invalid": ["127.0.0.1"]}) as dns:
        report = pod.doctor(endpoints=(f"http://sts.doctor.invalid:{port}",), dns_server=parse_address(dns.address))
    check = report.get(f"endpoint.sts.doctor.invalid:{port}")
    assert check.status == "ok", check.detail
    assert "DNS: sts.doctor.invalid → 127.0.0.1" in check.detail and f"TCP: connected to 127.0.0.1:{port}" in check.detail
    assert ("sts.doctor.invalid", 1) in dns.queries and ("sts.doctor.invalid", 28) in dns.queries


def test_endpoint_unreachable(pod):
    pod.irsa()
    port = closed_port()
    report = pod.doctor(endpoints=(f"http://127.0.0.1:{port}",))
    check = report.get(f"endpoint.127.0.0.1:{port}")
    assert (check.status, check.cause) == ("fail", "ENDPOINT_UNREACHABLE")
    assert "refused" in check.detail.lower()


def test_sts_unreachable_fails_the_chain_too(pod):
    pod.irsa()
    pod.monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{closed_port()}")
    report = pod.doctor()
    checks = by_id(report)
    assert checks["endpoint.sts"] == ("fail", "ENDPOINT_UNREACHABLE")
    assert checks["credentials.chain"] == ("fail", "ENDPOINT_UNREACHABLE")


def test_tls_end_to_end_on_a_real_loopback_name(pod, tmp_path):
    """`localhost` resolved by the C library (/etc/hosts), TCP, TLS verified with AWS_CA_BUNDLE."""
    pod.irsa()
    with TlsServer(tmp_path) as tls:
        pod.monkeypatch.setenv("AWS_CA_BUNDLE", str(tls.ca_file))
        trusted = pod.doctor(endpoints=(tls.url,), offline=True)
        pod.monkeypatch.delenv("AWS_CA_BUNDLE")
        untrusted = pod.doctor(endpoints=(tls.url,), offline=True)
    name = f"endpoint.localhost:{tls.port}"
    assert trusted.get(name).status == "ok", trusted.get(name).detail
    assert "TLS: TLSv1." in trusted.get(name).detail and "DNS: localhost → 127.0.0.1" in trusted.get(name).detail
    assert (untrusted.get(name).status, untrusted.get(name).cause) == ("fail", "ENDPOINT_UNREACHABLE")
    assert "not trusted" in untrusted.get(name).detail
    assert "AWS_CA_BUNDLE" in untrusted.get(name).fix


def test_the_proxy_is_honoured_and_shown(pod, tmp_path):
    pod.irsa()
    with TlsServer(tmp_path) as tls, ConnectProxy() as proxy:
        pod.monkeypatch.setenv("AWS_CA_BUNDLE", str(tls.ca_file))
        pod.monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        pod.monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # moto (the STS endpoint) is reached directly
        report = pod.doctor(endpoints=(tls.url,), offline=True)
    check = report.get(f"endpoint.localhost:{tls.port}")
    assert check.status == "ok", check.detail
    assert f"through the proxy {proxy.url}" in check.detail
    assert proxy.targets == [f"localhost:{tls.port}"]
    assert "proxy" not in report.get("endpoint.sts").detail  # NO_PROXY exempts it
    assert f"HTTPS_PROXY={proxy.url}" in report.get("env.variables").detail


def test_a_proxy_password_is_never_shown(pod):
    pod.irsa()
    pod.monkeypatch.setenv("HTTPS_PROXY", f"http://ops:s3cret@127.0.0.1:{closed_port()}")
    pod.monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    report = pod.doctor(endpoints=("https://localhost:1",), offline=True)
    text = json.dumps([c.as_json() for c in report.checks])
    assert "s3cret" not in text and "ops:***@" in text


def test_a_service_endpoint_is_the_one_botocore_resolves(pod, aws):
    pod.irsa()
    pod.monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{closed_port()}")
    report = pod.doctor(services=("s3", "ec2"), offline=True)
    assert report.get("endpoint.s3").status == "ok" and aws.endpoint_url in report.get("endpoint.s3").detail
    assert (report.get("endpoint.ec2").status, report.get("endpoint.ec2").cause) == ("fail", "ENDPOINT_UNREACHABLE")


def test_a_global_sts_endpoint_is_checked_without_regional_setting(pod, monkeypatch):
    import botocore.session

    from trailscan.doctor.endpoints import sts_endpoints

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_STS_REGIONAL_ENDPOINTS", raising=False)
    found = sts_endpoints(botocore.session.Session(), "eu-west-1", os.environ)
    assert [(e.name, e.url, e.advisory) for e in found] == [
        ("sts", "https://sts.eu-west-1.amazonaws.com", False), ("sts_global", "https://sts.amazonaws.com", True)]
    monkeypatch.setenv("AWS_STS_REGIONAL_ENDPOINTS", "regional")
    assert [e.name for e in sts_endpoints(botocore.session.Session(), "eu-west-1", os.environ)] == ["sts"]


# -- STS refuses, and the trust policy says why --------------------------------------------------------


def test_sts_refusal_is_reported_as_sts_said_it(pod):
    pod.irsa()
    with StsRefusal() as sts:
        pod.monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        report = pod.doctor(offline=True)
    assert by_id(report)["credentials.chain"] == ("fail", "UNEXPLAINED")
    assert "AccessDenied" in report.get("credentials.chain").detail
    assert "--iam" in report.get("credentials.chain").fix
    assert sts.actions == ["AssumeRoleWithWebIdentity"]


@pytest.mark.parametrize("code, message, cause", [
    ("InvalidIdentityToken", "Incorrect token audience", "TRUST_AUDIENCE_MISMATCH"),
    ("InvalidIdentityToken", f"No OpenIDConnect provider found in your account for {ISSUER}", "OIDC_PROVIDER_MISSING"),
    ("ExpiredTokenException", "Token expired: current date/time 1700000000 must be before the expiration date/time",
     "TOKEN_EXPIRED"),
])
def test_sts_says_why_in_so_many_words(pod, code, message, cause):
    pod.irsa()
    with StsRefusal(code, message) as sts:
        pod.monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        report = pod.doctor(offline=True)
    assert by_id(report)["credentials.chain"] == ("fail", cause)
    assert message.split(":")[0] in report.get("credentials.chain").detail


def iam_file(tmp_path: Path, *, roles: list[tuple[str, dict]], providers: list[dict] | None) -> Path:
    document: dict = {"UserDetailList": [], "GroupDetailList": [], "Policies": [], "RoleDetailList": [
        {"Path": "/", "RoleName": name, "RoleId": "AROA" + name.upper().replace("-", "")[:16],
         "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}", "AssumeRolePolicyDocument": trust,
         "RolePolicyList": [], "AttachedManagedPolicies": [], "InstanceProfileList": [], "Tags": []}
        for name, trust in roles]}
    if providers is not None:
        document["OpenIDConnectProviderList"] = providers
    path = tmp_path / "iam.json"
    path.write_text(json.dumps(document))
    return path


OIDC_PROVIDERS = [{"Arn": PROVIDER, "Url": ISSUER_HOST, "ClientIDList": ["sts.amazonaws.com"],
                   "ThumbprintList": ["9" * 40]}]


@pytest.mark.parametrize("situation, roles, providers, cause", [
    ("the cluster's provider is not in IAM", [("payments-api", trust_policy())], [], "OIDC_PROVIDER_MISSING"),
    ("the role was deleted", [("other", trust_policy())], OIDC_PROVIDERS, "ROLE_NOT_FOUND"),
    ("the trust names a recreated cluster's provider",
     [("payments-api", trust_policy(provider=PROVIDER.replace("EXAMPLED539", "OLDCLUSTER0")))], OIDC_PROVIDERS,
     "TRUST_PROVIDER_MISMATCH"),
    ("the statement allows sts:AssumeRole only", [("payments-api", trust_policy(action="sts:AssumeRole"))],
     OIDC_PROVIDERS, "TRUST_ACTION_MISSING"),
    ("the sub condition names another namespace",
     [("payments-api", trust_policy(subject="system:serviceaccount:billing:api"))], OIDC_PROVIDERS,
     "TRUST_SUBJECT_MISMATCH"),
    ("the aud condition names another audience", [("payments-api", trust_policy(audience="sts.eu-west-1.amazonaws.com"))],
     OIDC_PROVIDERS, "TRUST_AUDIENCE_MISMATCH"),
    ("the provider lacks the audience as a client id", [("payments-api", trust_policy())],
     [{**OIDC_PROVIDERS[0], "ClientIDList": ["sts.eu-west-1.amazonaws.com"]}], "TRUST_AUDIENCE_MISMATCH"),
])
def test_trust_causes_before_cloudtrail(pod, tmp_path, situation, roles, providers, cause):
    pod.irsa()
    report = pod.doctor(iam_files=(str(iam_file(tmp_path, roles=roles, providers=providers)),))
    assert by_id(report)["trust.role"] == ("fail", cause), report.get("trust.role").detail
    assert report.get("trust.role").fix
    assert report.exit_code == 1


def test_trust_read_live_refuses_the_token(pod, aws):
    aws.session("eu-west-1").client("iam").update_assume_role_policy(
        RoleName="payments-api", PolicyDocument=json.dumps(trust_policy(subject="system:serviceaccount:payments:web")))
    pod.irsa()
    report = pod.doctor()
    assert by_id(report)["trust.role"] == ("fail", "TRUST_SUBJECT_MISMATCH")
    assert "aws iam update-assume-role-policy --role-name payments-api" in report.get("trust.role").fix


def test_trust_with_an_unreadable_iam_file_is_an_input_error(pod, tmp_path):
    from trailscan.errors import InputError

    pod.irsa()
    (tmp_path / "iam.json").write_text("{not json")
    with pytest.raises(InputError, match="iam.json"):
        pod.doctor(iam_files=(str(tmp_path / "iam.json"),))


# -- the command line ----------------------------------------------------------------------------------


def run_doctor(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trailscan", "doctor", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd, timeout=180)


def test_cli_json_alone_on_stdout_and_exit_codes(pod, tmp_path):
    pod.irsa()
    healthy = run_doctor("--format", "json", "--service-account", "payments/api", env=dict(os.environ), cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    document = json.loads(healthy.stdout)
    assert document["schema"] == "trailscan.doctor/v1"
    assert set(document) == {"schema", "target", "checks"}
    assert all(set(check) == {"id", "status", "cause", "detail", "fix"} for check in document["checks"])
    assert "eyJ" not in healthy.stdout  # the token itself is never printed

    expired = pod.irsa(mint(issued_ago=7200, lifetime=3600))
    failing = run_doctor(env=dict(os.environ), cwd=tmp_path)
    assert failing.returncode == 1
    assert "FAIL  token.web_identity.claims  TOKEN_EXPIRED" in failing.stdout
    assert "Root cause: TOKEN_EXPIRED" in failing.stdout
    assert expired.read_text() not in failing.stdout

    usage = run_doctor("--dns-server", "kube-dns", env=dict(os.environ), cwd=tmp_path)
    assert usage.returncode == 2 and "expected IP or IP:PORT" in usage.stderr
    missing = run_doctor("--iam", str(tmp_path / "nope.json"), env=dict(os.environ), cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("trailscan: error:") and "nope.json" in missing.stderr


# -- trailscan iam-policy --doctor ------------------------------------------------------------------------


def test_iam_policy_doctor_allows_every_call_the_doctor_makes_and_no_more(pod, monkeypatch):
    """Every AWS call of a healthy run with the trust read live, recorded at botocore's client,
    is allowed by `iam-policy --doctor`, and everything it allows was called.  The web identity
    call is left out: no identity policy decides it, the role's trust policy does."""
    import fnmatch

    from botocore.client import BaseClient
    from click.testing import CliRunner

    from trailscan.cli import main

    calls: list[tuple[str, str, dict]] = []
    original = BaseClient._make_api_call

    def record(self, operation, params):
        calls.append((self.meta.service_model.endpoint_prefix, operation, dict(params)))
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    pod.irsa()
    assert pod.doctor().exit_code == 0
    printed = CliRunner().invoke(main, ["iam-policy", "--doctor"])
    assert printed.exit_code == 0
    document = json.loads(printed.stdout)
    made = {(f"{service}:{operation}", _resource(operation, params)) for service, operation, params in calls
            if operation != "AssumeRoleWithWebIdentity"}
    allowed = [(statement["Action"], statement["Resource"]) for statement in document["Statement"]]
    for action, resource in made:
        assert any(action in actions and any(fnmatch.fnmatchcase(resource, r) for r in
                                             (resources if isinstance(resources, list) else [resources]))
                   for actions, resources in allowed), (action, resource)
    assert {action for action, _ in made} == {a for actions, _ in allowed for a in actions}
    offline = json.loads(CliRunner().invoke(main, ["iam-policy", "--doctor", "--offline"]).stdout)
    assert [s["Action"] for s in offline["Statement"]] == [["sts:GetCallerIdentity"]]
    with_cluster = json.loads(CliRunner().invoke(main, ["iam-policy", "--doctor", "--cluster", "prod"]).stdout)
    assert "eks:ListPodIdentityAssociations" in {a for s in with_cluster["Statement"] for a in s["Action"]}


def _resource(operation: str, params: dict) -> str:
    if operation == "GetRole":
        return f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}"
    if operation == "GetOpenIDConnectProvider":
        return params["OpenIDConnectProviderArn"]
    return "*"


def test_hostile_token_claims_reach_the_terminal_as_escapes(pod, tmp_path):
    pod.irsa(mint(subject="system:serviceaccount:payments:\x1b]0;owned\x07api", issued_ago=7200, lifetime=3600))
    done = run_doctor("--offline", env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 1
    assert "\x1b" not in done.stdout and "\\x1b]0;owned\\x07" in done.stdout
