"""A tiny Kubernetes API server on 127.0.0.1, good enough for the real ``kubectl``.

SPEC §9 wants ``kubectl`` itself exercised, and there is no cluster in a test run.
This server answers exactly what ``kubectl get serviceaccounts`` needs:

* discovery: ``/api``, ``/apis`` (no groups), ``/api/v1`` (``serviceaccounts`` and
  ``namespaces``) and ``/version``.  Newer kubectl asks ``/api`` and ``/apis`` for
  *aggregated* discovery (``Accept: application/json;g=apidiscovery.k8s.io;v=v2;
  as=APIGroupDiscoveryList,…,application/json``); answering with the legacy
  documents as plain ``application/json`` makes it fall back to legacy
  discovery, which every kubectl since 1.0 speaks;
* ``/api/v1/serviceaccounts`` and ``/api/v1/namespaces/NS/serviceaccounts[/NAME]``
  as a ``ServiceAccountList`` with the API server's chunking: ``?limit=N`` returns
  at most N items and a ``metadata.continue`` token, ``?continue=TOKEN`` resumes.
  ``page_size`` caps a page below the client's ``limit`` (a real server may return
  fewer items than asked), so a test can force kubectl to page;
* ``/.well-known/openid-configuration`` with ``issuer`` when one is given (as an EKS
  API server announces its OIDC issuer), else 404;
* the server-side ``Table`` rendering (``Accept: application/json;as=Table;…``)
  that kubectl asks for when it prints columns rather than ``-o json``.

Use it as a context manager (or the ``kube_api`` fixture)::

    with KubeAPI([service_account("payments", "api", role_arn=ARN)]) as api:
        env["KUBECONFIG"] = str(api.kubeconfig)

``api.requests`` records every request (method, path with query, Accept header)
so a test can assert how kubectl talked to it.
"""

from __future__ import annotations

import base64
import json
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import pytest

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-eks-trailscan",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

CORE_V1_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": False,
            "kind": "Namespace",
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": ["ns"],
        },
        {
            "name": "serviceaccounts",
            "singularName": "serviceaccount",
            "namespaced": True,
            "kind": "ServiceAccount",
            "verbs": _VERBS,
            "shortNames": ["sa"],
        },
    ],
}


def service_account(
    namespace: str,
    name: str,
    *,
    role_arn: str | None = None,
    audience: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A ServiceAccount object as the API server stores it (no kind in list items)."""
    notes = dict(annotations or {})
    if role_arn is not None:
        notes["eks.amazonaws.com/role-arn"] = role_arn
    if audience is not None:
        notes["eks.amazonaws.com/audience"] = audience
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"00000000-0000-4000-8000-{zlib.crc32(f'{namespace}/{name}'.encode()):012x}",
        "resourceVersion": "1",
        "creationTimestamp": "2025-01-01T00:00:00Z",
    }
    if notes:
        metadata["annotations"] = notes
    return {"metadata": metadata}


def write_kubeconfig(path: Path, servers: Mapping[str, str], current: str | None = None) -> Path:
    """Write a kubeconfig with one context (and cluster of that name) per ``servers`` entry.

    ``current`` is the ``current-context``; None leaves it unset, as on a machine
    where nobody ran ``kubectl config use-context``.
    """
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in servers.items()],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "tester"}} for name in servers],
    }
    if current is not None:
        config["current-context"] = current
    # JSON is YAML: kubectl reads it as is.
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    accept: str


class KubeAPI:
    """A loopback Kubernetes API server holding ``service_accounts``.

    ``context`` names the context (and cluster) of the kubeconfig written to
    ``kubeconfig``.  ``list_status`` makes every list of service accounts fail with
    that HTTP status (403 to play RBAC refusing ``list``); ``delay`` holds every
    answer back that many seconds (an API server that does not answer in time).
    """

    def __init__(
        self,
        service_accounts: Iterable[Mapping[str, Any]] = (),
        *,
        context: str = "test-cluster",
        page_size: int | None = None,
        list_status: int | None = None,
        delay: float = 0,
        directory: Path | None = None,
        issuer: str | None = None,
    ) -> None:
        self.service_accounts: list[Mapping[str, Any]] = list(service_accounts)
        self.context = context
        self.page_size = page_size
        self.list_status = list_status
        self.delay = delay
        self.issuer = issuer
        self.requests: list[Request] = []
        self._directory = directory
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.kubeconfig = Path()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "KubeAPI is not running"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> Self:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="kube-api", daemon=True
        )
        self._thread.start()
        if self._directory is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="kube-api-")
            self._directory = Path(self._tempdir.name)
        self.kubeconfig = write_kubeconfig(
            self._directory / f"kubeconfig-{self.context}", {self.context: self.url}, self.context
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what the handler serves -------------------------------------------------

    def list_page(self, namespace: str | None, limit: int | None, token: str | None) -> dict[str, Any]:
        """One page of a ServiceAccountList, with the API server's chunking rules."""
        matching = [
            sa
            for sa in self.service_accounts
            if namespace is None or sa.get("metadata", {}).get("namespace") == namespace
        ]
        start = _decode_continue(token) if token else 0
        size = len(matching)
        for cap in (limit, self.page_size):
            if cap:  # limit=0 means "no limit"
                size = min(size, cap)
        page = matching[start : start + size]
        end = start + len(page)
        metadata: dict[str, Any] = {"resourceVersion": "1"}
        if end < len(matching):
            metadata["continue"] = _encode_continue(end)
            metadata["remainingItemCount"] = len(matching) - end
        return {
            "kind": "ServiceAccountList",
            "apiVersion": "v1",
            "metadata": metadata,
            "items": [dict(sa) for sa in page],
        }

    def find(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        for sa in self.service_accounts:
            meta = sa.get("metadata", {})
            if meta.get("namespace") == namespace and meta.get("name") == name:
                return sa
        return None


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[KubeAPI]:
    """A running, empty :class:`KubeAPI`; fill ``kube_api.service_accounts`` in the test."""
    with KubeAPI(directory=tmp_path) as api:
        yield api


# -- wire details ------------------------------------------------------------------


class _BadContinueError(ValueError):
    pass


def _encode_continue(offset: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "offset": offset}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> int:
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _BadContinueError(token) from exc
    if not isinstance(offset, int) or offset < 0:
        raise _BadContinueError(token)
    return offset


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    500: "InternalError",
}


def _as_table(listing: dict[str, Any], include: str) -> dict[str, Any]:
    """The ``meta.k8s.io/v1 Table`` kubectl asks for when it prints columns."""
    rows = []
    for item in listing["items"]:
        meta = item.get("metadata", {})
        if include == "None":
            embedded = None
        elif include == "Object":
            embedded = {"kind": "ServiceAccount", "apiVersion": "v1", **item}
        else:  # "Metadata", the default
            embedded = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": meta,
            }
        rows.append(
            {"cells": [meta.get("name", ""), len(item.get("secrets") or []), "1d"], "object": embedded}
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": listing["metadata"],
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0},
            {"name": "Secrets", "type": "integer", "format": "", "description": "Secrets", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
        ],
        "rows": rows,
    }


def _handler_for(api: KubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kubectl keeps connections alive
        disable_nagle_algorithm = True  # else each small reply waits ~40 ms for an ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read api.requests instead

        def do_GET(self) -> None:
            accept = self.headers.get("Accept", "")
            api.requests.append(Request("GET", self.path, accept))
            if api.delay:
                time.sleep(api.delay)
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            parts = [part for part in url.path.split("/") if part]
            try:
                code, body = self._route(parts, query, accept)
            except _BadContinueError:
                code, body = (
                    410,
                    _status(410, "Expired", "The provided continue parameter is too old or invalid"),
                )
            self._send(code, body)

        def _route(self, parts: list[str], query: dict[str, str], accept: str) -> tuple[int, dict[str, Any]]:
            if parts == ["version"]:
                return 200, SERVER_VERSION
            if parts == [".well-known", "openid-configuration"]:
                if not api.issuer:
                    return 404, _status(404, "NotFound", "the server could not find the requested resource")
                return 200, {
                    "issuer": api.issuer,
                    "jwks_uri": f"{api.issuer}/keys",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            if parts == ["api"]:
                host = self.headers.get("Host", "")
                return 200, {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
                }
            if parts == ["apis"]:
                return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
            if parts == ["api", "v1"]:
                return 200, CORE_V1_RESOURCES
            if parts == ["api", "v1", "serviceaccounts"]:
                return self._list(None, query, accept)
            if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "serviceaccounts":
                return self._list(parts[3], query, accept)
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "serviceaccounts":
                found = api.find(parts[3], parts[5])
                if found is None:
                    return 404, _status(404, "NotFound", f'serviceaccounts "{parts[5]}" not found')
                return 200, {"kind": "ServiceAccount", "apiVersion": "v1", **found}
            return 404, _status(404, "NotFound", "the server could not find the requested resource")

        def _list(
            self, namespace: str | None, query: dict[str, str], accept: str
        ) -> tuple[int, dict[str, Any]]:
            if api.list_status is not None:
                code = api.list_status
                scope = "the cluster scope" if namespace is None else f'the namespace "{namespace}"'
                return code, _status(
                    code,
                    _REASONS.get(code, "Unknown"),
                    'serviceaccounts is forbidden: User "tester" cannot list resource '
                    f'"serviceaccounts" in API group "" at {scope}',
                )
            try:
                limit = int(query["limit"]) if "limit" in query else None
            except ValueError:
                return 400, _status(400, "BadRequest", f"invalid limit {query['limit']!r}")
            listing = api.list_page(namespace, limit, query.get("continue"))
            if "as=Table" in accept:
                return 200, _as_table(listing, query.get("includeObject", "Metadata"))
            return 200, listing

        def _send(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
