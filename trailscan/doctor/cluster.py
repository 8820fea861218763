"""What ``trailscan doctor pod`` reads from the cluster, through the user's own kubectl.

Every read is ``kubectl [--context C] get --raw PATH``: the API server's own JSON, with the
``managedFields`` kubectl's printers hide (they date the service account's annotation),
and no discovery round-trips.  The user's kubeconfig, credentials and exec plugins apply
unchanged (:func:`trailscan.kube._run_kubectl`).  The RBAC it needs is read-only:

=========================================  ===========================================
``get pods``, ``list pods``                the pod (or a deployment's pods); CoreDNS and
                                           the Pod Identity agent pods in ``kube-system``
``get serviceaccounts``                    the pod's service account
``get deployments`` (apps)                 ``deployment/NAME`` targets
``list daemonsets`` (apps, kube-system)    the Pod Identity agent
``list mutatingwebhookconfigurations``     the pod identity webhook
``get nodes``, ``get namespaces``          optional: the node's compute type, the
                                           webhook's namespaceSelector
``get /.well-known/openid-configuration``  the cluster's OIDC issuer
=========================================  ===========================================

``--probe`` adds ``create``/``delete pods`` and ``get pods/log`` in the pod's namespace.

A refusal or a failure is a :class:`KubeError` whose ``reason`` says which
(``not_found``, ``forbidden``, ``failed``), so a check can tell "absent" from "not allowed
to look".  The objects are read into small views (:class:`PodView`, :class:`ContainerView`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from trailscan.errors import InputError
from trailscan.kube import ROLE_ARN_ANNOTATION, _run_kubectl, fetch_issuer

__all__ = ["ContainerView", "Kube", "KubeError", "PodView", "annotation_changed_at", "label_selector", "parse_time",
           "selector_matches"]


class KubeError(Exception):
    """A kubectl read that failed: ``reason`` is ``not_found``, ``forbidden`` or ``failed``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Kube:
    """The user's kubectl, on *context* (None: the current context)."""

    context: str | None = None
    kubectl: str = "kubectl"
    timeout: float = 30
    program: str = field(init=False, default="")

    def __post_init__(self) -> None:
        found = shutil.which(self.kubectl)
        if found is None:
            raise InputError(f"{self.kubectl} not found on PATH", hint="trailscan doctor pod runs your own kubectl")
        self.program = found

    @property
    def source(self) -> str:
        return f"kubectl context {self.context}" if self.context else "kubectl current context"

    def _run(self, args: list[str]) -> str:
        full = ["--context", self.context, *args] if self.context else args
        try:
            return _run_kubectl(self.program, full, self.source, self.timeout)
        except InputError as error:
            text = error.message
            reason = ("not_found" if "(NotFound)" in text else
                      "forbidden" if "(Forbidden)" in text or "(Unauthorized)" in text else "failed")
            raise KubeError(reason, text.split("kubectl failed: ", 1)[-1]) from None

    def get(self, path: str) -> dict[str, Any]:
        """The API object (or list) at *path*."""
        text = self._run(["get", "--raw", path])
        try:
            found = json.loads(text)
        except ValueError:
            raise KubeError("failed", f"{path}: the API server's answer is not JSON") from None
        if not isinstance(found, dict):
            raise KubeError("failed", f"{path}: the API server's answer is not an object")
        return found

    def text(self, path: str) -> str:
        """The raw text at *path* (a pod's log)."""
        return self._run(["get", "--raw", path])

    def create(self, path: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """POST *manifest* to *path* (``kubectl create --raw``); the created object."""
        handle, name = tempfile.mkstemp(prefix="trailscan-doctor-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(manifest, out)
            text = self._run(["create", "--raw", path, "-f", name])
        finally:
            os.unlink(name)
        try:
            return json.loads(text)
        except ValueError:
            return {}

    def delete(self, path: str) -> None:
        self._run(["delete", "--raw", path])

    def issuer(self) -> str | None:
        return fetch_issuer(self.context, kubectl=self.program, timeout=self.timeout)


# -- views ------------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An API server timestamp (``2025-01-01T00:00:00Z``) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ContainerView:
    """A container as the credential wiring sees it: its literal env, mounts and user."""

    name: str
    init: bool
    env: Mapping[str, str]
    env_from_refs: tuple[str, ...]
    mounts: tuple[Mapping[str, Any], ...]
    run_as_user: int | None
    run_as_group: int | None

    def mount_of(self, path: str) -> Mapping[str, Any] | None:
        """The volume mount that holds *path* (the deepest), if any."""
        best = None
        for mount in self.mounts:
            root = str(mount.get("mountPath", "")).rstrip("/")
            if root and (path == root or path.startswith(root + "/")):
                if best is None or len(root) > len(str(best.get("mountPath", "")).rstrip("/")):
                    best = mount
        return best


@dataclass(frozen=True)
class PodView:
    """The facts of a pod the doctor reasons over."""

    namespace: str
    name: str
    node: str | None
    created: datetime | None
    service_account: str
    automount: bool | None
    host_network: bool
    dns_policy: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    phase: str
    containers: tuple[ContainerView, ...]
    volumes: tuple[Mapping[str, Any], ...]
    fs_group: int | None
    supplemental_groups: tuple[int, ...]
    owner: tuple[str, str] | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        security = spec.get("securityContext") or {}
        containers = tuple(
            _container(c, init, security)
            for init, key in ((True, "initContainers"), (False, "containers"))
            for c in spec.get(key) or [] if isinstance(c, Mapping)
        )
        owners = [o for o in meta.get("ownerReferences") or [] if isinstance(o, Mapping)]
        owner = next(((str(o.get("kind")), str(o.get("name"))) for o in owners if o.get("controller")), None)
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or ""),
            node=spec.get("nodeName") or None,
            created=parse_time(meta.get("creationTimestamp")),
            service_account=str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"),
            automount=spec.get("automountServiceAccountToken"),
            host_network=bool(spec.get("hostNetwork")),
            dns_policy=str(spec.get("dnsPolicy") or "ClusterFirst"),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            phase=str((pod.get("status") or {}).get("phase") or "Unknown"),
            containers=containers,
            volumes=tuple(v for v in spec.get("volumes") or [] if isinstance(v, Mapping)),
            fs_group=_int(security.get("fsGroup")),
            supplemental_groups=tuple(g for g in (_int(x) for x in security.get("supplementalGroups") or [])
                                      if g is not None),
            owner=owner,
            raw=pod,
        )

    def volume(self, name: str) -> Mapping[str, Any] | None:
        return next((v for v in self.volumes if v.get("name") == name), None)

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"

    def restart_command(self) -> str:
        """How to recreate the pod so the webhook mutates it again."""
        from trailscan.explain.text import sh

        if self.owner and self.owner[0] == "ReplicaSet":
            template_hash = self.labels.get("pod-template-hash")
            name = self.owner[1]
            if template_hash and name.endswith("-" + template_hash):
                return f"kubectl rollout restart deployment/{sh(name[: -len(template_hash) - 1])} -n {sh(self.namespace)}"
        if self.owner and self.owner[0] in ("StatefulSet", "DaemonSet"):
            return f"kubectl rollout restart {self.owner[0].lower()}/{sh(self.owner[1])} -n {sh(self.namespace)}"
        return f"kubectl delete pod {sh(self.name)} -n {sh(self.namespace)}   # recreated by its controller, if any"


def _container(data: Mapping[str, Any], init: bool, pod_security: Mapping[str, Any]) -> ContainerView:
    env: dict[str, str] = {}
    refs: list[str] = []
    for item in data.get("env") or []:
        if not isinstance(item, Mapping) or not item.get("name"):
            continue
        if "valueFrom" in item:
            refs.append(str(item["name"]))
        else:
            env[str(item["name"])] = str(item.get("value") or "")
    security = data.get("securityContext") or {}
    return ContainerView(
        name=str(data.get("name") or ""),
        init=init,
        env=env,
        env_from_refs=tuple(refs),
        mounts=tuple(m for m in data.get("volumeMounts") or [] if isinstance(m, Mapping)),
        run_as_user=_int(security.get("runAsUser", pod_security.get("runAsUser"))),
        run_as_group=_int(security.get("runAsGroup", pod_security.get("runAsGroup"))),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def annotation_changed_at(service_account: Mapping[str, Any], key: str = ROLE_ARN_ANNOTATION,
                          ) -> tuple[datetime | None, str | None]:
    """When *key* was last set on *service_account*, and by which field manager.

    Server-side field management records, per manager, the fields it owns and when it
    last changed any of them (``metadata.managedFields[].time``).  The latest entry owning
    ``f:metadata.f:annotations.f:KEY`` dates the annotation's last change (at most that
    late: the same manager may have changed another field since).  ``(None, None)`` when
    no entry owns it (a server without managed fields, or the annotation is gone)."""
    latest: tuple[datetime | None, str | None] = (None, None)
    for entry in (service_account.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(entry, Mapping):
            continue
        fields = entry.get("fieldsV1") or {}
        annotations = ((fields.get("f:metadata") or {}).get("f:annotations") or {}) if isinstance(fields, Mapping) else {}
        if f"f:{key}" not in annotations:
            continue
        moment = parse_time(entry.get("time"))
        if moment is not None and (latest[0] is None or moment > latest[0]):
            latest = (moment, str(entry.get("manager") or "?"))
    return latest


def label_selector(selector: Mapping[str, Any]) -> str:
    """A ``LabelSelector`` (matchLabels, matchExpressions) as the ``labelSelector`` query string."""
    parts = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether *labels* satisfy a ``LabelSelector`` (None or ``{}`` selects everything)."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = set(expression.get("values") or [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def query(path: str, **params: str) -> str:
    """*path* with URL-encoded query parameters (empty ones left out)."""
    pairs = [f"{key}={quote(value, safe='')}" for key, value in params.items() if value]
    return path + ("?" + "&".join(pairs) if pairs else "")
