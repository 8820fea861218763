"""Name resolution, as the SDK does it or as ``nslookup NAME SERVER`` does.

An SDK resolves an endpoint with the C library (``getaddrinfo``): ``/etc/hosts``, then the
nameservers, search domains and ``ndots`` of ``/etc/resolv.conf`` — in a pod with
``dnsPolicy: ClusterFirst``, the cluster's DNS service (CoreDNS).  :func:`system_resolver`
does exactly that, bounded by a timeout.  :func:`server_resolver` asks one nameserver
directly over UDP (``--dns-server``), to tell "CoreDNS does not answer" from "the name
does not exist" without ``nslookup`` in the image.

Either way a failure is a :class:`ResolveError` whose ``kind`` says which:
``no_such_name`` (NXDOMAIN, or no address records), ``no_answer`` (the resolver did
not answer in time, or refused), or ``error``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ResolveError", "Resolver", "ResolverConfig", "parse_address", "read_resolv_conf", "server_resolver",
           "system_resolver"]

#: ``resolver(host, timeout)`` → the host's addresses, or :class:`ResolveError`.
Resolver = Callable[[str, float], list[str]]

_A, _AAAA, _IN = 1, 28, 1
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class ResolveError(Exception):
    """A name that could not be resolved; ``kind`` is ``no_such_name``, ``no_answer`` or ``error``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class ResolverConfig:
    """What ``/etc/resolv.conf`` says: nameservers, search domains, ``ndots``."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    ndots: int = 1
    source: str = "/etc/resolv.conf"
    problems: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        if self.problems:
            return f"{self.source}: {'; '.join(self.problems)}"
        servers = ", ".join(self.nameservers) or "none"
        search = " ".join(self.search) or "none"
        return f"{self.source}: nameserver {servers}; search {search}; ndots {self.ndots}"


def read_resolv_conf(path: str | os.PathLike[str] = "/etc/resolv.conf") -> ResolverConfig:
    """The resolver configuration the C library reads (never raises)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return ResolverConfig(source=str(path), problems=(f"cannot be read ({error.strerror or error})",))
    servers: list[str] = []
    search: list[str] = []
    ndots = 1
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            servers.append(words[1])
        elif words[0] in ("search", "domain"):
            search = words[1:]
        elif words[0] == "options":
            for option in words[1:]:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = int(option[6:])
    return ResolverConfig(tuple(servers), tuple(search), ndots, str(path))


def system_resolver(host: str, timeout: float) -> list[str]:
    """The addresses ``getaddrinfo`` gives *host* (what the SDK connects to), within *timeout*.

    ``getaddrinfo`` has no timeout of its own, so it runs in a daemon thread that is left
    behind when it does not return in time (the C library gives up on its own later).
    """
    answer: list[list[str] | BaseException] = []

    def resolve() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            answer.append(list(dict.fromkeys(str(info[4][0]) for info in infos)))
        except BaseException as error:  # handed to the caller, never lost in the thread
            answer.append(error)

    worker = threading.Thread(target=resolve, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not answer:
        raise ResolveError("no_answer", f"no answer within {timeout:g} s")
    result = answer[0]
    if isinstance(result, socket.gaierror):
        if result.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            raise ResolveError("no_such_name", f"no such name ({result.strerror})")
        if result.errno == socket.EAI_AGAIN:
            raise ResolveError("no_answer", f"the resolver did not answer ({result.strerror})")
        raise ResolveError("error", str(result.strerror or result))
    if isinstance(result, BaseException):
        raise ResolveError("error", str(result))
    if not result:
        raise ResolveError("no_such_name", "no addresses")
    return result


def parse_address(value: str, default_port: int = 53) -> tuple[str, int]:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` → ``(ip, port)``; :class:`ValueError` otherwise."""
    text = value.strip()
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), value)
    elif text.count(":") == 1:
        host, _, rest = text.partition(":")
        port = _port(rest, value)
    ipaddress.ip_address(host)  # ValueError for a name: a nameserver is an address
    return host, port


def server_resolver(server: tuple[str, int]) -> Resolver:
    """A resolver that asks *server* (``(ip, port)``) for A and AAAA records over UDP, as
    ``nslookup NAME SERVER`` does (no search domains: the name is taken as it is)."""

    def resolve(host: str, timeout: float) -> list[str]:
        addresses: list[str] = []
        no_such = ""
        for qtype in (_A, _AAAA):
            code, found = _query(server, host, qtype, timeout)
            if code == 3:
                no_such = "NXDOMAIN"
                break
            if code:
                raise ResolveError("no_answer", f"{server[0]}:{server[1]} answered {_RCODES.get(code, code)}")
            addresses.extend(found)
        if not addresses:
            raise ResolveError("no_such_name", f"no such name ({no_such or 'no A or AAAA record'} from "
                                               f"{server[0]}:{server[1]})")
        return addresses

    return resolve


# -- the wire format (RFC 1035), just what a query and its answer need -----------------------


def _query(server: tuple[str, int], host: str, qtype: int, timeout: float) -> tuple[int, list[str]]:
    ident = secrets.randbelow(0x10000)
    question = _name(host) + struct.pack("!HH", qtype, _IN)
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question  # RD: recursion desired
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(packet, server)
            while True:
                data, _ = sock.recvfrom(4096)
                if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == ident:
                    break
        except TimeoutError:
            raise ResolveError("no_answer", f"no answer from {server[0]}:{server[1]} within {timeout:g} s") from None
        except OSError as error:
            raise ResolveError("no_answer", f"{server[0]}:{server[1]}: {error.strerror or error}") from None
    flags, qdcount, ancount = struct.unpack("!HHH", data[2:8])
    offset = 12
    try:
        for _ in range(qdcount):
            offset = _skip_name(data, offset) + 4
        found: list[str] = []
        for _ in range(ancount):
            offset = _skip_name(data, offset)
            rtype, _rclass, _ttl, length = struct.unpack("!HHIH", data[offset:offset + 10])
            offset += 10
            rdata = data[offset:offset + length]
            offset += length
            if rtype == _A and length == 4:
                found.append(str(ipaddress.IPv4Address(rdata)))
            elif rtype == _AAAA and length == 16:
                found.append(str(ipaddress.IPv6Address(rdata)))
    except (struct.error, IndexError, ValueError):
        raise ResolveError("error", f"{server[0]}:{server[1]} sent an answer that cannot be read") from None
    return flags & 0x000F, found


def _name(host: str) -> bytes:
    labels = [label for label in host.rstrip(".").split(".") if label]
    try:
        encoded = [label.encode("idna") for label in labels]
    except UnicodeError:
        raise ResolveError("error", f"{host!r} is not a valid host name") from None
    if not encoded or any(len(label) > 63 for label in encoded):
        raise ResolveError("error", f"{host!r} is not a valid host name")
    return b"".join(bytes([len(label)]) + label for label in encoded) + b"\x00"


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{value!r}: bad port")
    return int(text)
