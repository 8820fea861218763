"""``trailscan doctor pod … --probe``: the in-pod doctor, run in a pod like the target.

Some answers exist only inside a pod: what the webhook injects into a pod created now, what
its resolver answers, whether the node's metadata service and the Pod Identity agent reach
a container.  The probe is a short-lived pod with the target's service account, namespace,
node, network and user (``hostNetwork``, ``dnsPolicy``, ``securityContext``, tolerations),
and the target container's non-credential variables (region, STS endpoints setting, proxies)
— never its credential variables, so the webhook injects them as it would for a restarted
pod.  It runs ``trailscan doctor --format json`` from the trailscan image (``--image``); the
document is read from its log and its checks come back as ``probe.<id>``; the pod is deleted
whatever happened.  ``--dry-run`` prints the manifest instead.

It needs ``create`` and ``delete`` on pods and ``get`` on ``pods/log`` in the namespace; the
image must have ``trailscan`` on ``PATH``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from trailscan.doctor.cluster import Kube, KubeError, PodView
from trailscan.doctor.model import OK, SCHEMA, SKIPPED, Check
from trailscan.kube import AUDIENCE_ANNOTATION

__all__ = ["PROBE_LABELS", "probe_checks", "probe_manifest"]

PROBE_LABELS = {"app.kubernetes.io/name": "trailscan-doctor", "app.kubernetes.io/component": "probe"}
_CONTAINER = "doctor"
#: Variables of the target container the probe keeps: where and how it calls AWS, not who it is.
_CARRIED = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_USE_FIPS_ENDPOINT",
            "AWS_USE_DUALSTACK_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
            "no_proxy")
_CARRIED_PREFIX = "AWS_ENDPOINT_URL"
#: Waiting reasons after which a container will not start on its own.
_STUCK = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
          "CreateContainerError", "RunContainerError")


def probe_manifest(pod: PodView, service_account: Mapping[str, Any] | None, options: Any) -> dict[str, Any]:
    """The probe pod for *pod*: same service account, namespace, node, network and user."""
    spec = pod.raw.get("spec") or {}
    target = next((c for c in spec.get("containers") or [] if isinstance(c, Mapping)), {})
    env = [{"name": str(item["name"]), "value": str(item.get("value") or "")}
           for item in target.get("env") or []
           if isinstance(item, Mapping) and "valueFrom" not in item
           and (item.get("name") in _CARRIED or str(item.get("name", "")).startswith(_CARRIED_PREFIX))]
    annotations = ((service_account or {}).get("metadata") or {}).get("annotations") or {}
    args = ["doctor", "--format", "json", "--timeout", f"{options.timeout:g}", "--offline",
            "--service-account", f"{pod.namespace}/{pod.service_account}"]
    if annotations.get(AUDIENCE_ANNOTATION):
        args += ["--audience", str(annotations[AUDIENCE_ANNOTATION])]
    for url in options.endpoints:
        args += ["--endpoint", url]
    for service in options.services:
        args += ["--service", service]
    security = {key: value for key, value in (target.get("securityContext") or {}).items()
                if key in ("runAsUser", "runAsGroup", "runAsNonRoot")}
    security.update({"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                     "capabilities": {"drop": ["ALL"]}})
    labels = dict(PROBE_LABELS)
    if "eks.amazonaws.com/skip-pod-identity-webhook" in pod.labels:  # the webhook would leave it out too
        labels["eks.amazonaws.com/skip-pod-identity-webhook"] = pod.labels["eks.amazonaws.com/skip-pod-identity-webhook"]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": pod.service_account,
        "restartPolicy": "Never",
        "activeDeadlineSeconds": int(options.probe_timeout),
        "hostNetwork": pod.host_network,
        "dnsPolicy": pod.dns_policy,
        "containers": [{
            "name": _CONTAINER,
            "image": options.image,
            "command": ["trailscan"],
            "args": args,
            "env": env,
            "securityContext": security,
            "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "384Mi"}},
        }],
    }
    for key in ("securityContext", "tolerations", "automountServiceAccountToken", "dnsConfig"):
        if spec.get(key) is not None:
            pod_spec[key] = spec[key]
    if pod.node:
        pod_spec["nodeName"] = pod.node  # the same node: its agent, its metadata service, its network
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"trailscan-doctor-{secrets.token_hex(3)}", "namespace": pod.namespace,
                     "labels": labels},
        "spec": pod_spec,
    }


def probe_checks(kube: Kube, pod: PodView, service_account: Mapping[str, Any] | None, options: Any) -> list[Check]:
    """Create the probe, wait for it, read its document, delete it: ``probe.run`` and the
    probe's own checks as ``probe.<id>``."""
    manifest = probe_manifest(pod, service_account, options)
    name = manifest["metadata"]["name"]
    base = f"/api/v1/namespaces/{pod.namespace}/pods"
    try:
        kube.create(base, manifest)
    except KubeError as error:
        return [Check("probe.run", SKIPPED, None, f"The probe pod could not be created: {error.message}.",
                      incomplete=True)]
    outcome: str | None = None
    logs = ""
    try:
        deadline = time.monotonic() + options.probe_timeout
        while True:
            status = (kube.get(f"{base}/{name}").get("status") or {})
            phase = status.get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            stuck = _stuck(status)
            if stuck:
                outcome = f"its container does not start ({stuck})"
                break
            if time.monotonic() > deadline:
                outcome = f"it did not finish within {options.probe_timeout:g} s (phase {phase or 'unknown'})"
                break
            time.sleep(1)
        if outcome is None:
            logs = kube.text(f"{base}/{name}/log?container={_CONTAINER}")
    except KubeError as error:
        outcome = f"it could not be followed: {error.message}"
    finally:
        deleted = _delete(kube, f"{base}/{name}")
    where = f"pod {pod.namespace}/{name} on node {pod.node or '(scheduled)'} as {pod.namespace}/{pod.service_account}"
    if outcome is not None:
        return [Check("probe.run", SKIPPED, None, f"The probe {where} ran no doctor: {outcome}; {deleted}.",
                      incomplete=True)]
    try:
        checks, unknown = _document_checks(logs)
    except ValueError as error:
        return [Check("probe.run", SKIPPED, None, f"The probe {where} printed no doctor document ({error}); "
                      f"{deleted}. Its log began: {logs[:200]!r}.", incomplete=True)]
    note = f" Checks this trailscan does not know were left out: {', '.join(unknown)}." if unknown else ""
    return [Check("probe.run", OK, None, f"The probe {where} ran `trailscan doctor` (image {options.image}); "
                  f"{deleted}.{note}"), *checks]


def _stuck(status: Mapping[str, Any]) -> str | None:
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            return f"{waiting['reason']}: {waiting.get('message') or ''}".rstrip(": ")
    return None


def _delete(kube: Kube, path: str) -> str:
    try:
        kube.delete(path)
    except KubeError as error:
        if error.reason == "not_found":
            return "it is gone"
        return f"it could NOT be deleted ({error.message}): delete it by hand"
    return "it was deleted"


def _document_checks(logs: str) -> tuple[list[Check], list[str]]:
    """The checks of the doctor document in *logs*, and the ids of those this version does
    not know (a probe image newer than this trailscan)."""
    start = logs.find("{")
    if start < 0:
        raise ValueError("no JSON in its log")
    document, _ = json.JSONDecoder().raw_decode(logs[start:])
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} document")
    checks, unknown = [], []
    for item in document.get("checks") or []:
        if not isinstance(item, Mapping):
            continue
        try:
            checks.append(Check.from_json(item, prefix="probe."))
        except (KeyError, ValueError):
            unknown.append(str(item.get("id")))
    return checks, unknown
