"""Can this pod reach the AWS endpoint its SDK will call? (``EndpointConnectionError``)

Which endpoint: botocore resolves it, so :func:`sts_endpoints` and :func:`service_endpoint`
ask botocore (``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_STS_REGIONAL_ENDPOINTS``,
``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` all apply).  STS is the one every
IRSA pod calls first (``AssumeRoleWithWebIdentity``): regional when
``AWS_STS_REGIONAL_ENDPOINTS=regional`` (which the webhook injects with the
``eks.amazonaws.com/sts-regional-endpoints: "true"`` annotation) and in current SDKs by
default, the global ``sts.amazonaws.com`` in SDKs released before that default changed —
so without the variable both are checked, the global one as a warning.

How: :func:`check_endpoint` takes the three steps an SDK's connection takes, each with a
short timeout — DNS, TCP, TLS — or, when ``HTTPS_PROXY``/``HTTP_PROXY`` apply to the URL
and ``NO_PROXY`` does not exempt it (as botocore decides), DNS and TCP to the proxy, an
HTTP ``CONNECT``, then TLS to the endpoint through the tunnel.  TLS is verified as
botocore verifies it: ``AWS_CA_BUNDLE`` if set, else botocore's bundle.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from trailscan.doctor.dns import ResolveError, Resolver, ResolverConfig
from trailscan.doctor.model import FAIL, OK, WARN, Check
from trailscan.explain.fixes import fix
from trailscan.explain.text import sh

__all__ = ["Endpoint", "check_endpoint", "service_endpoint", "sts_endpoints"]

GLOBAL_STS = "https://sts.amazonaws.com"


@dataclass(frozen=True)
class Endpoint:
    """An endpoint to check: its check id suffix, URL, why this one, and whether a failure
    only warns (the global STS endpoint, which only older SDKs still call)."""

    name: str
    url: str
    why: str
    advisory: bool = False


def sts_endpoints(session: Any, region: str | None, environ: Mapping[str, str]) -> list[Endpoint]:
    """The STS endpoint(s) an SDK in this environment calls; *session* is a botocore session."""
    setting = (environ.get("AWS_STS_REGIONAL_ENDPOINTS") or "").strip().lower()
    url = _endpoint_url(session, "sts", region)
    custom = any(name in environ for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"))
    if custom:
        why = "the STS endpoint AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL sets"
    elif region:
        why = (f"the STS endpoint for region {region} "
               f"(AWS_STS_REGIONAL_ENDPOINTS={setting or 'unset: regional in current SDKs'})")
    else:
        why = "the global STS endpoint (no AWS_REGION or AWS_DEFAULT_REGION is set)"
    found = [Endpoint("sts", url, why)]
    if not custom and region and setting != "regional" and url.rstrip("/") != GLOBAL_STS:
        found.append(Endpoint("sts_global", GLOBAL_STS,
                              "the global STS endpoint, which SDKs older than the regional default call when "
                              "AWS_STS_REGIONAL_ENDPOINTS is not 'regional'", advisory=True))
    return found


def service_endpoint(session: Any, service: str, region: str | None) -> Endpoint:
    """The endpoint botocore resolves for *service* (``s3``, ``ec2``, …) in *region*."""
    return Endpoint(service, _endpoint_url(session, service, region),
                    f"the {service} endpoint botocore resolves for region {region or '(none)'}")


def _endpoint_url(session: Any, service: str, region: str | None) -> str:
    from botocore.exceptions import BotoCoreError

    try:
        client = session.create_client(service, region_name=region, aws_access_key_id="x",
                                        aws_secret_access_key="x")  # credentials are not needed to resolve
    except BotoCoreError as error:
        raise ValueError(f"botocore cannot resolve the {service} endpoint: {error}") from None
    return str(client.meta.endpoint_url)


class _StepError(Exception):
    def __init__(self, step: str, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.step, self.message, self.kind = step, message, kind


def check_endpoint(
    endpoint: Endpoint,
    *,
    timeout: float,
    resolver: Resolver,
    resolver_config: ResolverConfig,
    ca_bundle: str | None,
    proxies: Mapping[str, str],
) -> Check:
    """``endpoint.<name>``: DNS, TCP and TLS to *endpoint* (through the proxy *proxies*
    names for its scheme, as botocore's ``get_environ_proxies`` gives them)."""
    check_id = f"endpoint.{endpoint.name}"
    parts = urlsplit(endpoint.url)
    host, scheme = parts.hostname or "", parts.scheme or "https"
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return Check(check_id, FAIL, "ENDPOINT_UNREACHABLE", f"{endpoint.url} is not a valid URL.")
    if not host:
        return Check(check_id, FAIL, "ENDPOINT_UNREACHABLE", f"{endpoint.url} names no host.")
    proxy = proxies.get(scheme)
    evidence: list[str] = []
    started = time.monotonic()
    try:
        if proxy:
            proxy_url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            proxy_host = proxy_url.hostname or ""
            proxy_port = proxy_url.port or (443 if proxy_url.scheme == "https" else 80)
            evidence.append(f"through the proxy {_redact(proxy_url)} ({scheme}_proxy; NO_PROXY does not exempt {host})")
            addresses = _resolve(proxy_host, timeout, resolver, evidence)
            sock = _connect(addresses, proxy_port, timeout, evidence)
            try:
                if proxy_url.scheme == "https":  # TLS to the proxy itself, then CONNECT inside it
                    sock = _handshake(sock, proxy_host, timeout, ca_bundle, evidence, keep=True)
                if scheme == "https":
                    _tunnel(sock, host, port, proxy_url, timeout, evidence)
                    if proxy_url.scheme == "https":
                        evidence.append("TLS to the endpoint inside the HTTPS proxy's tunnel is not checked")
                    else:
                        _handshake(sock, host, timeout, ca_bundle, evidence)
            finally:
                sock.close()
        else:
            addresses = _resolve(host, timeout, resolver, evidence)
            sock = _connect(addresses, port, timeout, evidence)
            try:
                if scheme == "https":
                    _handshake(sock, host, timeout, ca_bundle, evidence)
                else:
                    evidence.append("plain HTTP: no TLS")
            finally:
                sock.close()
    except _StepError as error:
        evidence.append(f"{error.step}: {error.message}")
        return _failure(check_id, endpoint, host, error, evidence, resolver_config)
    took = time.monotonic() - started
    return Check(check_id, OK, None,
                 f"{endpoint.url} ({endpoint.why}): " + "; ".join(evidence) + f" ({took * 1000:.0f} ms).")


def _failure(check_id: str, endpoint: Endpoint, host: str, error: _StepError, evidence: list[str],
             config: ResolverConfig) -> Check:
    status = WARN if endpoint.advisory else FAIL
    head = f"{endpoint.url} ({endpoint.why}): " + "; ".join(evidence) + "."
    if error.step == "DNS":
        detail = f"{head} Resolver: {config.describe()}."
        if error.kind == "no_such_name":
            remedy = fix(
                f"The name {host} does not exist for this pod's resolver. Check the region in the endpoint "
                "(AWS_REGION), a private hosted zone or VPC interface endpoint without private DNS, and "
                "CoreDNS forwarding; compare with a lookup from the pod.",
                f"nslookup {sh(host)}",
            )
        else:
            remedy = fix(
                "The pod's resolver did not answer: is CoreDNS running, ready and reachable (network policies "
                "allowing UDP and TCP 53 to kube-dns), with enough node capacity?",
                "kubectl get pods -n kube-system -l k8s-app=kube-dns -o wide",
                "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50",
            )
        return Check(check_id, status, "DNS_RESOLUTION_FAILED", detail, remedy)
    if error.step == "TLS":
        remedy = fix(
            "The TLS handshake failed. Behind a TLS-inspecting proxy, give the SDK its CA with AWS_CA_BUNDLE; "
            "otherwise check what answers on that address (a VPC endpoint, a firewall).",
            f"openssl s_client -connect {sh(f'{host}:443')} -servername {sh(host)} </dev/null",
        )
    else:
        remedy = fix(
            "Nothing accepted the connection in time: check security groups and network ACLs, the route to a NAT "
            "gateway or the VPC interface endpoint (and its security group), network policies, and the proxy "
            "variables (HTTPS_PROXY, NO_PROXY).",
            "kubectl get networkpolicies -n \"$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)\"",
        )
    return Check(check_id, status, "ENDPOINT_UNREACHABLE", head, remedy)


# -- the steps ------------------------------------------------------------------------------------


def _resolve(host: str, timeout: float, resolver: Resolver, evidence: list[str]) -> list[str]:
    try:
        ipaddress.ip_address(host)
        evidence.append(f"DNS: {host} is an address")
        return [host]
    except ValueError:
        pass
    started = time.monotonic()
    try:
        addresses = resolver(host, timeout)
    except ResolveError as error:
        raise _StepError("DNS", f"{host}: {error.message}", error.kind) from None
    evidence.append(f"DNS: {host} → {', '.join(addresses[:4])}{' …' if len(addresses) > 4 else ''} "
                    f"({(time.monotonic() - started) * 1000:.0f} ms)")
    return addresses


def _connect(addresses: list[str], port: int, timeout: float, evidence: list[str]) -> socket.socket:
    failures = []
    for address in addresses:
        started = time.monotonic()
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except TimeoutError:
            failures.append(f"{_hostport(address, port)} timed out after {timeout:g} s")
            continue
        except OSError as error:
            failures.append(f"{_hostport(address, port)} {error.strerror or error}")
            continue
        evidence.append(f"TCP: connected to {_hostport(address, port)} ({(time.monotonic() - started) * 1000:.0f} ms)")
        return sock
    raise _StepError("TCP", "; ".join(failures))


def _tunnel(sock: socket.socket, host: str, port: int, proxy: Any, timeout: float, evidence: list[str]) -> None:
    target = _hostport(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username:
        secret = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(secret).decode())
    sock.settimeout(timeout)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except (TimeoutError, OSError) as error:
        raise _StepError("CONNECT", f"the proxy did not answer CONNECT {target} ({error})") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace").strip()
    words = status_line.split(" ", 2)
    if len(words) < 2 or words[1] != "200":
        raise _StepError("CONNECT", f"the proxy refused CONNECT {target}: {status_line or 'no answer'}")
    evidence.append(f"CONNECT {target}: {status_line}")


def _handshake(sock: socket.socket, host: str, timeout: float, ca_bundle: str | None, evidence: list[str],
               keep: bool = False) -> Any:
    try:
        context = ssl.create_default_context(cafile=ca_bundle or _default_bundle())
    except (OSError, ssl.SSLError) as error:
        raise _StepError("TLS", f"the CA bundle {ca_bundle} cannot be used ({error})") from None
    sock.settimeout(timeout)
    started = time.monotonic()
    try:
        wrapped = context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        raise _StepError("TLS", f"the certificate of {host} is not trusted ({error.verify_message})") from None
    except (ssl.SSLError, TimeoutError, OSError) as error:
        raise _StepError("TLS", f"handshake with {host} failed ({error})") from None
    cert = wrapped.getpeercert() or {}
    subject = dict(item[0] for item in cert.get("subject", ()) if item)
    expires = cert.get("notAfter", "")
    evidence.append(f"TLS: {wrapped.version()} with {host}, certificate {subject.get('commonName', '?')} "
                    f"valid until {expires} ({(time.monotonic() - started) * 1000:.0f} ms)")
    if keep:
        return wrapped
    wrapped.close()
    return None


def _default_bundle() -> str:
    from botocore.httpsession import get_cert_path

    return str(get_cert_path(True))


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(url: Any) -> str:
    """A proxy URL without its password."""
    netloc = url.hostname or ""
    if url.port:
        netloc = f"{netloc}:{url.port}"
    if url.username:
        netloc = f"{url.username}:***@{netloc}"
    return f"{url.scheme}://{netloc}"
