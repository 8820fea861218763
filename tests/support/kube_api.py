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
  that kubectl asks for when it prints columns rather than ``-o json``;
* for ``trailscan doctor pod`` (``kubectl get --raw``, ``create --raw``, ``delete --raw``):
  pods (get, list with ``labelSelector`` and ``fieldSelector``, create, delete, ``/log``),
  nodes, namespaces, deployments and DaemonSets (``apps/v1``) and
  MutatingWebhookConfigurations (``admissionregistration.k8s.io/v1``), each object as the
  API server stores it, ``metadata.managedFields`` included.  ``forbidden`` names resources
  RBAC refuses; ``on_create_pod`` plays the kubelet for a created pod (its status and log).

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
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    managed_fields: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ServiceAccount object as the API server stores it (no kind in list items);
    *managed_fields* (see :func:`managed_field`) date its annotations."""
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
    if managed_fields:
        metadata["managedFields"] = list(managed_fields)
    return {"metadata": metadata}


def managed_field(manager: str, time_: str, *annotations: str, operation: str = "Update") -> dict[str, Any]:
    """A ``metadata.managedFields`` entry: *manager* last changed these annotations at *time_*."""
    fields = {"f:metadata": {"f:annotations": {".": {}, **{f"f:{key}": {} for key in annotations}}}}
    return {"manager": manager, "operation": operation, "apiVersion": "v1", "time": time_, "fieldsType": "FieldsV1",
            "fieldsV1": fields}


def pod(
    namespace: str,
    name: str,
    *,
    service_account: str = "default",
    node: str = "ip-10-0-1-23.eu-west-1.compute.internal",
    created: str = "2025-06-01T10:00:00Z",
    containers: list[dict[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    phase: str = "Running",
    ready: bool = True,
    owner: tuple[str, str] | None = None,
    security_context: Mapping[str, Any] | None = None,
    host_network: bool = False,
    restarts: int = 0,
    conditions_message: str | None = None,
) -> dict[str, Any]:
    """A pod as the API server stores it (what ``kubectl get --raw`` returns)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"00000000-0000-4000-9000-{zlib.crc32(f'{namespace}/{name}'.encode()):012x}",
        "creationTimestamp": created,
        "labels": dict(labels or {}),
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "controller": True,
                                    "uid": "00000000-0000-4000-9000-000000000001"}]
    containers = containers or [{"name": "app", "image": "registry.example/app:1"}]
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   **({"message": conditions_message} if conditions_message and not ready else {})}]
    if phase == "Pending" and conditions_message:
        conditions = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                       "message": conditions_message}]
    spec: dict[str, Any] = {"serviceAccountName": service_account, "containers": containers,
                            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"}
    if phase != "Pending" or not conditions_message:
        spec["nodeName"] = node
    if security_context:
        spec["securityContext"] = dict(security_context)
    if host_network:
        spec["hostNetwork"] = True
    return {
        "metadata": meta,
        "spec": spec,
        "status": {"phase": phase, "conditions": conditions,
                   "containerStatuses": [{"name": c["name"], "ready": ready, "restartCount": restarts,
                                          "state": {"running": {}} if phase == "Running" else {"waiting": {}}}
                                         for c in containers]},
    }


def inject_irsa(pod_: dict[str, Any], role_arn: str, *, audience: str = "sts.amazonaws.com",
                expiration: int = 86400, regional: bool = True, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """What amazon-eks-pod-identity-webhook does to a pod whose service account is annotated
    with *role_arn*: the variables, the projected ``aws-iam-token`` volume and its mount."""
    mount = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
    env = [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}] if regional else []
    env += [{"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"}, {"name": "AWS_REGION", "value": "eu-west-1"},
            {"name": "AWS_ROLE_ARN", "value": role_arn},
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{mount}/token"}]
    return _inject(pod_, env, "aws-iam-token", mount, "token", audience, expiration, skip)


def inject_pod_identity(pod_: dict[str, Any], *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the webhook does for a service account with an EKS Pod Identity association."""
    mount = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
    env = [{"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"}, {"name": "AWS_REGION", "value": "eu-west-1"},
           {"name": "AWS_CONTAINER_CREDENTIALS_FULL_URI", "value": "http://169.254.170.23/v1/credentials"},
           {"name": "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "value": f"{mount}/eks-pod-identity-token"}]
    pod_["metadata"].setdefault("labels", {})["eks.amazonaws.com/pod-identity"] = "enabled"
    return _inject(pod_, env, "eks-pod-identity-token", mount, "eks-pod-identity-token", "pods.eks.amazonaws.com",
                   86400, skip)


def _inject(pod_: dict[str, Any], env: list[dict[str, str]], volume: str, mount: str, path: str, audience: str,
            expiration: int, skip: tuple[str, ...]) -> dict[str, Any]:
    spec = pod_["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        if container["name"] in skip:
            continue
        container["env"] = [*container.get("env", []), *env]
        container["volumeMounts"] = [*container.get("volumeMounts", []),
                                     {"name": volume, "mountPath": mount, "readOnly": True}]
    spec["volumes"] = [{"name": volume, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"audience": audience, "expirationSeconds": expiration, "path": path}}]}},
        *spec.get("volumes", [])]
    return pod_


def daemonset(namespace: str, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "spec": {"selector": {"matchLabels": dict(labels)}}}


def webhook_configuration(name: str = "pod-identity-webhook", hook: str = "iam-for-pods.amazonaws.com", *,
                          object_selector: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The MutatingWebhookConfiguration EKS's control plane serves the pod identity webhook with."""
    selector = object_selector if object_selector is not None else {"matchExpressions": [
        {"key": "eks.amazonaws.com/skip-pod-identity-webhook", "operator": "DoesNotExist", "values": []}]}
    return {"metadata": {"name": name}, "webhooks": [{
        "name": hook, "failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1beta1"],
        "clientConfig": {"url": "https://127.0.0.1:23443/mutate"}, "objectSelector": selector,
        "namespaceSelector": {}, "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                            "resources": ["pods"], "scope": "*"}]}]}


def node(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}}


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
        pods: Iterable[dict[str, Any]] = (),
        deployments: Iterable[dict[str, Any]] = (),
        daemonsets: Iterable[dict[str, Any]] = (),
        webhooks: Iterable[dict[str, Any]] = (),
        nodes: Iterable[dict[str, Any]] = (),
        namespaces: Iterable[dict[str, Any]] = (),
        forbidden: Iterable[str] = (),
        on_create_pod: Callable[[dict[str, Any]], tuple[dict[str, Any], str]] | None = None,
    ) -> None:
        self.service_accounts: list[Mapping[str, Any]] = list(service_accounts)
        self.pods: list[dict[str, Any]] = list(pods)
        self.deployments: list[dict[str, Any]] = list(deployments)
        self.daemonsets: list[dict[str, Any]] = list(daemonsets)
        self.webhooks: list[dict[str, Any]] = list(webhooks)
        self.nodes: list[dict[str, Any]] = list(nodes)
        self.namespaces: list[dict[str, Any]] = list(namespaces)
        self.forbidden: set[str] = set(forbidden)
        self.on_create_pod = on_create_pod
        self.logs: dict[tuple[str, str], str] = {}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
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


    def named(self, objects: list[dict[str, Any]], namespace: str | None, name: str) -> dict[str, Any] | None:
        for obj in objects:
            meta = obj.get("metadata", {})
            if meta.get("name") == name and (namespace is None or meta.get("namespace") == namespace):
                return obj
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


def _selected(obj: Mapping[str, Any], labels: str | None, fields: str | None) -> bool:
    """Whether *obj* matches a ``labelSelector`` (``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``,
    ``k notin (a,b)``) and a ``fieldSelector`` (``spec.nodeName=N``, ``metadata.name=N``,
    ``status.phase=P``)."""
    have = obj.get("metadata", {}).get("labels") or {}
    for term in _terms(labels or ""):
        if " notin " in term:
            key, _, values = term.partition(" notin ")
            if have.get(key.strip()) in {v.strip() for v in values.strip("() ").split(",")}:
                return False
        elif " in " in term:
            key, _, values = term.partition(" in ")
            if have.get(key.strip()) not in {v.strip() for v in values.strip("() ").split(",")}:
                return False
        elif "!=" in term:
            key, _, value = term.partition("!=")
            if have.get(key) == value:
                return False
        elif "=" in term:
            key, _, value = term.partition("=")
            if have.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in have:
                return False
        elif term not in have:
            return False
    for term in _terms(fields or ""):
        path, _, value = term.partition("=")
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
        if (current or "") != value:
            return False
    return True


def _terms(selector: str) -> list[str]:
    """Split a selector on the commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


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
            if len(parts) == 7 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods" and parts[6] == "log":
                if (parts[3], parts[5]) not in api.logs:
                    self._send(404, _status(404, "NotFound", f'pods "{parts[5]}" not found'))
                else:
                    self._send_text(api.logs[(parts[3], parts[5])])
                return
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
                if "serviceaccounts" in api.forbidden:
                    return self._forbidden("get", "serviceaccounts", "", parts[3])
                found = api.find(parts[3], parts[5])
                if found is None:
                    return 404, _status(404, "NotFound", f'serviceaccounts "{parts[5]}" not found')
                return 200, {"kind": "ServiceAccount", "apiVersion": "v1", **found}
            return self._route_objects(parts, query)

        def _route_objects(self, parts: list[str], query: dict[str, str]) -> tuple[int, dict[str, Any]]:
            """Pods, nodes, namespaces, deployments, DaemonSets, webhook configurations."""
            core = parts[:2] == ["api", "v1"]
            apps = parts[:3] == ["apis", "apps", "v1"]
            admission = parts[:3] == ["apis", "admissionregistration.k8s.io", "v1"]
            if core and parts[2:3] == ["namespaces"] and len(parts) >= 5 and parts[4] == "pods":
                namespace = parts[3]
                if len(parts) == 5:
                    return self._collection("pods", "", "v1", "Pod", api.pods, namespace, query)
                return self._one("pods", "", "v1", "Pod", api.pods, namespace, parts[5])
            if core and parts[2:] == ["pods"]:
                return self._collection("pods", "", "v1", "Pod", api.pods, None, query)
            if core and len(parts) == 4 and parts[2] == "nodes":
                return self._one("nodes", "", "v1", "Node", api.nodes, None, parts[3])
            if core and len(parts) == 4 and parts[2] == "namespaces":
                return self._one("namespaces", "", "v1", "Namespace", api.namespaces, None, parts[3])
            if apps and len(parts) >= 6 and parts[3] == "namespaces" and parts[5] in ("deployments", "daemonsets"):
                objects = api.deployments if parts[5] == "deployments" else api.daemonsets
                kind = "Deployment" if parts[5] == "deployments" else "DaemonSet"
                if len(parts) == 6:
                    return self._collection(parts[5], "apps", "apps/v1", kind, objects, parts[4], query)
                return self._one(parts[5], "apps", "apps/v1", kind, objects, parts[4], parts[6])
            if admission and parts[3:4] == ["mutatingwebhookconfigurations"]:
                group, version = "admissionregistration.k8s.io", "admissionregistration.k8s.io/v1"
                if len(parts) == 4:
                    return self._collection(parts[3], group, version, "MutatingWebhookConfiguration", api.webhooks,
                                            None, query)
                return self._one(parts[3], group, version, "MutatingWebhookConfiguration", api.webhooks, None, parts[4])
            return 404, _status(404, "NotFound", "the server could not find the requested resource")

        def _forbidden(self, verb: str, resource: str, group: str, namespace: str | None) -> tuple[int, dict[str, Any]]:
            scope = "the cluster scope" if namespace is None else f'the namespace "{namespace}"'
            return 403, _status(403, "Forbidden", f'{resource} is forbidden: User "tester" cannot {verb} resource '
                                                  f'"{resource}" in API group "{group}" at {scope}')

        def _collection(self, resource: str, group: str, version: str, kind: str, objects: list[dict[str, Any]],
                        namespace: str | None, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
            if resource in api.forbidden:
                return self._forbidden("list", resource, group, namespace)
            items = [dict(obj) for obj in objects
                     if (namespace is None or obj.get("metadata", {}).get("namespace") == namespace)
                     and _selected(obj, query.get("labelSelector"), query.get("fieldSelector"))]
            return 200, {"kind": f"{kind}List", "apiVersion": version, "metadata": {"resourceVersion": "1"},
                         "items": items}

        def _one(self, resource: str, group: str, version: str, kind: str, objects: list[dict[str, Any]],
                 namespace: str | None, name: str) -> tuple[int, dict[str, Any]]:
            if resource in api.forbidden:
                return self._forbidden("get", resource, group, namespace)
            found = api.named(objects, namespace, name)
            if found is None:
                return 404, _status(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found')
            return 200, {"kind": kind, "apiVersion": version, **found}

        def _body(self) -> bytes:
            """The request body, sent with a length or chunked (as kubectl create --raw sends a file)."""
            if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()

        def do_POST(self) -> None:
            body = self._body()
            api.requests.append(Request("POST", self.path, self.headers.get("Accept", "")))
            parts = [part for part in urlsplit(self.path).path.split("/") if part]
            if not (len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods"):
                self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return
            if "pods.create" in api.forbidden:
                self._send(*self._forbidden("create", "pods", "", parts[3]))
                return
            try:
                manifest = json.loads(body)
            except ValueError:
                self._send(400, _status(400, "BadRequest", "the body is not JSON"))
                return
            meta = manifest.setdefault("metadata", {})
            meta["namespace"] = parts[3]
            meta.setdefault("name", meta.get("generateName", "pod-") + f"{len(api.created):05d}")
            meta["uid"] = f"00000000-0000-4000-a000-{len(api.created):012d}"
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            status, log = api.on_create_pod(manifest) if api.on_create_pod else ({"phase": "Pending"}, "")
            manifest["status"] = status
            api.logs[(parts[3], meta["name"])] = log
            api.pods.append(manifest)
            api.created.append(manifest)
            self._send(201, {"kind": "Pod", "apiVersion": "v1", **manifest})

        def do_DELETE(self) -> None:
            api.requests.append(Request("DELETE", self.path, self.headers.get("Accept", "")))
            parts = [part for part in urlsplit(self.path).path.split("/") if part]
            if not (len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods"):
                self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return
            found = api.named(api.pods, parts[3], parts[5])
            if found is None:
                self._send(404, _status(404, "NotFound", f'pods "{parts[5]}" not found'))
                return
            api.pods.remove(found)
            api.deleted.append(f"{parts[3]}/{parts[5]}")
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                             "details": {"name": parts[5], "kind": "pods"}})

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

        def _send_text(self, text: str) -> None:
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send(self, code: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
