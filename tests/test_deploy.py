"""The nightly-report deployment (deploy/) and `trailscan iam-policy`.

deploy/ is checked as Kubernetes would read it: every manifest parses, the kustomization
builds with the real `kubectl kustomize` (offline), the CronJob has the fields a platform
team requires, and its command line is one trailscan accepts.

`trailscan iam-policy` is checked against what trailscan really calls: the demo's world is
seeded in moto (server mode, 127.0.0.1), then `since` (S3 source, live IAM and EKS
inventory), the report's upload to S3, trail discovery and the LookupEvents source run
through boto3 sessions whose ``before-parameter-build`` hook records every call.  Each
call must be allowed by the printed policy — action, resource and ``s3:prefix`` condition,
by a small evaluator of our own — and the policy may allow nothing the code never calls.
"""

from __future__ import annotations

import fnmatch
import json
import random
import re
import os
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from click.testing import CliRunner

from tests.support.lookup_server import LookupServer
from tests.support.moto_server import ACCESS_KEY, SECRET_KEY, MotoServer
from trailscan.cli import main
from trailscan.demo import ACCOUNT, CLUSTER, REGION, TRAIL_BUCKET, seed_world
from trailscan.pipeline import IngestRequest, InventoryRequest, investigate
from trailscan.findings import findings_document
from trailscan.generate import healthy_traffic, sample_failures
from trailscan.iam_policy import PolicyRequest, required_policy
from trailscan.model import utc_now
from trailscan.report import publish_report
from trailscan.sources.s3 import ingest_s3
from trailscan.store import Store
from trailscan.window import make_window

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
REPORTS_BUCKET = "acme-trailscan-reports"

# -- deploy/ ---------------------------------------------------------------------------------


def manifests() -> dict[str, list[dict]]:
    """Every YAML document of deploy/, by file name."""
    found = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        found[path.name] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return found


def objects(kind: str) -> list[dict]:
    return [doc for docs in manifests().values() for doc in docs if doc.get("kind") == kind]


def the(kind: str) -> dict:
    found = objects(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def settings() -> dict[str, str]:
    """The trailscan-settings ConfigMap the kustomization generates."""
    kustomization = the("Kustomization")
    generator = next(g for g in kustomization["configMapGenerator"] if g["name"] == "trailscan-settings")
    return dict(literal.split("=", 1) for literal in generator["literals"])


def test_every_manifest_parses_and_is_a_kubernetes_object():
    found = manifests()
    assert {"cronjob.yaml", "serviceaccount.yaml", "kustomization.yaml"} <= set(found)
    for name, docs in found.items():
        assert docs, f"{name} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{name}: {doc}"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], f"{name}: {doc['kind']} without a name"
    kustomization = the("Kustomization")
    listed = set(kustomization["resources"])
    assert listed == set(found) - {"kustomization.yaml"}, "every manifest is in the kustomization, and only those"


def test_serviceaccount_carries_the_irsa_annotation():
    account = the("ServiceAccount")
    assert account["metadata"]["name"] == "trailscan"
    assert ROLE_ARN.match(account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    binding = the("ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trailscan", "namespace": "trailscan"}]
    rules = the("ClusterRole")["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list"]}]


def test_cronjob_is_nightly_non_root_read_only_and_bounded():
    cronjob = the("CronJob")
    spec = cronjob["spec"]
    minute, hour, *rest = spec["schedule"].split()
    assert len(rest) == 3 and rest == ["*", "*", "*"] and minute.isdigit() and hour.isdigit()  # once a day
    assert spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == the("ServiceAccount")["metadata"]["name"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound])
    # The image is a placeholder the kustomization sets.
    images = {image["name"] for image in the("Kustomization")["images"]}
    assert container["image"].split(":")[0] in images
    # The store is on an emptyDir: the root file system is read-only.
    args = container["args"]
    db = Path(args[args.index("--db") + 1])
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[str(db.parent)]]
    assert "emptyDir" in volumes[mounts["/tmp"]]  # downloads and report staging


def test_cronjob_runs_the_nightly_report_command():
    container = the("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[:3] == ["report", "--since", "24h"]
    assert args[args.index("--to") + 1] == "$(REPORT_TO)"
    # Every $(VAR) is defined, and the settings are what the options expect.
    env = {item["name"]: item for item in container["env"]}
    for variable in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert variable in env, variable
        reference = env[variable].get("valueFrom", {}).get("configMapKeyRef")
        if reference:
            assert reference["name"] == "trailscan-settings" and reference["key"] in settings()
    assert re.fullmatch(r"s3://[a-z0-9.\-]+/\S*/", settings()["REPORT_TO"])
    # --kube-context names the context of the kubeconfig mounted at $KUBECONFIG.
    kubeconfig = yaml.safe_load(the("ConfigMap")["data"]["kubeconfig"])
    context = args[args.index("--kube-context") + 1]
    assert context in {c["name"] for c in kubeconfig["contexts"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "kubeconfig")
    assert env["KUBECONFIG"]["value"] == f"{mount['mountPath']}/kubeconfig"
    assert kubeconfig["users"][0]["user"]["tokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_cronjob_options_are_ones_trailscan_report_accepts():
    report = main.commands["report"]
    accepted = {opt for param in report.params for opt in param.opts}
    args = the("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    used = {arg for arg in args[1:] if arg.startswith("--")}
    assert used <= accepted, f"`trailscan report` does not accept {used - accepted}"


@pytest.mark.skipif(
    shutil.which("kubectl") is None and not os.environ.get("CI"),
    reason="kubectl is not installed (.ci/install-kubectl installs it; in CI this fails instead)",
)
def test_kustomization_builds_with_kubectl(tmp_path):
    built = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                            "ConfigMap", "CronJob"])
    namespaced = [d for d in docs if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"trailscan"}
    cronjob = next(d for d in docs if d["kind"] == "CronJob")
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    image = the("Kustomization")["images"][0]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    generated = next(d["metadata"]["name"] for d in docs if d["metadata"]["name"].startswith("trailscan-settings-"))
    refs = {e["valueFrom"]["configMapKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert refs == {generated}  # kustomize points the CronJob at the generated ConfigMap
    # The kubeconfig is one kubectl reads.
    config = tmp_path / "kubeconfig"
    config.write_text(the("ConfigMap")["data"]["kubeconfig"])
    contexts = subprocess.run(["kubectl", "--kubeconfig", str(config), "config", "get-contexts", "-o", "name"],
                              capture_output=True, text=True, timeout=60, check=False)
    assert contexts.returncode == 0 and contexts.stdout.split() == ["in-cluster"], contexts.stderr


# -- trailscan iam-policy: the command ----------------------------------------------------------------

# Actions that allow no resource-level permission: "*" is the only resource they take.
RESOURCE_STAR_OK = {"cloudtrail:DescribeTrails", "cloudtrail:LookupEvents", "iam:ListOpenIDConnectProviders",
                    "sts:GetCallerIdentity", "ec2:DescribeVpcEndpoints", "organizations:DescribeOrganization",
                    "organizations:ListRoots", "iam:GetRequestAuthorizationDetails"}


#: The buckets the demo's refused calls name: their bucket policies are read.
DEMO_BUCKETS = "partner-reports,acme-media-eu"

#: Policy-layer reads the demo's refusals never need (no key, queue, topic, repository, function or
#: endpoint is refused there; its account is in no organization; no message carries an authorization id).
NOT_IN_THE_DEMO = {"kms:GetKeyPolicy", "sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sns:GetTopicAttributes",
                   "ecr:GetRepositoryPolicy", "lambda:GetPolicy", "ec2:DescribeVpcEndpoints", "organizations:ListRoots",
                   "organizations:ListParents", "organizations:ListPoliciesForTarget", "organizations:DescribePolicy",
                   "iam:GetRequestAuthorizationDetails"}


def policy_from_cli(*args: str) -> tuple[dict, str]:
    result = CliRunner().invoke(main, ["iam-policy", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


@pytest.mark.parametrize("args", [
    ["--bucket", "acme-org-cloudtrail", "--cluster", "prod", "--report-to", "s3://acme-reports/nightly/"],
    ["--source", "lookup", "--cluster", "prod,staging"],
    ["--org-id", "o-7h2k9x4m1q", "--accounts", "111122223333", "--kms-key",
     "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"],
    ["--bucket", "s3://acme-org-cloudtrail/trails", "--offline"],
])
def test_policy_is_valid_json_with_no_broad_grants(args):
    document, _notes = policy_from_cli(*args)
    assert document["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in document["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            service, _, name = action.partition(":")
            assert service and name and "*" not in action and "?" not in action, action
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in resources:
            assert set(actions) <= RESOURCE_STAR_OK, statement
        for resource in resources:
            assert resource == "*" or resource.startswith("arn:aws:"), resource
            assert resource not in ("arn:aws:s3:::*", "arn:aws:s3:::*/*"), statement
    assert len(json.dumps(document, separators=(",", ":"))) < 6144  # fits a managed policy


def test_policy_notes_go_to_stderr_and_name_what_to_do():
    document, notes = policy_from_cli("--cluster", "prod")
    assert "TRAIL_BUCKET" in json.dumps(document) and "cloudtrail:DescribeTrails" in json.dumps(document)
    assert "--bucket" in notes and "--kms-key" in notes
    _, notes = policy_from_cli("--bucket", "b-u-c", "--report-to", "./reports")
    assert "local folder" in notes and "--cluster NAME" in notes


@pytest.mark.parametrize("args, message", [
    (["--bucket", "Not_A_Bucket"], "not an S3 bucket name"),
    (["--source", "lookup", "--bucket", "acme"], "apply to --source s3"),
    (["--accounts", "12345"], "not an AWS account id"),
    (["--kms-key", "alias/trail"], "expected a KMS key ARN"),
    (["--cluster", "prod/../x"], "not an EKS cluster name or ARN"),
    (["--report-to", "s3://Bad_Bucket/x/"], "not an S3 bucket name"),
])
def test_policy_rejects_bad_options_in_one_line(args, message):
    result = CliRunner().invoke(main, ["iam-policy", *args])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output + result.stderr
    assert result.stdout == ""


# -- trailscan iam-policy against what trailscan calls -------------------------------------------------


def iam_action(service: str, operation: str) -> str:
    """The IAM action an API operation is authorized as (S3's differ from their names)."""
    s3 = {"HeadBucket": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket",
          "GetObject": "s3:GetObject", "PutObject": "s3:PutObject", "HeadObject": "s3:GetObject"}
    if service == "s3":
        return s3.get(operation, f"s3:{operation}")
    if service == "iam-toolbox":  # signed for iam: the action is iam's (the service model's signingName)
        return f"iam:{operation}"
    return f"{service}:{operation}"


def call_resource(action: str, params: dict[str, Any], region: str) -> tuple[str, dict[str, str]]:
    """The resource ARN (and condition keys) an action is authorized against, as AWS documents them."""
    service = action.split(":")[0]
    # The policy layers' reads (trailscan.layers): the resource whose policy is read.
    if action == "s3:GetBucketPolicy":
        return f"arn:aws:s3:::{params['Bucket']}", {}
    if action == "kms:GetKeyPolicy":
        return params["KeyId"], {}
    if action == "sqs:GetQueueUrl":
        return f"arn:aws:sqs:{region}:{params.get('QueueOwnerAWSAccountId', ACCOUNT)}:{params['QueueName']}", {}
    if action == "sqs:GetQueueAttributes":
        owner, name = params["QueueUrl"].rstrip("/").split("/")[-2:]
        return f"arn:aws:sqs:{region}:{owner}:{name}", {}
    if action == "sns:GetTopicAttributes":
        return params["TopicArn"], {}
    if action in ("secretsmanager:GetResourcePolicy", "lambda:GetPolicy"):
        return params.get("SecretId") or params["FunctionName"], {}
    if action == "ecr:GetRepositoryPolicy":
        return f"arn:aws:ecr:{region}:{params['registryId']}:repository/{params['repositoryName']}", {}
    if action == "s3:ListBucket":
        context = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
        return f"arn:aws:s3:::{params['Bucket']}", context
    if service == "s3":
        return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}", {}
    if action in ("iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:ListAttachedRolePolicies"):
        return f"arn:aws:iam::{ACCOUNT}:role/{params['RoleName']}", {}
    if action in ("iam:GetPolicy", "iam:GetPolicyVersion"):
        return params["PolicyArn"], {}
    if action == "iam:GetOpenIDConnectProvider":
        return params["OpenIDConnectProviderArn"], {}
    if action == "eks:DescribeCluster":
        return f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{params['name']}", {}
    if action in ("eks:ListNodegroups", "eks:ListPodIdentityAssociations"):
        return f"arn:aws:eks:{region}:{ACCOUNT}:cluster/{params['clusterName']}", {}
    if action == "eks:DescribeNodegroup":
        return (f"arn:aws:eks:{region}:{ACCOUNT}:nodegroup/{params['clusterName']}/{params['nodegroupName']}/"
                "0ac1c1b5-1b6e-4bd3-a8a6-1f0b6c8e2f11"), {}
    if action == "eks:DescribePodIdentityAssociation":
        return f"arn:aws:eks:{region}:{ACCOUNT}:podidentityassociation/{params['clusterName']}/{params['associationId']}", {}
    return "*", {}


def allows(document: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    """Whether one Allow statement covers the call: action, resource (IAM wildcards: * and ?,
    across '/') and the conditions this policy uses."""
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action not in actions or not any(fnmatch.fnmatchcase(resource, r) for r in resources):
            continue
        held = True
        for operator, keys in statement.get("Condition", {}).items():
            for key, patterns in keys.items():
                patterns = patterns if isinstance(patterns, list) else [patterns]
                value = context.get(key)
                if value is None:
                    held &= operator.endswith("IfExists")
                else:
                    assert operator.startswith("StringLike"), operator
                    held &= any(fnmatch.fnmatchcase(value, p) for p in patterns)
        if held:
            return True
    return False


class Calls:
    """Every API call made through a session: ``(service, operation, params, region)``."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str, dict, str]] = []

    def watch(self, session: boto3.Session) -> boto3.Session:
        def record(params: dict, model: Any, context: dict | None = None, **_: Any) -> None:
            if (context or {}).get("is_presign_request"):
                return  # a presigned URL is computed, not sent
            region = (context or {}).get("client_region") or session.region_name
            self.made.append((model.service_model.endpoint_prefix, model.name, dict(params), region))

        session.events.register("before-parameter-build", record)
        return session

    def downloads(self, moto: MotoServer, bucket: str, since: int) -> int:
        """Add the objects of ``bucket`` the server was asked for by the AWS Common Runtime
        (trailscan's downloader, which botocore hooks do not see); returns how many."""
        found = [key for key, request in moto.object_gets(bucket, since) if not request.user_agent.startswith("Boto3/")]
        self.made.extend(("s3", "GetObject", {"Bucket": bucket, "Key": key}, REGION) for key in found)
        return len(found)

    @property
    def actions(self) -> set[str]:
        return {iam_action(service, operation) for service, operation, _, _ in self.made}

    def check(self, document: dict) -> None:
        for service, operation, params, region in self.made:
            action = iam_action(service, operation)
            resource, context = call_resource(action, params, region or REGION)
            assert allows(document, action, resource, context), (
                f"the policy does not allow {action} on {resource} {context}:\n{json.dumps(document, indent=2)}"
            )


def split_session(moto: MotoServer, cloudtrail_url: str, folder: Path) -> boto3.Session:
    """A session whose CloudTrail is the loopback LookupEvents server and everything else moto,
    by standard AWS configuration (a services section)."""
    config = folder / "aws-config-split"
    config.write_text(
        "[profile split]\n"
        f"endpoint_url = {moto.endpoint_url}\n"
        f"region = {REGION}\n"
        f"aws_access_key_id = {ACCESS_KEY}\n"
        f"aws_secret_access_key = {SECRET_KEY}\n"
        "services = split-services\n"
        "[services split-services]\n"
        "cloudtrail =\n"
        f"  endpoint_url = {cloudtrail_url}\n"
    )
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(config))
    core.set_config_variable("credentials_file", str(folder / "absent-credentials"))
    core.set_config_variable("profile", "split")
    return boto3.Session(botocore_session=core)


@pytest.fixture(scope="module")
def world(tmp_path_factory, moto_module):
    """The demo's account, seeded in moto (server mode), with a bucket for reports."""
    folder = tmp_path_factory.mktemp("iam-policy")
    now = utc_now().replace(microsecond=0)
    seeding = moto_module.session(REGION)
    seeded = seed_world(seeding, folder, now=now, healthy_events=300)
    seeding.client("s3").create_bucket(
        Bucket=REPORTS_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return {"moto": moto_module, "folder": folder, "now": now, "service_accounts": str(seeded.service_accounts)}


def test_policy_covers_every_call_of_since_and_the_nightly_report(world):
    """`trailscan since 24h --bucket … --cluster …` and `report --to s3://…`: the S3 source, live
    IAM, EKS, and the upload, each call allowed by `iam-policy --bucket --cluster --report-to`."""
    calls = Calls()
    session = calls.watch(world["moto"].session(REGION))
    since = len(world["moto"].requests)
    window = make_window("24h", now=world["now"])
    with Store.open(":memory:") as store:
        report = investigate(
            store, window=window, session=session, ingest=IngestRequest(bucket=TRAIL_BUCKET),
            inventory=InventoryRequest(service_account_files=(world["service_accounts"],), clusters=(CLUSTER,)),
        )
        assert report.complete and len({f.cause for f in report.findings}) >= 8
        publish_report(store, findings_document(report, world["now"]), destination=f"s3://{REPORTS_BUCKET}/nightly/",
                       session=session, now=world["now"])
    assert calls.downloads(world["moto"], TRAIL_BUCKET, since) > 0
    # The workloads' buckets whose policies refused calls name (the demo's).
    document, _ = policy_from_cli("--bucket", TRAIL_BUCKET, "--cluster", CLUSTER,
                                  "--report-to", f"s3://{REPORTS_BUCKET}/nightly/", "--policy-buckets", DEMO_BUCKETS)
    calls.check(document)
    policy = required_policy(PolicyRequest(bucket=TRAIL_BUCKET, clusters=(CLUSTER,),
                                           report_to=f"s3://{REPORTS_BUCKET}/nightly/",
                                           policy_buckets=tuple(DEMO_BUCKETS.split(","))))
    # Least privilege both ways: nothing allowed that the run did not need (the demo's layer
    # gives moto the EKS Pod Identity API, so the seeded association is described too), except
    # the policy layers the demo's refusals do not name (tests/test_layers.py reads each against
    # moto): its account is in no organization, so no path or SCP is read.
    assert policy.actions - calls.actions == NOT_IN_THE_DEMO
    assert {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "iam:GetRole", "eks:DescribeNodegroup",
            "eks:DescribePodIdentityAssociation"} <= calls.actions


def test_policy_covers_trail_discovery(world):
    """Without --bucket, the trail is found with describe-trails: `iam-policy` without --bucket
    allows that, and the bucket it names is a placeholder to replace."""
    calls = Calls()
    session = calls.watch(world["moto"].session(REGION))
    since = len(world["moto"].requests)
    with Store.open(":memory:") as store:
        _, coverages = ingest_s3(store, session, window=make_window("24h", now=world["now"]))
    assert coverages and {c.status for c in coverages} == {"complete"}
    assert calls.downloads(world["moto"], TRAIL_BUCKET, since) > 0
    assert "cloudtrail:DescribeTrails" in calls.actions
    document, _ = policy_from_cli("--cluster", CLUSTER)
    placeholder = json.loads(json.dumps(document).replace("TRAIL_BUCKET", TRAIL_BUCKET))
    calls.check(placeholder)


def test_policy_covers_the_lookup_source(world):
    """`trailscan since 24h --source lookup --cluster …`: LookupEvents (against the loopback
    server) and the live inventory, each call allowed by `iam-policy --source lookup`."""
    now = world["now"]
    rng = random.Random(3)
    with LookupServer(default_account=ACCOUNT, rate=200, burst=200) as server:
        records = list(healthy_traffic(rng, count=120, start=now - timedelta(hours=20), end=now - timedelta(minutes=5),
                                       accounts=[ACCOUNT], regions=[REGION]))
        records += list(sample_failures(rng, start=now - timedelta(hours=20), end=now - timedelta(minutes=5),
                                        account=ACCOUNT, region=REGION))
        server.add_events(REGION, records, account=ACCOUNT)
        server.add_events("us-east-1", [], account=ACCOUNT)
        calls = Calls()
        session = calls.watch(split_session(world["moto"], server.endpoint_url, world["folder"]))
        with Store.open(":memory:") as store:
            report = investigate(
                store, window=make_window("24h", now=now), session=session,
                ingest=IngestRequest(source="lookup", regions=(REGION,)),
                inventory=InventoryRequest(service_account_files=(world["service_accounts"],), clusters=(CLUSTER,)),
            )
        assert report.findings
    assert "cloudtrail:LookupEvents" in calls.actions
    document, _ = policy_from_cli("--source", "lookup", "--cluster", CLUSTER)
    calls.check(document)
    assert not any(a.startswith("s3:") for a in required_policy(PolicyRequest(source="lookup")).actions)
