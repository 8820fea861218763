"""The pod spec and its service account: was the pod wired for IRSA or EKS Pod Identity?

What the pod identity webhook (aws/amazon-eks-pod-identity-webhook) does, and so what these
checks expect:

- it mutates a pod only when the pod is **created** (its MutatingWebhookConfiguration
  matches ``CREATE`` on pods): a service account annotated, re-annotated or given a Pod
  Identity association later does nothing to running pods until they are recreated;
- for a service account with an EKS Pod Identity association it injects
  ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (``http://169.254.170.23/v1/credentials``) and
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``, and the projected volume
  ``eks-pod-identity-token`` (audience ``pods.eks.amazonaws.com``), in preference to IRSA;
- otherwise, for ``eks.amazonaws.com/role-arn``, it injects ``AWS_ROLE_ARN`` and
  ``AWS_WEB_IDENTITY_TOKEN_FILE`` (``/var/run/secrets/eks.amazonaws.com/serviceaccount/token``)
  and the projected volume ``aws-iam-token`` with the annotation ``eks.amazonaws.com/audience``
  (default ``sts.amazonaws.com``) and ``eks.amazonaws.com/token-expiration`` (default 86400 s);
  ``AWS_STS_REGIONAL_ENDPOINTS=regional`` with ``eks.amazonaws.com/sts-regional-endpoints: "true"``;
- into every container and init container except those the pod's
  ``eks.amazonaws.com/skip-containers`` annotation names, and never over variables a
  container already sets.

The token file's readability follows the kubelet (Kubernetes' projected volumes): files are
the volume's ``defaultMode`` (0644 unless set), owned by root; when every container runs
with the same ``runAsUser`` the token is 0600 owned by that user; ``fsGroup`` makes the
group that group and gives it read access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trailscan.arn import same_role
from trailscan.doctor.cluster import ContainerView, PodView, annotation_changed_at
from trailscan.doctor.model import FAIL, OK, SKIPPED, WARN, Check
from trailscan.doctor.token import IRSA_AUDIENCE, POD_IDENTITY_AUDIENCE
from trailscan.explain.fixes import annotate_fix, comment, fix
from trailscan.explain.text import sh
from trailscan.identity import ServiceAccountRef
from trailscan.kube import AUDIENCE_ANNOTATION, ROLE_ARN_ANNOTATION

__all__ = ["Wiring", "check_injection", "check_network", "check_restart", "check_service_account",
           "check_token_access", "wiring_of"]

IRSA_VOLUME, POD_IDENTITY_VOLUME = "aws-iam-token", "eks-pod-identity-token"
SKIP_CONTAINERS = "eks.amazonaws.com/skip-containers"
_ROLE, _WEB_TOKEN = "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"
_FULL_URI, _PI_TOKEN = "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class Wiring:
    """Which credential method each container of the pod carries."""

    def __init__(self, pod: PodView) -> None:
        skipped = {name.strip() for name in pod.annotations.get(SKIP_CONTAINERS, "").split(",") if name.strip()}
        self.pod = pod
        self.skipped = [c for c in pod.containers if c.name in skipped]
        self.eligible = [c for c in pod.containers if c.name not in skipped]
        self.irsa = [c for c in self.eligible if c.env.get(_ROLE) and c.env.get(_WEB_TOKEN)]
        self.pod_identity = [c for c in self.eligible if c.env.get(_FULL_URI) and c.env.get(_PI_TOKEN)]
        self.bare = [c for c in self.eligible if c not in self.irsa and c not in self.pod_identity]

    @property
    def injected(self) -> bool:
        return bool(self.irsa or self.pod_identity)

    @property
    def roles(self) -> set[str]:
        return {c.env[_ROLE] for c in self.irsa}


def wiring_of(pod: PodView) -> Wiring:
    return Wiring(pod)


def _annotations(service_account: Mapping[str, Any] | None) -> Mapping[str, str]:
    meta = (service_account or {}).get("metadata") or {}
    return {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}


def _sa_ref(pod: PodView) -> ServiceAccountRef:
    return ServiceAccountRef(pod.namespace, pod.service_account)


# -- pod.service_account --------------------------------------------------------------------------


def check_service_account(pod: PodView, service_account: Mapping[str, Any] | None, missing: bool,
                          unread: str | None, association: Any, associations_read: bool) -> Check:
    """``pod.service_account``: the service account names a role (annotation or association)."""
    who = f"{pod.namespace}/{pod.service_account}"
    if unread:
        return Check("pod.service_account", SKIPPED, None, f"The service account {who} could not be read: {unread}.",
                     incomplete=True)
    if missing:
        return Check("pod.service_account", FAIL, "SA_NOT_ANNOTATED",
                     f"The pod runs as the service account {who}, which does not exist (deleted after the pod "
                     "started): it names no role.",
                     fix(f"Create {who} with the role annotation, then restart the pod.",
                         f"kubectl create serviceaccount {sh(pod.service_account)} -n {sh(pod.namespace)}",
                         f"kubectl annotate serviceaccount {sh(pod.service_account)} -n {sh(pod.namespace)} "
                         f"{sh(ROLE_ARN_ANNOTATION + '=arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME')}",
                         pod.restart_command()))
    notes = _annotations(service_account)
    role = notes.get(ROLE_ARN_ANNOTATION, "").strip()
    extras = [f"{key.split('/', 1)[1]} {notes[key]}" for key in (AUDIENCE_ANNOTATION, "eks.amazonaws.com/sts-regional-"
              "endpoints", "eks.amazonaws.com/token-expiration") if key in notes]
    wiring = Wiring(pod)
    if association is not None:
        detail = f"{who} has the EKS Pod Identity association {association.association_id} → {association.role_arn}"
        if role:
            detail += (f"; its role-arn annotation ({role}) is ignored for new pods: the webhook prefers Pod "
                       "Identity")
        return Check("pod.service_account", OK, None, detail + ".")
    if role:
        return Check("pod.service_account", OK, None,
                     f"{who} is annotated {ROLE_ARN_ANNOTATION}: {role}" + (f" ({'; '.join(extras)})" if extras else "")
                     + ".")
    if wiring.pod_identity:
        return Check("pod.service_account", OK, None,
                     f"{who} has no role-arn annotation; the pod carries EKS Pod Identity variables (its association "
                     + ("was not found: deleted since the pod started?" if associations_read else
                        "is not visible without --cluster") + ").")
    where = "" if associations_read else " (Pod Identity associations were not read: pass --cluster NAME to look)"
    return Check("pod.service_account", FAIL, "SA_NOT_ANNOTATED",
                 f"{who} has no {ROLE_ARN_ANNOTATION} annotation and no EKS Pod Identity association{where}: "
                 "the webhook gives its pods no credentials, and the SDK falls back to the node's role or finds none.",
                 _annotate(pod))


def _annotate(pod: PodView) -> str:
    base = annotate_fix(_sa_ref(pod), "arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME",
                        f"Give {pod.namespace}/{pod.service_account} a role: annotate it (IRSA) or create an EKS Pod "
                        "Identity association, then restart the pod.")
    summary, _, script = base.partition("\n\n")
    return fix(summary, comment("IRSA:"), *[line for line in script.splitlines() if "rollout" not in line],
               comment("or EKS Pod Identity:"),
               f"aws eks create-pod-identity-association --cluster-name CLUSTER --namespace {sh(pod.namespace)} "
               f"--service-account {sh(pod.service_account)} --role-arn arn:aws:iam::ACCOUNT_ID:role/ROLE_NAME",
               pod.restart_command())


# -- pod.restart --------------------------------------------------------------------------------------


def check_restart(pod: PodView, service_account: Mapping[str, Any] | None, association: Any) -> Check:
    """``pod.restart``: the pod was created after the annotation it should carry."""
    role = _annotations(service_account).get(ROLE_ARN_ANNOTATION, "").strip()
    wiring = Wiring(pod)
    changed, manager = annotation_changed_at(service_account or {})
    created = pod.created.strftime(_TIME) if pod.created else "(unknown)"
    when = f" (set at {changed.strftime(_TIME)} by {manager}, managedFields)" if changed else ""
    restart = fix("Recreate the pod: the webhook injects the annotation's role only into pods it creates.",
                  pod.restart_command())
    if association is not None or (wiring.pod_identity and not wiring.irsa):
        return Check("pod.restart", SKIPPED, None, "The pod uses EKS Pod Identity: no annotation to follow.")
    if not role:
        if wiring.roles:
            return Check("pod.restart", WARN, None,
                         f"The pod carries AWS_ROLE_ARN={', '.join(sorted(wiring.roles))}, but its service account "
                         "no longer has a role-arn annotation: the pod keeps that role until it is recreated, then "
                         "loses it.")
        return Check("pod.restart", SKIPPED, None, "The service account has no role-arn annotation to follow.")
    if wiring.roles:
        if all(same_role(found, role) for found in wiring.roles):
            return Check("pod.restart", OK, None, f"The pod carries AWS_ROLE_ARN={role}, the annotation's role.")
        return Check("pod.restart", FAIL, "POD_PREDATES_ANNOTATION",
                     f"The pod (created {created}) carries AWS_ROLE_ARN={', '.join(sorted(wiring.roles))}, but its "
                     f"service account's annotation now names {role}{when}: the annotation changed after the pod "
                     "was created (or AWS_ROLE_ARN is written into the pod spec by hand).", restart)
    if changed is not None and pod.created is not None and changed > pod.created:
        return Check("pod.restart", FAIL, "POD_PREDATES_ANNOTATION",
                     f"The pod was created at {created}, before its service account was annotated with {role}{when}: "
                     "the webhook never saw the annotation, so the pod has no IRSA variables.", restart)
    if changed is None:
        return Check("pod.restart", WARN, None,
                     f"The pod has no AWS_ROLE_ARN and the annotation's date is unknown (no managedFields entry owns "
                     f"it): if it was set after {created}, the pod must be recreated.", restart)
    return Check("pod.restart", OK, None,
                 f"The annotation{when} predates the pod (created {created}): restarting would not change it.")


# -- pod.injection -------------------------------------------------------------------------------------


def check_injection(pod: PodView, service_account: Mapping[str, Any] | None, association: Any) -> Check:
    """``pod.injection``: the variables and the token volume the webhook injects are in the spec."""
    wiring = Wiring(pod)
    notes = _annotations(service_account)
    if not wiring.injected:
        skipped = f"; eks.amazonaws.com/skip-containers leaves out {', '.join(c.name for c in wiring.skipped)}" \
            if wiring.skipped else ""
        return Check("pod.injection", FAIL, "NO_CREDENTIALS_INJECTED",
                     f"No container of the pod carries AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE or "
                     f"AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE{skipped}: the pod "
                     "was created without the webhook's mutation (see pod.service_account, pod.restart and "
                     "cluster.webhook for why).",
                     fix("Once the service account names a role and the webhook is in place, recreate the pod.",
                         pod.restart_command()))
    parts: list[str] = []
    problems: list[Check] = []
    if wiring.irsa:
        wanted = notes.get(AUDIENCE_ANNOTATION, "").strip() or IRSA_AUDIENCE
        parts.append(_describe(pod, wiring.irsa, _WEB_TOKEN, "IRSA", f"AWS_ROLE_ARN={wiring.irsa[0].env[_ROLE]}"))
        problems += _volume_audience(pod, wiring.irsa, _WEB_TOKEN, wanted,
                                     "the service account's eks.amazonaws.com/audience" if AUDIENCE_ANNOTATION in notes
                                     else "IRSA's default")
    if wiring.pod_identity:
        parts.append(_describe(pod, wiring.pod_identity, _PI_TOKEN, "EKS Pod Identity",
                               f"{_FULL_URI}={wiring.pod_identity[0].env[_FULL_URI]}"))
        problems += _volume_audience(pod, wiring.pod_identity, _PI_TOKEN, POD_IDENTITY_AUDIENCE, "EKS Pod Identity")
    if problems:
        return problems[0]
    detail = "; ".join(parts)
    warnings = []
    if wiring.bare:
        warnings.append(f"container(s) {', '.join(c.name for c in wiring.bare)} carry no credential variables")
    if wiring.skipped:
        warnings.append(f"eks.amazonaws.com/skip-containers leaves out {', '.join(c.name for c in wiring.skipped)}")
    statics = [c.name for c in wiring.eligible if "AWS_ACCESS_KEY_ID" in c.env or "AWS_ACCESS_KEY_ID" in c.env_from_refs]
    if statics:
        warnings.append(f"{', '.join(statics)} set AWS_ACCESS_KEY_ID, which every SDK prefers to the pod's role")
    if association is not None and wiring.irsa and not wiring.pod_identity:
        warnings.append("the service account now has a Pod Identity association, which a recreated pod would use")
    if warnings:
        return Check("pod.injection", WARN, None, f"{detail}. But " + "; ".join(warnings) + ".")
    return Check("pod.injection", OK, None, detail + ".")


def _describe(pod: PodView, containers: list[ContainerView], variable: str, method: str, first: str) -> str:
    path = containers[0].env.get(variable, "")
    volume, source = _token_source(pod, containers[0], path)
    where = f"volume {volume.get('name')}" if volume else "no volume"
    extra = ""
    if source:
        extra = f" (audience {source.get('audience') or '(API server)'}, expirationSeconds {source.get('expirationSeconds', 3607)})"
    return f"{method} in {', '.join(c.name for c in containers)}: {first}, {variable}={path} from {where}{extra}"


def _token_source(pod: PodView, container: ContainerView, path: str) -> tuple[Mapping[str, Any] | None,
                                                                              Mapping[str, Any] | None]:
    """The projected volume and its ``serviceAccountToken`` source that put *path* in *container*."""
    mount = container.mount_of(path)
    if mount is None:
        return None, None
    volume = pod.volume(str(mount.get("name")))
    if volume is None:
        return None, None
    relative = path[len(str(mount.get("mountPath", "")).rstrip("/")) + 1:]
    if mount.get("subPath"):
        relative = str(mount["subPath"])
    for source in (volume.get("projected") or {}).get("sources") or []:
        token = source.get("serviceAccountToken") if isinstance(source, Mapping) else None
        if isinstance(token, Mapping) and token.get("path") == relative:
            return volume, token
    return volume, None


def _volume_audience(pod: PodView, containers: list[ContainerView], variable: str, wanted: str, why: str) -> list[Check]:
    for container in containers:
        _volume, source = _token_source(pod, container, container.env.get(variable, ""))
        if source is None:
            continue
        audience = source.get("audience") or "(the API server's)"
        if audience != wanted:
            return [Check("pod.injection", FAIL, "TOKEN_AUDIENCE_MISMATCH",
                          f"The token projected for {variable} in {container.name} has the audience {audience}, but "
                          f"{why} is {wanted}: the audience changed after the pod was created, or the volume is "
                          "written by hand.",
                          fix("Recreate the pod so the webhook projects the token with the right audience.",
                              pod.restart_command()))]
    return []


# -- pod.token_access -----------------------------------------------------------------------------------


def check_token_access(pod: PodView) -> Check:
    """``pod.token_access``: every wired container's user can read its token file."""
    wiring = Wiring(pod)
    users = {c.run_as_user for c in pod.containers}
    shared_user = next(iter(users)) if len(users) == 1 and None not in users else None
    findings: list[str] = []
    fine: list[str] = []
    for container in wiring.irsa + wiring.pod_identity:
        variable = _WEB_TOKEN if container in wiring.irsa else _PI_TOKEN
        path = container.env[variable]
        volume, source = _token_source(pod, container, path)
        if volume is None or source is None:
            findings.append(f"{container.name}: no projected token volume provides {variable}={path}")
            continue
        mode = (volume.get("projected") or {}).get("defaultMode")
        mode = mode if isinstance(mode, int) else 0o644
        owner, group = 0, 0
        if shared_user is not None:
            owner, mode = shared_user, 0o600
        if pod.fs_group is not None:
            group, mode = pod.fs_group, mode | 0o040
        verdict = _readable(container, owner, group, mode, pod)
        facts = f"mode {mode:04o}, owner {owner}, group {group}"
        if verdict is False:
            findings.append(f"{container.name} runs as uid {container.run_as_user} and cannot read {path} ({facts})")
        elif verdict is None:
            fine.append(f"{container.name}: {facts}; it runs as the image's user (no runAsUser), which reads it only "
                        "if it is root or the owner")
        else:
            fine.append(f"{container.name} (uid {container.run_as_user if container.run_as_user is not None else '0?'}) "
                        f"reads {path} ({facts})")
    if not wiring.injected:
        return Check("pod.token_access", SKIPPED, None, "No token is wired into the pod.")
    if findings:
        return Check("pod.token_access", FAIL, "TOKEN_UNREADABLE", "; ".join(findings) + ".",
                     fix("Let the containers' user read the token: set the pod's securityContext.fsGroup (the kubelet "
                         "gives that group read access), run all containers as one runAsUser, or drop a restrictive "
                         "defaultMode from the token volume; then recreate the pod.",
                         comment("in the pod template:"), comment("  securityContext:"), comment("    fsGroup: 65534"),
                         pod.restart_command()))
    unknown = [line for line in fine if "image's user" in line]
    return Check("pod.token_access", WARN if unknown else OK, None, "; ".join(fine) + ".")


def _readable(container: ContainerView, owner: int, group: int, mode: int, pod: PodView) -> bool | None:
    uid = container.run_as_user
    if mode & 0o004:
        return True
    if pod.fs_group is not None and group == pod.fs_group and mode & 0o040:
        return True  # the kubelet adds fsGroup to every container's supplementary groups
    if uid is None:
        return None
    if uid == 0 or uid == owner:
        return bool(mode & 0o400) or uid == 0
    groups = {g for g in (container.run_as_group, pod.fs_group, *pod.supplemental_groups) if g is not None}
    return bool(mode & 0o040) and group in groups


# -- pod.network ------------------------------------------------------------------------------------------


def check_network(pod: PodView) -> Check:
    """``pod.network``: hostNetwork and dnsPolicy, which decide the resolver and IMDS's reach."""
    facts = f"hostNetwork {str(pod.host_network).lower()}, dnsPolicy {pod.dns_policy}"
    if pod.automount is False:
        facts += ", automountServiceAccountToken false (the webhook's token volume is projected all the same)"
    notes = []
    if pod.host_network:
        notes.append("on the node's network the pod reaches the instance metadata service whatever the IMDSv2 hop "
                     "limit: without its own credentials it runs as the node's role")
        if pod.dns_policy == "ClusterFirst":
            notes.append("with hostNetwork, dnsPolicy ClusterFirst falls back to the node's resolver: cluster names "
                         "do not resolve (use ClusterFirstWithHostNet)")
    if pod.dns_policy in ("Default", "None"):
        notes.append(f"dnsPolicy {pod.dns_policy}: the pod does not ask CoreDNS")
    if notes:
        return Check("pod.network", WARN, None, f"{facts}: " + "; ".join(notes) + ".")
    return Check("pod.network", OK, None, f"{facts}: the pod resolves through CoreDNS.")
