"""`trailscan doctor pod`: the real kubectl against the loopback Kubernetes API server.

Each cluster is built as the API server would hold it (:mod:`tests.support.kube_api`): the
pod as the pod identity webhook mutated it (or did not), the service account with the
``managedFields`` that date its annotation, the webhook's configuration, the
``eks-pod-identity-agent`` DaemonSet and its pods, CoreDNS.  The probe pod is "run" by the
server's kubelet stand-in: it mutates the pod as the webhook would, projects a token minted
by the tests, and runs the real in-pod doctor against moto.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.support.kube_api import (
    KubeAPI,
    closed_port_url,
    daemonset,
    inject_irsa,
    inject_pod_identity,
    managed_field,
    node,
    pod,
    service_account,
    webhook_configuration,
    write_kubeconfig,
)
from tests.support.moto_server import MotoServer
from tests.support.tokens import ISSUER, mint

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and not os.environ.get("CI"),
    reason="kubectl is not on PATH (run .ci/install-kubectl)",
)
pytestmark = needs_kubectl

ACCOUNT = "111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/payments-api"
OLD_ROLE = f"arn:aws:iam::{ACCOUNT}:role/payments-api-old"
ISSUER_HOST = ISSUER.removeprefix("https://")
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER_HOST}"
NODE = "ip-10-0-1-23.eu-west-1.compute.internal"
POD = "api-7d9f8b6c5-x2x9q"
AGENT_LABELS = {"app.kubernetes.io/name": "eks-pod-identity-agent", "app.kubernetes.io/instance": "eks-pod-identity-agent"}


def app_pod(*, injected: str | None = "irsa", role: str = ROLE, created: str = "2025-06-01T10:00:00Z",
            labels: dict | None = None, **options: Any) -> dict:
    """payments/api's pod, owned by the deployment's ReplicaSet, mutated as the webhook would."""
    made = pod("payments", POD, service_account="api", node=NODE, created=created, owner=("ReplicaSet", "api-7d9f8b6c5"),
               labels={"app": "api", "pod-template-hash": "7d9f8b6c5", **(labels or {})}, **options)
    if injected == "irsa":
        inject_irsa(made, role)
    elif injected == "pod_identity":
        inject_pod_identity(made)
    return made


def annotated_sa(role: str | None = ROLE, *, at: str = "2025-05-01T09:00:00Z", **options: Any) -> dict:
    fields = [managed_field("kubectl-annotate", at, "eks.amazonaws.com/role-arn")] if role else []
    return service_account("payments", "api", role_arn=role, managed_fields=fields, **options)


def coredns(ready: bool = True, **options: Any) -> list[dict]:
    return [pod("kube-system", f"coredns-7f85bf9964-{suffix}", node=f"ip-10-0-{i}-9.eu-west-1.compute.internal",
                labels={"k8s-app": "kube-dns"}, ready=ready, **options)
            for i, suffix in ((1, "kz8lp"), (2, "wjxvb"))]


def agent(ready: bool = True) -> tuple[list[dict], list[dict]]:
    return ([daemonset("kube-system", "eks-pod-identity-agent", AGENT_LABELS)],
            [pod("kube-system", "eks-pod-identity-agent-4xk2p", node=NODE, labels=AGENT_LABELS, ready=ready,
                 phase="Running")])


def healthy(**overrides: Any) -> dict[str, Any]:
    """The parts of a healthy cluster for payments/api (IRSA), as KubeAPI arguments."""
    daemonsets, agent_pods = agent()
    parts: dict[str, Any] = {
        "service_accounts": [annotated_sa()],
        "pods": [app_pod(), *coredns(), *agent_pods],
        "deployments": [{"metadata": {"name": "api", "namespace": "payments"},
                         "spec": {"selector": {"matchLabels": {"app": "api"}}}}],
        "daemonsets": daemonsets,
        "webhooks": [webhook_configuration()],
        "nodes": [node(NODE, {"eks.amazonaws.com/compute-type": "ec2"})],
        "namespaces": [{"metadata": {"name": "payments", "labels": {"kubernetes.io/metadata.name": "payments"}}}],
        "issuer": ISSUER,
    }
    parts.update(overrides)
    return parts


def trust(subject: str = "system:serviceaccount:payments:api") -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER_HOST}:sub": subject, f"{ISSUER_HOST}:aud": "sts.amazonaws.com"}}}]}


def iam_file(tmp_path: Path, trust_policy: dict | None = None) -> Path:
    path = tmp_path / "iam.json"
    path.write_text(json.dumps({
        "RoleDetailList": [{"RoleName": "payments-api", "Arn": ROLE, "AssumeRolePolicyDocument": trust_policy or trust(),
                            "RolePolicyList": [], "AttachedManagedPolicies": []}],
        "Policies": [],
        "OpenIDConnectProviderList": [{"Arn": PROVIDER, "Url": ISSUER_HOST, "ClientIDList": ["sts.amazonaws.com"],
                                       "ThumbprintList": ["9" * 40]}],
    }))
    return path


def doctor_pod(api: KubeAPI, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trailscan", "doctor", "pod", *args],
        capture_output=True, text=True, timeout=300, cwd=api.kubeconfig.parent,
        env={**os.environ, "KUBECONFIG": str(api.kubeconfig), "PYTHONPATH": str(ROOT), **(env or {})},
    )


def run(tmp_path: Path, parts: dict[str, Any], *args: str, target: str = f"payments/{POD}",
        env: dict[str, str] | None = None) -> tuple[dict[str, Any], subprocess.CompletedProcess, KubeAPI]:
    with KubeAPI(directory=tmp_path, **parts) as api:
        done = doctor_pod(api, target, "--format", "json", *args, env=env)
    assert done.returncode in (0, 1, 3), done.stderr
    document = json.loads(done.stdout)
    return {c["id"]: c for c in document["checks"]}, done, api


def status(checks: dict[str, Any], check_id: str) -> tuple[str, str | None]:
    return checks[check_id]["status"], checks[check_id]["cause"]


# -- a healthy pod ------------------------------------------------------------------------------------


def test_a_healthy_pod_passes_every_check(tmp_path):
    checks, done, api = run(tmp_path, healthy(), "--iam", str(iam_file(tmp_path)))
    assert {cid: c["status"] for cid, c in checks.items()} == {
        "pod.service_account": "ok", "pod.restart": "ok", "cluster.webhook": "ok", "pod.injection": "ok",
        "pod.token_access": "ok", "pod.network": "ok", "eks.pod_identity_association": "skipped",
        "node.pod_identity_agent": "skipped", "cluster.coredns": "ok", "trust.role": "ok",
    }, done.stdout
    assert done.returncode == 0 and done.stderr == ""
    assert ROLE in checks["pod.service_account"]["detail"]
    assert "iam-for-pods.amazonaws.com" in checks["cluster.webhook"]["detail"]
    assert "coredns-7f85bf9964-kz8lp Running, ready on ip-10-0-1-9" in checks["cluster.coredns"]["detail"]
    # read-only: every request a GET
    assert {r.method for r in api.requests} == {"GET"}
    assert any("/serviceaccounts/api" in r.path for r in api.requests)


def test_a_deployment_is_examined_through_its_newest_running_pod(tmp_path):
    older = app_pod(created="2025-05-30T10:00:00Z")
    older["metadata"]["name"] = "api-7d9f8b6c5-old00"
    parts = healthy()
    parts["pods"] = [older, *parts["pods"]]
    _checks, done, _ = run(tmp_path, parts, "--iam", str(iam_file(tmp_path)), target="payments/deployment/api")
    assert done.returncode == 0, done.stdout
    document = json.loads(done.stdout)
    assert document["target"]["name"] == POD
    assert "deployment/api" in document["target"]["chosen"]
    with KubeAPI(directory=tmp_path, **healthy()) as api:
        named = doctor_pod(api, "-n", "payments", "deployment/api", "--iam", str(iam_file(tmp_path)))
    assert named.returncode == 0 and f"pod payments/{POD}" in named.stdout


def test_a_healthy_pod_identity_pod(tmp_path):
    parts = healthy(service_accounts=[service_account("payments", "api")],
                    pods=[app_pod(injected="pod_identity"), *coredns(), *agent()[1]])
    checks, done, _ = run(tmp_path, parts)
    assert status(checks, "node.pod_identity_agent") == ("ok", None)
    assert status(checks, "pod.service_account") == ("ok", None)
    assert status(checks, "pod.injection") == ("ok", None)
    assert {c["status"] for c in checks.values()} <= {"ok", "skipped"}, done.stdout
    assert done.returncode == 0


# -- the service account and the webhook ----------------------------------------------------------------


def test_sa_not_annotated(tmp_path):
    parts = healthy(service_accounts=[service_account("payments", "api")],
                    pods=[app_pod(injected=None), *coredns(), *agent()[1]])
    checks, done, _ = run(tmp_path, parts)
    assert status(checks, "pod.service_account") == ("fail", "SA_NOT_ANNOTATED")
    assert status(checks, "pod.injection") == ("fail", "NO_CREDENTIALS_INJECTED")
    assert "kubectl annotate serviceaccount -n payments api" in checks["pod.service_account"]["fix"]
    assert "aws eks create-pod-identity-association" in checks["pod.service_account"]["fix"]
    assert done.returncode == 1
    text = run_text(tmp_path, parts)
    assert "Root cause: SA_NOT_ANNOTATED (pod.service_account)" in text


def run_text(tmp_path: Path, parts: dict[str, Any]) -> str:
    with KubeAPI(directory=tmp_path, **parts) as api:
        return doctor_pod(api, f"payments/{POD}").stdout


def test_pod_predates_the_annotation(tmp_path):
    """The service account was annotated a day after the pod was created: never mutated."""
    parts = healthy(service_accounts=[annotated_sa(at="2025-06-02T08:30:00Z")],
                    pods=[app_pod(injected=None), *coredns()])
    checks, done, _ = run(tmp_path, parts)
    assert status(checks, "pod.restart") == ("fail", "POD_PREDATES_ANNOTATION")
    detail = checks["pod.restart"]["detail"]
    assert "2025-06-01T10:00:00Z" in detail and "2025-06-02T08:30:00Z by kubectl-annotate" in detail
    assert "kubectl rollout restart deployment/api -n payments" in checks["pod.restart"]["fix"]
    assert status(checks, "pod.injection") == ("fail", "NO_CREDENTIALS_INJECTED")
    assert done.returncode == 1


def test_pod_predates_a_changed_annotation(tmp_path):
    """The pod carries the role the annotation named when it was created."""
    parts = healthy(service_accounts=[annotated_sa(at="2025-06-03T12:00:00Z")],
                    pods=[app_pod(role=OLD_ROLE), *coredns()])
    checks, _, _ = run(tmp_path, parts)
    assert status(checks, "pod.restart") == ("fail", "POD_PREDATES_ANNOTATION")
    assert OLD_ROLE in checks["pod.restart"]["detail"] and ROLE in checks["pod.restart"]["detail"]


def test_webhook_missing(tmp_path):
    parts = healthy(webhooks=[], pods=[app_pod(injected=None), *coredns()])
    checks, done, _ = run(tmp_path, parts)
    assert status(checks, "cluster.webhook") == ("fail", "WEBHOOK_MISSING")
    assert status(checks, "pod.restart") == ("ok", None)  # the annotation predates the pod
    assert done.returncode == 1


def test_webhook_left_out_by_the_skip_label(tmp_path):
    parts = healthy(pods=[app_pod(injected=None, labels={"eks.amazonaws.com/skip-pod-identity-webhook": "true"}),
                          *coredns()])
    checks, _, _ = run(tmp_path, parts)
    assert status(checks, "cluster.webhook") == ("fail", "WEBHOOK_MISSING")
    assert "eks.amazonaws.com/skip-pod-identity-webhook" in checks["cluster.webhook"]["detail"]


def test_no_credentials_injected_though_everything_is_in_place(tmp_path):
    """Annotated before the pod, webhook present: the pod was created while the webhook did not
    answer (failurePolicy Ignore)."""
    parts = healthy(pods=[app_pod(injected=None), *coredns()])
    checks, _, _ = run(tmp_path, parts)
    assert status(checks, "pod.injection") == ("fail", "NO_CREDENTIALS_INJECTED")
    assert status(checks, "cluster.webhook") == ("ok", None)
    assert "failurePolicy Ignore" in checks["cluster.webhook"]["detail"]
    assert status(checks, "pod.service_account") == ("ok", None)


# -- the token -----------------------------------------------------------------------------------------


def test_token_audience_mismatch(tmp_path):
    parts = healthy(service_accounts=[annotated_sa(audience="sts.eu-west-1.amazonaws.com")])
    checks, _, _ = run(tmp_path, parts)
    assert status(checks, "pod.injection") == ("fail", "TOKEN_AUDIENCE_MISMATCH")
    assert "sts.eu-west-1.amazonaws.com" in checks["pod.injection"]["detail"]


def test_token_unreadable_for_the_containers_user(tmp_path):
    """A token volume of mode 0400 (root's) and an app running as uid 1000, a sidecar as root."""
    made = app_pod(containers=[{"name": "app", "image": "app:1", "securityContext": {"runAsUser": 1000}},
                               {"name": "proxy", "image": "envoy:1"}])
    made["spec"]["volumes"][0]["projected"]["defaultMode"] = 0o400
    checks, _, _ = run(tmp_path, healthy(pods=[made, *coredns()]))
    assert status(checks, "pod.token_access") == ("fail", "TOKEN_UNREADABLE")
    assert "app runs as uid 1000 and cannot read" in checks["pod.token_access"]["detail"]
    assert "fsGroup" in checks["pod.token_access"]["fix"]


def test_fs_group_makes_the_token_readable(tmp_path):
    made = app_pod(containers=[{"name": "app", "image": "app:1", "securityContext": {"runAsUser": 1000}},
                               {"name": "proxy", "image": "envoy:1"}], security_context={"fsGroup": 65534})
    made["spec"]["volumes"][0]["projected"]["defaultMode"] = 0o400
    made["spec"]["containers"][0]["securityContext"]["runAsGroup"] = 3000
    checks, _, _ = run(tmp_path, healthy(pods=[made, *coredns()]))
    assert status(checks, "pod.token_access") == ("ok", None), checks["pod.token_access"]["detail"]


# -- the Pod Identity agent and CoreDNS -------------------------------------------------------------------


def test_pod_identity_agent_missing(tmp_path):
    parts = healthy(service_accounts=[service_account("payments", "api")], daemonsets=[],
                    pods=[app_pod(injected="pod_identity"), *coredns()])
    checks, done, _ = run(tmp_path, parts)
    assert status(checks, "node.pod_identity_agent") == ("fail", "POD_IDENTITY_AGENT_MISSING")
    assert "No eks-pod-identity-agent DaemonSet" in checks["node.pod_identity_agent"]["detail"]
    assert done.returncode == 1


def test_pod_identity_agent_not_ready_on_the_node(tmp_path):
    daemonsets, agent_pods = agent(ready=False)
    parts = healthy(service_accounts=[service_account("payments", "api")], daemonsets=daemonsets,
                    pods=[app_pod(injected="pod_identity"), *coredns(), *agent_pods])
    checks, _, _ = run(tmp_path, parts)
    assert status(checks, "node.pod_identity_agent") == ("fail", "POD_IDENTITY_AGENT_MISSING")
    assert "not ready" in checks["node.pod_identity_agent"]["detail"]


def test_coredns_unavailable(tmp_path):
    pending = coredns(phase="Pending", ready=False,
                      conditions_message="0/3 nodes are available: 3 Insufficient cpu.")
    checks, done, _ = run(tmp_path, healthy(pods=[app_pod(), *pending]))
    assert status(checks, "cluster.coredns") == ("fail", "COREDNS_UNAVAILABLE")
    assert "Insufficient cpu" in checks["cluster.coredns"]["detail"]
    assert "kubectl get pods -n kube-system -l k8s-app=kube-dns -o wide" in checks["cluster.coredns"]["fix"]
    assert done.returncode == 1


def test_coredns_restarts_and_a_single_node_warn(tmp_path):
    restarting = [pod("kube-system", f"coredns-{i}", node=NODE, labels={"k8s-app": "kube-dns"}, restarts=4)
                  for i in range(2)]
    checks, _, _ = run(tmp_path, healthy(pods=[app_pod(), *restarting]))
    assert status(checks, "cluster.coredns") == ("warn", None)
    assert "all on one node" in checks["cluster.coredns"]["detail"] and "8 restarts" in checks["cluster.coredns"]["detail"]


# -- the trust policy, from the workstation ----------------------------------------------------------------


def test_trust_subject_mismatch_from_the_workstation(tmp_path):
    checks, done, _ = run(tmp_path, healthy(), "--iam",
                          str(iam_file(tmp_path, trust("system:serviceaccount:payments:web"))))
    assert status(checks, "trust.role") == ("fail", "TRUST_SUBJECT_MISMATCH")
    assert done.returncode == 1


def test_oidc_provider_missing_from_the_workstation(tmp_path):
    path = iam_file(tmp_path)
    document = json.loads(path.read_text())
    document["OpenIDConnectProviderList"] = []
    path.write_text(json.dumps(document))
    checks, _, _ = run(tmp_path, healthy(), "--iam", str(path))
    assert status(checks, "trust.role") == ("fail", "OIDC_PROVIDER_MISSING")


# -- what cannot be read -------------------------------------------------------------------------------------


def test_rbac_refusing_a_read_makes_the_run_incomplete(tmp_path):
    checks, done, _ = run(tmp_path, healthy(forbidden={"mutatingwebhookconfigurations"}), "--iam",
                          str(iam_file(tmp_path)))
    assert checks["cluster.webhook"]["status"] == "skipped"
    assert "forbidden" in checks["cluster.webhook"]["detail"]
    assert done.returncode == 3


def test_no_such_pod_is_an_input_error(tmp_path):
    with KubeAPI(directory=tmp_path, **healthy()) as api:
        done = doctor_pod(api, "payments/nope")
    assert done.returncode == 2
    assert done.stderr.strip() == "trailscan: error: kubectl context test-cluster: pod payments/nope not found" or \
        "pod payments/nope not found" in done.stderr
    assert done.stdout == ""


def test_a_cluster_out_of_reach_is_exit_3(tmp_path):
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"gone": closed_port_url()}, "gone")
    done = subprocess.run([sys.executable, "-m", "trailscan", "doctor", "pod", "payments/api", "--timeout", "1"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 3, done.stderr
    assert "cannot read pod payments/api" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("target", ["a/b/c/d", "payments/statefulset/db", "/api", "kube-system/"])
def test_bad_targets_are_usage_errors(tmp_path, target):
    with KubeAPI(directory=tmp_path, **healthy()) as api:
        done = doctor_pod(api, target)
    assert done.returncode == 2 and done.stderr.startswith("trailscan: error:")


# -- the probe ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


class Kubelet:
    """Plays the webhook and the kubelet for a created pod: mutates it for the service account's
    role, projects a token the tests mint, runs its container's command here with its env, and
    keeps its output as the pod's log."""

    def __init__(self, root: Path, moto: MotoServer, role: str | None) -> None:
        self.root, self.moto, self.role = root, moto, role
        self.ran: list[list[str]] = []

    def __call__(self, manifest: dict) -> tuple[dict, str]:
        if self.role:
            inject_irsa(manifest, self.role)
        container = manifest["spec"]["containers"][0]
        env = {item["name"]: item["value"] for item in container.get("env", [])}
        for mount in container.get("volumeMounts", []):
            host = self.root / mount["mountPath"].lstrip("/")
            (host / "token").parent.mkdir(parents=True, exist_ok=True)
            (host / "token").write_text(mint())
            env = {k: v.replace(mount["mountPath"], str(host)) for k, v in env.items()}
        env.update({"AWS_ENDPOINT_URL": self.moto.endpoint_url, "AWS_CONFIG_FILE": os.devnull,
                    "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true",
                    "PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
        command = [sys.executable, "-m", "trailscan", *container["args"]]
        self.ran.append(command)
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=self.root)
        phase = "Succeeded" if done.returncode == 0 else "Failed"
        return {"phase": phase, "containerStatuses": [{"name": "doctor", "state": {"terminated": {
            "exitCode": done.returncode}}}]}, done.stdout


def test_probe_runs_the_in_pod_doctor_and_is_deleted(tmp_path, moto):
    moto.reset()
    kubelet = Kubelet(tmp_path / "node", moto, ROLE.replace(ACCOUNT, "123456789012"))
    parts = healthy(on_create_pod=kubelet)
    with KubeAPI(directory=tmp_path, **parts) as api:
        done = doctor_pod(api, f"payments/{POD}", "--format", "json", "--probe", "--image",
                          "registry.example/trailscan:0.1.0", "--timeout", "2")
    document = json.loads(done.stdout)
    checks = {c["id"]: c for c in document["checks"]}
    assert checks["probe.run"]["status"] == "ok", checks["probe.run"]["detail"]
    assert checks["probe.credentials.chain"]["status"] == "ok", checks["probe.credentials.chain"]["detail"]
    assert checks["probe.identity.caller"]["status"] == "ok"
    assert checks["probe.token.web_identity.claims"]["status"] == "ok"
    [created] = api.created
    spec = created["spec"]
    assert spec["serviceAccountName"] == "api" and spec["nodeName"] == NODE and spec["restartPolicy"] == "Never"
    assert created["metadata"]["namespace"] == "payments"
    assert api.deleted == [f"payments/{created['metadata']['name']}"]
    assert "--service-account" in kubelet.ran[0] and "payments/api" in kubelet.ran[0]
    env_names = {item["name"] for item in spec["containers"][0]["env"]}
    assert "AWS_ROLE_ARN" in env_names  # injected by the webhook for the probe, not copied from the target
    assert done.returncode == 0, done.stdout


def test_probe_that_cannot_start_is_incomplete_and_still_deleted(tmp_path):
    def image_pull_fails(manifest: dict) -> tuple[dict, str]:
        return {"phase": "Pending", "containerStatuses": [{"name": "doctor", "state": {"waiting": {
            "reason": "ErrImagePull", "message": "pull access denied"}}}]}, ""

    with KubeAPI(directory=tmp_path, **healthy(on_create_pod=image_pull_fails)) as api:
        done = doctor_pod(api, f"payments/{POD}", "--format", "json", "--probe", "--image", "nope:1",
                          "--iam", str(iam_file(tmp_path)))
    checks = {c["id"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["probe.run"]["status"] == "skipped"
    assert "ErrImagePull" in checks["probe.run"]["detail"]
    assert len(api.deleted) == 1
    assert done.returncode == 3


def test_probe_dry_run_prints_the_manifest_and_creates_nothing(tmp_path):
    target = app_pod(security_context={"runAsUser": 1000, "fsGroup": 2000}, host_network=True)
    target["spec"]["containers"][0]["env"] = [{"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"},
                                              *target["spec"]["containers"][0]["env"]]
    with KubeAPI(directory=tmp_path, **healthy(pods=[target])) as api:
        done = doctor_pod(api, f"payments/{POD}", "--probe", "--dry-run", "--image", "trailscan:0.1.0",
                          "--endpoint", "https://ec2.eu-west-1.amazonaws.com")
    assert done.returncode == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    spec = manifest["spec"]
    assert spec["serviceAccountName"] == "api" and spec["hostNetwork"] is True
    assert spec["securityContext"] == {"runAsUser": 1000, "fsGroup": 2000}
    container = spec["containers"][0]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy.corp:3128" and env["AWS_REGION"] == "eu-west-1"
    assert "AWS_ROLE_ARN" not in env and "AWS_WEB_IDENTITY_TOKEN_FILE" not in env
    assert container["args"][:3] == ["doctor", "--format", "json"]
    assert "https://ec2.eu-west-1.amazonaws.com" in container["args"]
    assert not api.created and {r.method for r in api.requests} == {"GET"}


def test_probe_needs_an_image(tmp_path):
    with KubeAPI(directory=tmp_path, **healthy()) as api:
        done = doctor_pod(api, f"payments/{POD}", "--probe", env={"TRAILSCAN_IMAGE": ""})
    assert done.returncode == 2 and "--image" in done.stderr


def test_the_probe_manifest_copies_no_credentials():
    from trailscan.doctor.cluster import PodView
    from trailscan.doctor.pod import PodOptions
    from trailscan.doctor.probe import probe_manifest

    target = copy.deepcopy(app_pod())
    target["spec"]["containers"][0]["env"].append({"name": "AWS_ACCESS_KEY_ID", "value": "AKIAEXAMPLE"})
    manifest = probe_manifest(PodView.of(target), annotated_sa(), PodOptions(target="x", image="i"))
    names = {item["name"] for item in manifest["spec"]["containers"][0]["env"]}
    assert names == {"AWS_STS_REGIONAL_ENDPOINTS", "AWS_DEFAULT_REGION", "AWS_REGION"}


# -- --cluster: the EKS cluster, described live ---------------------------------------------------------


def test_the_cluster_described_live_gives_the_issuer(tmp_path, moto):
    """moto's EKS describes the cluster: its OIDC issuer, which the API server here does not
    announce, decides the trust check; the association check reads EKS's own answer."""
    moto.reset()
    session = moto.session("eu-west-1")
    role = session.client("iam").create_role(RoleName="eks-cluster", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    cluster = session.client("eks").create_cluster(name="prod", roleArn=role, resourcesVpcConfig={"subnetIds": []})
    issuer = cluster["cluster"]["identity"]["oidc"]["issuer"]
    host = issuer.removeprefix("https://")
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
    path = iam_file(tmp_path, {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{host}:sub": "system:serviceaccount:payments:api",
                                       f"{host}:aud": "sts.amazonaws.com"}}}]})
    document = json.loads(path.read_text())
    document["OpenIDConnectProviderList"] = [{"Arn": provider}]
    path.write_text(json.dumps(document))
    checks, done, _ = run(tmp_path, healthy(issuer=None), "--cluster", "prod", "--iam", str(path),
                          env=moto.environ("eu-west-1"))
    assert status(checks, "trust.role") == ("ok", None), checks["trust.role"]["detail"]
    assert issuer in checks["trust.role"]["detail"]
    # The tests' moto answers EKS Pod Identity (tests/support/moto_server.py): EKS says this
    # IRSA pod's service account has no association, which is what it should have.
    association = checks["eks.pod_identity_association"]
    assert association["status"] == "ok", association
    assert done.returncode == 0, done.stderr


def test_the_association_check_reads_what_eks_says():
    from trailscan.doctor.addons import check_association
    from trailscan.doctor.cluster import PodView
    from trailscan.inventory import PodIdentityAssociation

    found = PodIdentityAssociation("payments", "api", ROLE, "a-0123456789abcdef0")
    identity_pod = PodView.of(app_pod(injected="pod_identity"))
    ok = check_association(identity_pod, found, True, None, True, "prod")
    assert ok.status == "ok" and ROLE in ok.detail and "a-0123456789abcdef0" in ok.detail
    gone = check_association(identity_pod, None, True, None, True, "prod")
    assert gone.status == "warn" and "aws eks create-pod-identity-association" in gone.fix
    assert check_association(identity_pod, None, False, None, True, None).status == "skipped"


# -- what the cluster says is data, never terminal control ------------------------------------------------

RAW_CONTROL = __import__("re").compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_hostile_annotations_and_labels_reach_the_terminal_as_escapes(tmp_path):
    hostile_role = f"{OLD_ROLE}\x1b]0;owned\x07$(touch pwned)\u202e"
    made = app_pod(role=hostile_role, labels={"team": "pay\x1b[2Jments"})
    parts = healthy(pods=[made, *coredns()], service_accounts=[annotated_sa(at="2025-06-03T12:00:00Z")])
    with KubeAPI(directory=tmp_path, **parts) as api:
        text = doctor_pod(api, f"payments/{POD}")
        data = doctor_pod(api, f"payments/{POD}", "--format", "json")
    assert text.returncode == 1
    assert not RAW_CONTROL.search(text.stdout), repr(RAW_CONTROL.search(text.stdout))
    assert "\\x1b]0;owned\\x07" in text.stdout
    assert not RAW_CONTROL.search(data.stdout.replace("\n", ""))
    checks = {c["id"]: c for c in json.loads(data.stdout)["checks"]}
    assert hostile_role in checks["pod.restart"]["detail"]  # JSON keeps the data, escaped
