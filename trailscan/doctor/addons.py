"""What the cluster runs for the pod: the webhook, the Pod Identity agent, CoreDNS.

- **The pod identity webhook**: a ``MutatingWebhookConfiguration`` (on EKS named
  ``pod-identity-webhook``, served by the control plane) matching ``CREATE`` of pods, with
  an ``objectSelector`` that leaves out pods labelled
  ``eks.amazonaws.com/skip-pod-identity-webhook``, and ``failurePolicy: Ignore`` — a pod
  created while it did not answer is created unmutated, silently.
- **The EKS Pod Identity agent**: the ``eks-pod-identity-agent`` DaemonSet in
  ``kube-system`` (host network; it answers at ``169.254.170.23`` and ``[fd00:ec2::23]``
  port 80 on each node, readiness on ``/readyz``).  Its node affinity leaves out Fargate,
  hybrid and EKS Auto Mode nodes (``eks.amazonaws.com/compute-type``); Auto Mode nodes run
  the agent themselves, Fargate has no Pod Identity.
- **CoreDNS**: the ``k8s-app=kube-dns`` pods in ``kube-system``, which need nodes with the
  capacity to run them (a Pending pod's scheduler message says why not).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trailscan.doctor.cluster import PodView, selector_matches
from trailscan.doctor.model import FAIL, OK, SKIPPED, WARN, Check
from trailscan.explain.fixes import fix
from trailscan.explain.text import sh

__all__ = ["AGENT", "COREDNS_SELECTOR", "SKIP_LABEL", "check_agent", "check_association", "check_coredns",
           "check_webhook", "is_agent_daemonset", "pod_identity_webhooks"]

SKIP_LABEL = "eks.amazonaws.com/skip-pod-identity-webhook"
AGENT = "eks-pod-identity-agent"
COREDNS_SELECTOR = "k8s-app=kube-dns"
_WEBHOOK_CONFIG = "pod-identity-webhook"
_WEBHOOK_NAMES = ("iam-for-pods.amazonaws.com", "pod-identity-webhook.amazonaws.com")


# -- cluster.webhook ----------------------------------------------------------------------------------


def pod_identity_webhooks(configurations: list[Mapping[str, Any]]) -> list[tuple[str, Mapping[str, Any]]]:
    """(configuration name, webhook) for every webhook that is the pod identity webhook: by
    the configuration's name, the webhook's name, or the service it calls."""
    found = []
    for configuration in configurations:
        name = str((configuration.get("metadata") or {}).get("name") or "")
        for hook in configuration.get("webhooks") or []:
            service = ((hook.get("clientConfig") or {}).get("service") or {}).get("name")
            if name == _WEBHOOK_CONFIG or hook.get("name") in _WEBHOOK_NAMES or service == _WEBHOOK_CONFIG:
                found.append((name, hook))
    return found


def _covers_pod_create(hook: Mapping[str, Any]) -> bool:
    for rule in hook.get("rules") or []:
        operations = rule.get("operations") or []
        resources = rule.get("resources") or []
        groups = rule.get("apiGroups") or []
        if ({"CREATE", "*"} & set(operations)) and ({"pods", "*"} & set(resources)) and ({"", "*"} & set(groups)):
            return True
    return False


def check_webhook(pod: PodView, configurations: list[Mapping[str, Any]] | None, unread: str | None,
                  namespace_labels: Mapping[str, str] | None, needed: bool, injected: bool) -> Check:
    """``cluster.webhook``: a pod identity webhook that mutates this pod's creation."""
    if configurations is None:
        return Check("cluster.webhook", SKIPPED, None,
                     f"MutatingWebhookConfigurations could not be listed: {unread}.", incomplete=True)
    hooks = pod_identity_webhooks(configurations)
    status_if_needed = FAIL if needed and not injected else WARN
    if not hooks:
        names = ", ".join(str((c.get("metadata") or {}).get("name")) for c in configurations) or "none"
        return Check("cluster.webhook", status_if_needed, "WEBHOOK_MISSING",
                     f"No pod identity webhook among the cluster's MutatingWebhookConfigurations ({names}): new pods "
                     "get no IRSA or Pod Identity variables." + (" This pod was mutated when it was created, by a "
                                                                 "webhook since removed." if injected else ""),
                     fix("On EKS the control plane serves the webhook: check that the configuration was not deleted "
                         "(it is recreated by EKS); on other clusters install amazon-eks-pod-identity-webhook.",
                         "kubectl get mutatingwebhookconfiguration pod-identity-webhook -o yaml"))
    reasons = []
    for config_name, hook in hooks:
        if not _covers_pod_create(hook):
            reasons.append(f"{config_name}/{hook.get('name')} does not match CREATE of pods")
        elif not selector_matches(hook.get("objectSelector"), pod.labels):
            label = f" (the pod is labelled {SKIP_LABEL})" if SKIP_LABEL in pod.labels else ""
            reasons.append(f"{config_name}/{hook.get('name')}'s objectSelector leaves this pod out{label}")
        elif namespace_labels is not None and not selector_matches(hook.get("namespaceSelector"), namespace_labels):
            reasons.append(f"{config_name}/{hook.get('name')}'s namespaceSelector leaves namespace {pod.namespace} out")
        else:
            policy = hook.get("failurePolicy") or "Fail"
            note = (" With failurePolicy Ignore, a pod created while the webhook did not answer is created "
                    "unmutated, without a word." if policy == "Ignore" and needed and not injected else "")
            return Check("cluster.webhook", OK, None,
                         f"{config_name}/{hook.get('name')} mutates pods on CREATE (failurePolicy {policy}).{note}")
    return Check("cluster.webhook", status_if_needed, "WEBHOOK_MISSING",
                 "The pod identity webhook does not apply to this pod: " + "; ".join(reasons) + ".",
                 fix(f"Remove the {SKIP_LABEL} label (or the selector that excludes the pod) from the pod template, "
                     "then recreate the pod.", pod.restart_command()))


# -- eks.pod_identity_association ------------------------------------------------------------------------


def check_association(pod: PodView, association: Any, read: bool, unread: str | None, uses_pod_identity: bool,
                      cluster: str | None) -> Check:
    """``eks.pod_identity_association``: the service account's association (with ``--cluster``)."""
    who = f"{pod.namespace}/{pod.service_account}"
    if unread:
        return Check("eks.pod_identity_association", SKIPPED, None,
                     f"The Pod Identity associations of {cluster} could not be read: {unread}.", incomplete=True)
    if not read:
        return Check("eks.pod_identity_association", SKIPPED, None,
                     "Pod Identity associations not read (pass --cluster NAME, with AWS credentials).")
    if association is not None:
        target = f" (then {association.target_role_arn})" if association.target_role_arn else ""
        return Check("eks.pod_identity_association", OK, None,
                     f"{cluster}: {who} → {association.role_arn}{target} ({association.association_id}).")
    if uses_pod_identity:
        return Check("eks.pod_identity_association", WARN, None,
                     f"The pod carries Pod Identity variables, but {cluster} has no association for {who} any more: "
                     "the agent will refuse its requests.",
                     fix("Recreate the association, or recreate the pod without Pod Identity.",
                         f"aws eks create-pod-identity-association --cluster-name {sh(cluster or 'CLUSTER')} "
                         f"--namespace {sh(pod.namespace)} --service-account {sh(pod.service_account)} "
                         "--role-arn ROLE_ARN"))
    return Check("eks.pod_identity_association", OK, None, f"{cluster} has no Pod Identity association for {who}.")


# -- node.pod_identity_agent --------------------------------------------------------------------------------


def is_agent_daemonset(daemonset: Mapping[str, Any]) -> bool:
    meta = daemonset.get("metadata") or {}
    labels = meta.get("labels") or {}
    return str(meta.get("name", "")).startswith(AGENT) or labels.get("app.kubernetes.io/name") == AGENT


def check_agent(pod: PodView, uses_pod_identity: bool, daemonsets: list[Mapping[str, Any]] | None,
                agent_pods: list[Mapping[str, Any]] | None, node_labels: Mapping[str, str] | None,
                unread: str | None) -> Check:
    """``node.pod_identity_agent``: the agent pod on the pod's node is running and ready."""
    if not uses_pod_identity:
        return Check("node.pod_identity_agent", SKIPPED, None, "The pod does not use EKS Pod Identity.")
    if unread:
        return Check("node.pod_identity_agent", SKIPPED, None, f"The agent could not be looked for: {unread}.",
                     incomplete=True)
    if not pod.node:
        return Check("node.pod_identity_agent", SKIPPED, None, "The pod is not scheduled on a node yet.")
    compute = (node_labels or {}).get("eks.amazonaws.com/compute-type")
    install = fix("Install the EKS Pod Identity agent add-on (or repair it), then look at its pod on the node.",
                  "aws eks create-addon --cluster-name CLUSTER --addon-name eks-pod-identity-agent",
                  f"kubectl get pods -n kube-system -l app.kubernetes.io/name={AGENT} -o wide "
                  f"--field-selector spec.nodeName={sh(pod.node or 'NODE')}")
    if compute == "auto":
        return Check("node.pod_identity_agent", OK, None,
                     f"Node {pod.node} is an EKS Auto Mode node, which runs the Pod Identity agent itself.")
    if compute == "fargate" or (pod.node or "").startswith("fargate-"):
        return Check("node.pod_identity_agent", FAIL, "POD_IDENTITY_AGENT_MISSING",
                     f"The pod runs on Fargate ({pod.node}), where EKS Pod Identity is not available: no agent runs "
                     "there.", fix("Use IRSA for pods on Fargate: annotate the service account with a role."))
    agents = [d for d in daemonsets or [] if is_agent_daemonset(d)]
    if not agents:
        return Check("node.pod_identity_agent", FAIL, "POD_IDENTITY_AGENT_MISSING",
                     f"No {AGENT} DaemonSet in kube-system: nothing answers at 169.254.170.23 on node {pod.node}.",
                     install)
    name = (agents[0].get("metadata") or {}).get("name")
    on_node = agent_pods or []
    if not on_node:
        return Check("node.pod_identity_agent", FAIL, "POD_IDENTITY_AGENT_MISSING",
                     f"The DaemonSet {name} runs no pod on node {pod.node} (its node affinity or tolerations leave "
                     "the node out, or it is still starting).", install)
    ready = [p for p in on_node if _running_and_ready(p)]
    if not ready:
        states = "; ".join(_state(p) for p in on_node)
        return Check("node.pod_identity_agent", FAIL, "POD_IDENTITY_AGENT_MISSING",
                     f"The {name} pod on node {pod.node} is not ready: {states}.", install)
    return Check("node.pod_identity_agent", OK, None,
                 f"{(ready[0].get('metadata') or {}).get('name')} ({name}) is running and ready on node {pod.node}.")


# -- cluster.coredns --------------------------------------------------------------------------------------


def check_coredns(pods: list[Mapping[str, Any]] | None, unread: str | None) -> Check:
    """``cluster.coredns``: the ``k8s-app=kube-dns`` pods are running and ready, and where."""
    if pods is None:
        return Check("cluster.coredns", SKIPPED, None, f"CoreDNS pods could not be listed: {unread}.", incomplete=True)
    look = fix("CoreDNS resolves every AWS endpoint for the cluster's pods: find why its pods do not run (node "
               "capacity, the scheduler's message, its logs).",
               "kubectl get pods -n kube-system -l k8s-app=kube-dns -o wide",
               "kubectl describe pods -n kube-system -l k8s-app=kube-dns",
               "kubectl logs -n kube-system -l k8s-app=kube-dns --tail=50")
    if not pods:
        return Check("cluster.coredns", FAIL, "COREDNS_UNAVAILABLE",
                     f"No pod labelled {COREDNS_SELECTOR} in kube-system: nothing answers the cluster's DNS.", look)
    states = "; ".join(_state(p) for p in pods)
    ready = [p for p in pods if _running_and_ready(p)]
    if not ready:
        return Check("cluster.coredns", FAIL, "COREDNS_UNAVAILABLE",
                     f"None of the {len(pods)} CoreDNS pods is running and ready: {states}.", look)
    nodes = {(p.get("spec") or {}).get("nodeName") for p in ready}
    restarts = sum(_restarts(p) for p in pods)
    notes = []
    if len(ready) < len(pods):
        notes.append(f"only {len(ready)} of {len(pods)} are ready")
    if len(ready) > 1 and len(nodes) == 1:
        notes.append("all on one node")
    if restarts:
        notes.append(f"{restarts} restarts between them")
    if notes:
        return Check("cluster.coredns", WARN, None, f"{states}; " + ", ".join(notes) + ".", look)
    return Check("cluster.coredns", OK, None, f"{states}.")


def _running_and_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def _restarts(pod: Mapping[str, Any]) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _state(pod: Mapping[str, Any]) -> str:
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or "Unknown"
    ready = "ready" if _running_and_ready(pod) else "not ready"
    why = []
    for condition in status.get("conditions") or []:
        if condition.get("status") == "False" and condition.get("message"):
            why.append(str(condition["message"]))
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            why.append(str(waiting["reason"]))
    where = f" on {spec['nodeName']}" if spec.get("nodeName") else ""
    restarts = _restarts(pod)
    text = f"{meta.get('name')} {phase}, {ready}{where}"
    if restarts:
        text += f", {restarts} restarts"
    if why and not _running_and_ready(pod):
        text += f" ({'; '.join(dict.fromkeys(why))})"
    return text
