"""``trailscan doctor pod NS/NAME``: the pod, its service account and its cluster, from a workstation.

Through the user's kubectl (:mod:`.cluster`), read-only: the pod (or the newest running pod
of ``deployment/NAME``), its service account with the ``managedFields`` that date its
annotation, the MutatingWebhookConfigurations, the Pod Identity agent's DaemonSet and its pod
on the node, CoreDNS; with ``--cluster NAME`` the EKS cluster (OIDC issuer, Pod Identity
associations) through boto3; with an IAM inventory the trust verdict.  Then the checks of
:mod:`.podspec` and :mod:`.addons`, in :data:`.model.CHECKS` order; with ``--probe`` the
in-pod doctor runs in a short-lived pod of the same service account (:mod:`.probe`).

The target missing is an input error (exit 2); kubectl unable to read it at all is
:class:`~trailscan.errors.ChecksBlocked` (exit 3); any later read that fails leaves its
check skipped and the run incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trailscan.doctor import addons, podspec
from trailscan.doctor.cluster import Kube, KubeError, PodView, label_selector, query
from trailscan.doctor.model import SKIPPED, Check, DoctorReport
from trailscan.doctor.token import IRSA_AUDIENCE
from trailscan.doctor.trust import TrustQuestion, check_trust, load_trust_inventory
from trailscan.errors import ChecksBlocked, InputError, UsageError
from trailscan.kube import AUDIENCE_ANNOTATION, ROLE_ARN_ANNOTATION

__all__ = ["PodOptions", "parse_target", "probe_manifest_for", "read_target", "run_pod"]

_POD_KINDS = ("pod", "pods", "po")
_DEPLOYMENT_KINDS = ("deployment", "deployments", "deploy")


@dataclass(frozen=True)
class PodOptions:
    """What ``trailscan doctor pod`` is asked: the target, the kubectl context, the AWS side
    (``clusters`` described live, IAM from ``iam_files`` or live unless ``offline``), and
    the probe (``probe``, its ``image``, how long to wait, what to pass on to it)."""

    target: str
    namespace: str | None = None
    context: str | None = None
    timeout: float = 3.0
    iam_files: tuple[str, ...] = ()
    offline: bool = False
    cluster: str | None = None
    region: str | None = None
    probe: bool = False
    image: str | None = None
    probe_timeout: float = 120.0
    endpoints: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    kubectl: str = "kubectl"


def parse_target(target: str, namespace: str | None) -> tuple[str, str, str]:
    """``NS/NAME``, ``NS/KIND/NAME``, ``KIND/NAME`` or ``NAME`` (with ``-n NS``; default
    ``default``) → ``(namespace, "pod" | "deployment", name)``."""
    parts = [part for part in target.strip().split("/")]
    if any(not part for part in parts) or not 1 <= len(parts) <= 3:
        raise UsageError(f"{target!r}: expected NAMESPACE/NAME, NAMESPACE/deployment/NAME or deployment/NAME")
    kind = "pod"
    if len(parts) == 3:
        namespace, kind, name = parts
    elif len(parts) == 2 and parts[0].lower() in _POD_KINDS + _DEPLOYMENT_KINDS:
        kind, name = parts
    elif len(parts) == 2:
        if namespace and namespace != parts[0]:
            raise UsageError(f"{target!r} names namespace {parts[0]}, but -n says {namespace}")
        namespace, name = parts
    else:
        name = parts[0]
    kind = kind.lower()
    if kind in _POD_KINDS:
        kind = "pod"
    elif kind in _DEPLOYMENT_KINDS:
        kind = "deployment"
    else:
        raise UsageError(f"{target!r}: the doctor looks at a pod or a deployment, not a {kind}")
    return namespace or "default", kind, name


def read_target(kube: Kube, namespace: str, kind: str, name: str) -> tuple[dict[str, Any], str]:
    """The pod to examine, and how it was chosen."""
    if kind == "pod":
        return _must(kube, f"/api/v1/namespaces/{namespace}/pods/{name}", f"pod {namespace}/{name}"), ""
    deployment = _must(kube, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
                       f"deployment {namespace}/{name}")
    selector = label_selector((deployment.get("spec") or {}).get("selector") or {})
    if not selector:
        raise InputError(f"deployment {namespace}/{name} has no selector")
    listing = _must(kube, query(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector),
                    f"the pods of deployment {namespace}/{name}")
    pods = [p for p in listing.get("items") or [] if isinstance(p, Mapping)]
    if not pods:
        raise InputError(f"deployment {namespace}/{name} has no pods ({selector})")

    def rank(pod: Mapping[str, Any]) -> tuple[bool, str]:
        meta = pod.get("metadata") or {}
        return ((pod.get("status") or {}).get("phase") == "Running", str(meta.get("creationTimestamp") or ""))

    chosen = max(pods, key=rank)
    return dict(chosen), f"the newest running of {len(pods)} pods of deployment/{name}"


def _must(kube: Kube, path: str, what: str) -> dict[str, Any]:
    try:
        return kube.get(path)
    except KubeError as error:
        if error.reason == "not_found":
            raise InputError(f"{kube.source}: {what} not found") from None
        raise ChecksBlocked(f"{kube.source}: cannot read {what}: {error.message}",
                            hint="see the RBAC trailscan doctor pod needs in the README") from None


def _read(kube: Kube, path: str) -> tuple[dict[str, Any] | None, KubeError | None]:
    try:
        return kube.get(path), None
    except KubeError as error:
        return None, error


def _locate(options: PodOptions) -> tuple[Kube, dict[str, Any], str]:
    """kubectl, the target pod, and how it was chosen.  Without a namespace in the target or
    ``-n``, the context's namespace applies, as for kubectl itself."""
    kube = Kube(options.context, kubectl=options.kubectl, timeout=options.timeout * 10)
    namespace, kind, name = parse_target(options.target, options.namespace or _context_namespace(kube))
    raw, chosen = read_target(kube, namespace, kind, name)
    return kube, raw, chosen


def _context_namespace(kube: Kube) -> str | None:
    try:
        return kube._run(["config", "view", "--minify", "--output", "jsonpath={..namespace}"]).strip() or None
    except KubeError:
        return None


def run_pod(options: PodOptions) -> DoctorReport:
    """Every check of ``doctor pod`` on *options.target*."""
    parse_target(options.target, options.namespace)  # a usage error before any kubectl call
    kube, raw, chosen = _locate(options)
    pod = PodView.of(raw)
    report = DoctorReport({"kind": "pod", "context": options.context, "namespace": pod.namespace, "name": pod.name,
                           "node": pod.node, "service_account": pod.service_account, "chosen": chosen or None})

    read = _read_around(kube, pod, options)
    sa, sa_error = read["sa"]
    eks = read["eks"]
    association = eks.association(pod) if eks else None
    wiring = podspec.wiring_of(pod)
    annotations = ((sa or {}).get("metadata") or {}).get("annotations") or {}
    needed = bool(annotations.get(ROLE_ARN_ANNOTATION) or association)
    uses_pod_identity = bool(wiring.pod_identity) or association is not None

    report.add(podspec.check_service_account(
        pod, sa, missing=sa_error is not None and sa_error.reason == "not_found",
        unread=sa_error.message if sa_error is not None and sa_error.reason != "not_found" else None,
        association=association, associations_read=bool(eks and eks.read)))
    report.add(podspec.check_restart(pod, sa, association))
    configurations, hooks_error = read["webhooks"]
    namespace_object, _ = read["namespace"]
    namespace_labels = ((namespace_object or {}).get("metadata") or {}).get("labels") if namespace_object else None
    report.add(addons.check_webhook(
        pod, None if configurations is None else list(configurations.get("items") or []),
        hooks_error.message if hooks_error else None, namespace_labels, needed, wiring.injected))
    report.add(podspec.check_injection(pod, sa, association))
    report.add(podspec.check_token_access(pod))
    report.add(podspec.check_network(pod))
    report.add(addons.check_association(pod, association, bool(eks and eks.read), eks.unread if eks else None,
                                        bool(wiring.pod_identity), options.cluster))
    report.add(_agent(kube, pod, uses_pod_identity, read["daemonsets"], read["node"]))
    coredns, coredns_error = read["coredns"]
    report.add(addons.check_coredns(None if coredns is None else list(coredns.get("items") or []),
                                    coredns_error.message if coredns_error else None))
    if options.probe:
        from trailscan.doctor.probe import probe_checks

        for check in probe_checks(kube, pod, sa, options):
            report.add(check)
    report.add(_trust(options, pod, sa, wiring, eks, read["issuer"]))
    return report


def _read_around(kube: Kube, pod: PodView, options: PodOptions) -> dict[str, Any]:
    """Everything the checks read besides the pod, at once: each kubectl call may run an
    exec credential plugin (``aws eks get-token``) that takes a second, so they overlap."""
    from concurrent.futures import ThreadPoolExecutor

    paths = {
        "sa": f"/api/v1/namespaces/{pod.namespace}/serviceaccounts/{pod.service_account}",
        "webhooks": "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "namespace": f"/api/v1/namespaces/{pod.namespace}",
        "coredns": query("/api/v1/namespaces/kube-system/pods", labelSelector=addons.COREDNS_SELECTOR),
        "daemonsets": "/apis/apps/v1/namespaces/kube-system/daemonsets",
    }
    if pod.node:
        paths["node"] = f"/api/v1/nodes/{pod.node}"
    with ThreadPoolExecutor(max_workers=len(paths) + 2, thread_name_prefix="doctor-read") as pool:
        futures = {key: pool.submit(_read, kube, path) for key, path in paths.items()}
        eks = pool.submit(_eks, options)
        issuer = pool.submit(kube.issuer)
        found: dict[str, Any] = {key: future.result() for key, future in futures.items()}
        found.setdefault("node", (None, None))
        found["eks"] = eks.result()
        found["issuer"] = issuer.result()
    return found


def _agent(kube: Kube, pod: PodView, uses_pod_identity: bool, daemonsets_read: tuple[Any, Any],
           node_read: tuple[Any, Any]) -> Check:
    if not uses_pod_identity:
        return addons.check_agent(pod, False, None, None, None, None)
    daemonsets, error = daemonsets_read
    if daemonsets is None:
        return addons.check_agent(pod, True, None, None, None, error.message if error else "unknown")
    node, _ = node_read
    node_labels = ((node or {}).get("metadata") or {}).get("labels") if node else None
    agents = [d for d in daemonsets.get("items") or [] if addons.is_agent_daemonset(d)]
    agent_pods: list[Mapping[str, Any]] = []
    if agents and pod.node:
        selector = label_selector((agents[0].get("spec") or {}).get("selector") or {})
        listing, error = _read(kube, query("/api/v1/namespaces/kube-system/pods", labelSelector=selector,
                                           fieldSelector=f"spec.nodeName={pod.node}"))
        if listing is None:
            return addons.check_agent(pod, True, None, None, node_labels, error.message if error else "unknown")
        agent_pods = list(listing.get("items") or [])
    return addons.check_agent(pod, True, list(daemonsets.get("items") or []), agent_pods, node_labels, None)


class _Eks:
    """The ``--cluster`` described live: issuer, Pod Identity associations, and what failed."""

    def __init__(self, cluster: Any, read: bool, unread: str | None) -> None:
        self.cluster, self.read, self.unread = cluster, read, unread

    def association(self, pod: PodView) -> Any:
        if self.cluster is None:
            return None
        return next((a for a in self.cluster.pod_identity_associations
                     if a.namespace == pod.namespace and a.service_account == pod.service_account), None)


def _eks(options: PodOptions) -> _Eks | None:
    if not options.cluster:
        return None
    from trailscan.aws import default_session
    from trailscan.inventory import EKS, POD_IDENTITY, load_eks_live

    session = default_session()
    [cluster] = load_eks_live(session, [options.cluster], [options.region] if options.region else None)
    if EKS in cluster.gaps:
        return _Eks(None, False, cluster.gaps[EKS])
    return _Eks(cluster, POD_IDENTITY not in cluster.gaps, cluster.gaps.get(POD_IDENTITY))


def _trust(options: PodOptions, pod: PodView, sa: Mapping[str, Any] | None, wiring: Any, eks: _Eks | None,
           announced: str | None) -> Check:
    annotations = ((sa or {}).get("metadata") or {}).get("annotations") or {}
    role = next(iter(sorted(wiring.roles)), None) or str(annotations.get(ROLE_ARN_ANNOTATION, "")).strip() or None
    if not role or (wiring.pod_identity and not wiring.irsa):
        return Check("trust.role", SKIPPED, None, "The pod asks for no IRSA role (EKS Pod Identity roles trust "
                     "pods.eks.amazonaws.com, not the token).")
    issuer = (eks.cluster.oidc_issuer if eks and eks.cluster else None) or announced
    if not issuer:
        return Check("trust.role", SKIPPED, None, "The cluster's OIDC issuer is unknown: its API server does not serve "
                     "/.well-known/openid-configuration to this user; pass --cluster NAME.")
    audience = str(annotations.get(AUDIENCE_ANNOTATION, "")).strip() or IRSA_AUDIENCE
    session = None
    if not options.iam_files and not options.offline:
        from trailscan.aws import default_session, has_credentials

        candidate = default_session()
        session = candidate if has_credentials(candidate) else None
    inventory, unread = load_trust_inventory(options.iam_files, session=session, role_arn=role)
    if options.offline and not options.iam_files:
        unread = "--offline and no --iam file"
    return check_trust(TrustQuestion(role, issuer, pod.subject, audience, options.cluster), inventory, unread)


def probe_manifest_for(options: PodOptions) -> dict[str, Any]:
    """The probe pod ``--probe`` would create for *options.target* (``--dry-run``)."""
    from trailscan.doctor.probe import probe_manifest

    parse_target(options.target, options.namespace)
    kube, raw, _ = _locate(options)
    pod = PodView.of(raw)
    sa, _ = _read(kube, f"/api/v1/namespaces/{pod.namespace}/serviceaccounts/{pod.service_account}")
    return probe_manifest(pod, sa, options)
