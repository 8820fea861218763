"""Small servers on 127.0.0.1 for the doctor's tests: nothing leaves the machine.

* :class:`Imds` — the EC2 instance metadata service as botocore asks it: an IMDSv2 token
  (``PUT /latest/api/token``), the role name, then the role's credentials.  ``hop_limited``
  plays a node with an IMDSv2 hop limit of 1: the token request is accepted but never
  answered, as when the answer's hop limit expires before it reaches a container; with
  ``tokens_required`` (IMDSv2 only) a request without a token is answered 401.
* :class:`DnsServer` — a UDP nameserver answering A/AAAA from a table, NXDOMAIN for any
  other name, or nothing at all (``silent``: CoreDNS down).
* :class:`TlsServer` — a TLS endpoint with a self-signed certificate for ``localhost`` and
  127.0.0.1 (``ca_file`` is its certificate, for ``AWS_CA_BUNDLE``).
* :class:`ConnectProxy` — an HTTP proxy that serves ``CONNECT`` (what an SDK asks an
  ``HTTPS_PROXY`` for) and notes every target it was asked for.
* :class:`PodIdentityAgent` — the EKS Pod Identity agent's ``GET /v1/credentials``: the
  pod's token in ``Authorization``, credentials back (or 400 without a token).
* :class:`StsRefusal` — an STS endpoint that refuses every ``AssumeRoleWithWebIdentity``
  with the error STS returns (moto accepts every token).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import socketserver
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self


class _Threaded:
    server: Any = None
    thread: threading.Thread | None = None

    def _serve(self, server: Any, name: str) -> None:
        self.server = server
        self._port = server.server_address[1]
        server.daemon_threads = True
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self._port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> Self:
        return self.start()  # type: ignore[attr-defined]

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Imds(_Threaded):
    """The instance metadata service on loopback; ``url`` goes in ``AWS_EC2_METADATA_SERVICE_ENDPOINT``."""

    def __init__(self, role: str | None, credentials: dict[str, str] | None = None, *, hop_limited: bool = False,
                 tokens_required: bool = True) -> None:
        self.role, self.credentials, self.hop_limited = role, credentials or {}, hop_limited
        self.tokens_required = tokens_required
        self.requests: list[str] = []
        self._release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> Self:
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                imds.requests.append(f"PUT {self.path}")
                if imds.hop_limited:
                    imds._release.wait(30)  # the answer never reaches the container
                    return
                self._send(200, "AQAEAtoken", "text/plain")

            def do_GET(self) -> None:
                imds.requests.append(f"GET {self.path}")
                base = "/latest/meta-data/iam/security-credentials/"
                if imds.tokens_required and not self.headers.get("X-aws-ec2-metadata-token"):
                    self._send(401, "Unauthorized", "text/plain")
                elif self.path == base and imds.role:
                    self._send(200, imds.role, "text/plain")
                elif imds.role and self.path == base + imds.role:
                    now = dt.datetime.now(dt.UTC)
                    body = {"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "Expiration": (now + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            **imds.credentials}
                    self._send(200, json.dumps(body), "application/json")
                else:
                    self._send(404, "Not Found", "text/plain")

            def _send(self, code: int, body: str, kind: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "imds")
        return self

    def stop(self) -> None:
        self._release.set()
        super().stop()


class DnsServer(_Threaded):
    """A nameserver on 127.0.0.1 (UDP): ``records`` maps a name to its addresses."""

    def __init__(self, records: dict[str, list[str]] | None = None, *, silent: bool = False) -> None:
        self.records = {name.rstrip(".").lower(): list(addresses) for name, addresses in (records or {}).items()}
        self.silent = silent
        self.queries: list[tuple[str, int]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        dns = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                name, qtype, end = _question(data)
                dns.queries.append((name, qtype))
                if dns.silent:
                    return
                wanted = [a for a in dns.records.get(name, []) if (":" in a) == (qtype == 28)]
                known = name in dns.records
                flags = 0x8180 if known else 0x8183  # a response, RD+RA; NXDOMAIN when unknown
                answers = b""
                for address in wanted:
                    rdata = socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)
                    answers += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 60, len(rdata)) + rdata
                header = data[:2] + struct.pack("!HHHHH", flags, 1, len(wanted), 0, 0)
                sock.sendto(header + data[12:end] + answers, self.client_address)

        self._serve(socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler), "dns")
        return self


def _question(data: bytes) -> tuple[str, int, int]:
    labels, offset = [], 12
    while data[offset]:
        length = data[offset]
        labels.append(data[offset + 1:offset + 1 + length].decode())
        offset += length + 1
    qtype = struct.unpack("!H", data[offset + 1:offset + 3])[0]
    return ".".join(labels).lower(), qtype, offset + 5


def self_signed(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for *host* and 127.0.0.1."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "endpoint.pem", directory / "endpoint.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class TlsServer(_Threaded):
    """An HTTPS endpoint on 127.0.0.1 with a self-signed certificate for ``localhost``."""

    def __init__(self, directory: Path) -> None:
        self.ca_file, self._key = self_signed(directory)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self) -> Self:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, self._key)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._serve(server, "tls")
        return self


class ConnectProxy(_Threaded):
    """An HTTP proxy on 127.0.0.1 serving ``CONNECT host:port`` (tunnels to 127.0.0.1 only)."""

    def __init__(self) -> None:
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("latin-1").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                if len(line) < 2 or line[0] != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    return
                proxy.targets.append(line[1])
                _host, _, port = line[1].rpartition(":")
                try:
                    upstream = socket.create_connection(("127.0.0.1", int(port)), timeout=5)  # loopback only
                except OSError:
                    self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                    return
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                _pipe(self.connection, upstream)

        self._serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler), "proxy")
        return self


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    other = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    other.start()
    pump(client, upstream)
    other.join(10)
    upstream.close()


class PodIdentityAgent(_Threaded):
    """The EKS Pod Identity agent on loopback: ``url`` goes in ``AWS_CONTAINER_CREDENTIALS_FULL_URI``."""

    def __init__(self, credentials: dict[str, str]) -> None:
        self.credentials = credentials
        self.tokens: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/credentials"

    def start(self) -> Self:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                token = self.headers.get("Authorization", "")
                agent.tokens.append(token)
                if self.path != "/v1/credentials" or not token:
                    body, code = b"Service account token cannot be empty", 400
                else:
                    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)
                    body = json.dumps({**agent.credentials, "AccountId": "123456789012",
                                       "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
                    code = 200
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "pod-identity-agent")
        return self


class StsRefusal(_Threaded):
    """An STS endpoint that answers every request with STS's error (``code``, ``message``)."""

    def __init__(self, code: str = "AccessDenied",
                 message: str = "Not authorized to perform sts:AssumeRoleWithWebIdentity") -> None:
        self.code, self.message = code, message
        self.actions: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        sts = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                from urllib.parse import parse_qs

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                sts.actions.append(parse_qs(body).get("Action", [""])[0])
                error = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
                         f"<Code>{sts.code}</Code><Message>{sts.message}</Message></Error>"
                         "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>").encode()
                self.send_response(403 if sts.code == "AccessDenied" else 400)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler), "sts-refusal")
        return self
