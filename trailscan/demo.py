"""``trailscan demo``: the on-call path, end to end, against a simulated AWS account.

No AWS account and no network beyond the loopback interface: moto, started by the
demo, serves S3, IAM, STS, EKS and CloudTrail on ``127.0.0.1``; boto3 talks HTTP to it
as it would to AWS, so the real code runs: botocore's serialisers, paginators and
retries, the S3 source's delimiter walk and parallel downloads, the live IAM and EKS
inventory.

What is seeded (the story the findings tell) is one account running the EKS cluster
``shop-prod`` in eu-west-1, part of an AWS Organization whose organization trail
delivers to ``acme-org-cloudtrail`` (``AWSLogs/o-…/ACCOUNT/CloudTrail/REGION/…``, a
file per account and region every five minutes, with the hourly digest files beside
it) for two accounts and two regions: thousands of healthy calls, and the workloads below, each broken the way clusters break
(:data:`SCENARIOS`).  Then it runs what ``trailscan since 24h --bucket
acme-org-cloudtrail --service-accounts shop-prod=FILE --cluster shop-prod`` runs
(:func:`trailscan.pipeline.investigate`) and publishes the report to a local folder
(:func:`trailscan.report.publish_findings`).

The user's own AWS configuration is never read nor changed: the demo's
``boto3.Session`` carries its own credentials, region and endpoint, and points at an
empty config file (:func:`loopback_session`).  No environment variable is set.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from trailscan.errors import TrailscanError, UsageError
from trailscan.findings import FindingsReport
from trailscan.generate import (
    RoleSession,
    access_key_id,
    api_call,
    delivery_files,
    digest_files,
    healthy_traffic,
    iam_user_identity,
    pod_identity_assume_role,
    web_identity_call,
)
from trailscan.model import ProgressFn, utc_now
from trailscan.pipeline import IngestRequest, InventoryRequest, investigate
from trailscan.report import ReportLocation, publish_findings
from trailscan.store import Store
from trailscan.window import make_window

ACCOUNT = "123456789012"  # moto's account: the one the cluster runs in, and the session reads
MEMBER_ACCOUNT = "210987654321"  # another member of the organization: healthy traffic, in eu-west-1 only
ORG_ID = "o-7h2k9x4m1q"
REGION = "eu-west-1"  # the cluster's region
REGIONS = (REGION, "us-east-1")  # us-east-1 also records calls to the global STS endpoint
CLUSTER = "shop-prod"
TRAIL = "org-trail"
TRAIL_BUCKET = "acme-org-cloudtrail"
DEFAULT_OUT = "trailscan-demo"
SINCE = "24h"
#: Healthy calls seeded over the window, across both accounts and regions.
HEALTHY_EVENTS = 6000
#: An issuer id as EKS writes them; the clusters this account ran before ``shop-prod``.
OLD_ISSUER_ID = "0DDC1A57E2B0A3D5C1F0E9D8C7B6A594"

BOTO3 = "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210 md/arch#x86_64 lang/python#3.11.8 Botocore/1.34.69"
# Boto3 1.9.100 predates IRSA support (1.9.220): the SDK never reads the web-identity token.
OLD_BOTO3 = "Boto3/1.9.100 Python/3.7.3 Linux/4.14.133-113.105.amzn2.x86_64 Botocore/1.12.100"
JAVA_V1 = "aws-sdk-java/1.12.261 Linux/5.10.210 OpenJDK_64-Bit_Server_VM/11.0.22+7-LTS java/11.0.22 vendor/Amazon.com_Inc."
AWS_CLI = "aws-cli/2.22.4 md/awscrt#0.22.0 ua/2.0 os/macos#24.1.0 md/arch#arm64 lang/python#3.12.6 cmd/iam.update-assume-role-policy"
GO_V2 = "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.6"
EC2_SILENT = "You are not authorized to perform this operation."


@dataclass(frozen=True)
class DemoRun:
    """What :func:`run_demo` did: the findings, where the report went, and what was seeded."""

    report: FindingsReport
    location: ReportLocation
    command: str  # the `trailscan since` command line the demo ran the equivalent of
    replay: str  # the `trailscan findings` command that replays the demo from the files it kept
    events: int  # records seeded in the trail
    log_files: int
    digest_files: int
    workloads: tuple[str, ...]  # the broken workloads, as ``namespace/service-account: story``
    seconds: float


def run_demo(
    *,
    out: str = DEFAULT_OUT,
    db: str | None = None,
    healthy_events: int = HEALTHY_EVENTS,
    seed: int = 7,
    progress: ProgressFn | None = None,
) -> DemoRun:
    """Seed a simulated AWS account with a broken EKS cluster, run ``trailscan since 24h``
    on it and publish the HTML report to ``out`` (a local folder).

    ``db``: the DuckDB store (default: ``OUT/demo.duckdb``).  Beside the store the demo
    keeps what its inventory read — ``serviceaccounts.json`` and ``iam.json`` (IAM's
    authorization details with the OIDC providers) — so ``DemoRun.replay``, a
    ``trailscan findings`` command, explains the same window again without moto.
    Raises :class:`UsageError` when moto (the ``demo`` extra) is not installed.
    """
    started = time.monotonic()
    now = utc_now().replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="trailscan-demo-") as scratch, loopback_aws(Path(scratch) / "moto.log") as endpoint:
        folder = Path(scratch)
        session = loopback_session(endpoint, REGION, folder)
        try:
            world = seed_world(session, folder, now=now, healthy_events=healthy_events, seed=seed, progress=progress)
        except (ClientError, BotoCoreError) as exc:
            lines = (folder / "moto.log").read_text(errors="replace").strip().splitlines()
            raise TrailscanError(
                f"the simulated AWS (moto) failed while the demo was seeded: {_first_line(exc)}"
                + (f"; moto says: {lines[-1]}" if lines else "")
            ) from None
        # What `trailscan since 24h --bucket … --service-accounts shop-prod=… --cluster …` builds from its options.
        ingest = IngestRequest(bucket=TRAIL_BUCKET)
        inventory = InventoryRequest(service_account_files=(f"{CLUSTER}={world.service_accounts}",), clusters=(CLUSTER,))
        store_path = Path(db) if db else Path(out) / "demo.duckdb"
        store_path.parent.mkdir(parents=True, exist_ok=True)
        kept = store_path.parent
        with Store.open(str(store_path)) as store:
            window = make_window(SINCE, now=now)
            report = investigate(
                store, window=window, inventory=inventory, ingest=ingest, session=session, progress=progress,
            )
            location = publish_findings(store, report, window=window, destination=out, now=now)
        shutil.copyfile(world.service_accounts, kept / "serviceaccounts.json")
        (kept / "iam.json").write_text(json.dumps(iam_snapshot(session), indent=1, default=str))
        # Without EKS to describe, the service-account file is tagged with the cluster's issuer.
        issuer = session.client("eks").describe_cluster(name=CLUSTER)["cluster"]["identity"]["oidc"]["issuer"]
        issuer = issuer.removeprefix("https://")
    replay = (f"trailscan findings --db {store_path} --since {window.start.strftime('%Y-%m-%dT%H:%M:%SZ')} "
              f"--until {window.end.strftime('%Y-%m-%dT%H:%M:%SZ')} --service-accounts "
              f"{issuer}={kept / 'serviceaccounts.json'} --iam {kept / 'iam.json'} --offline")
    return DemoRun(
        report=report,
        location=location,
        command=f"trailscan since {SINCE} --bucket {TRAIL_BUCKET} --service-accounts {CLUSTER}=serviceaccounts.json "
        f"--cluster {CLUSTER}",
        events=world.events,
        log_files=world.log_files,
        digest_files=world.digest_files,
        replay=replay,
        workloads=tuple(world.stories),
        seconds=time.monotonic() - started,
    )


def iam_snapshot(session: boto3.Session) -> dict[str, Any]:
    """``aws iam get-account-authorization-details`` with ``OpenIDConnectProviderList``
    added (each provider's ``get-open-id-connect-provider`` fields): the ``--iam`` file
    :func:`trailscan.inventory.load_iam_file` reads."""
    iam = session.client("iam")
    document: dict[str, Any] = {"RoleDetailList": [], "Policies": [], "UserDetailList": [], "GroupDetailList": []}
    for page in iam.get_paginator("get_account_authorization_details").paginate():
        for key in document:
            document[key] += page.get(key, [])
    for role in document["RoleDetailList"]:  # moto leaves the boundary out of this answer
        if "PermissionsBoundary" not in role:
            boundary = iam.get_role(RoleName=role["RoleName"])["Role"].get("PermissionsBoundary")
            if boundary:
                role["PermissionsBoundary"] = boundary
    providers = []
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        detail = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])
        providers.append({"Arn": entry["Arn"], "Url": detail.get("Url", ""),
                          "ClientIDList": detail.get("ClientIDList", []),
                          "ThumbprintList": detail.get("ThumbprintList", [])})
    document["OpenIDConnectProviderList"] = providers
    return document


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --------------------------------------------------------------------------
# The simulated AWS: moto on 127.0.0.1, and a session that reaches only it
# --------------------------------------------------------------------------


@contextmanager
def loopback_aws(log: Path) -> Iterator[str]:
    """moto in server mode on ``127.0.0.1`` and an ephemeral port; yields its endpoint URL.

    The server runs in a child process, which stops when this context exits (or this
    process dies): in this process it would share one interpreter lock with trailscan
    and make every request wait for it.  Its own log goes to ``log``.
    """
    try:
        import moto.server  # noqa: F401  (fail here, with the hint, rather than in the child)
    except ImportError:
        raise UsageError(
            "trailscan demo needs moto, which simulates AWS on 127.0.0.1",
            "pip install 'trailscan[demo]'",
        ) from None
    # moto makes boto3 sessions of its own: the user's AWS configuration (a profile it
    # cannot find, an endpoint, a proxy) and moto settings (another account id) stay out.
    environment = {
        name: value for name, value in os.environ.items()
        if not name.upper().startswith(("AWS_", "MOTO_", "BOTO_")) and name.upper() not in _PROXY_VARIABLES
    }
    environment.update(
        AWS_CONFIG_FILE=str(log.with_name("moto-aws-config")),
        AWS_SHARED_CREDENTIALS_FILE=str(log.with_name("moto-aws-credentials")),
        AWS_EC2_METADATA_DISABLED="true",
    )
    with open(log, "wb") as errors:
        child = subprocess.Popen(
            [sys.executable, "-c", "from trailscan.demo import serve_moto; serve_moto()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=environment,
        )
    assert child.stdin is not None and child.stdout is not None
    try:
        line = child.stdout.readline().decode().strip()
        if not line.isdigit():
            lines = log.read_text(errors="replace").strip().splitlines()
            raise UsageError(
                "the simulated AWS (moto) failed to start" + (f": {lines[-1]}" if lines else ""),
                "check that `python -m moto.server --help` works",
            )
        yield f"http://127.0.0.1:{line}"
    finally:
        child.stdin.close()  # the child sees end of input and stops its server
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        child.stdout.close()


def serve_moto() -> None:
    """The child process of :func:`loopback_aws`: serve moto on 127.0.0.1, behind
    :class:`PodIdentityLayer`, print the port, and stop at the end of standard input."""
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # it logs every request at INFO
    app = PodIdentityLayer(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        print(server.server_address[1], flush=True)
        sys.stdin.read()
    finally:
        server.shutdown()
        thread.join()


_POD_IDENTITY_PATH = re.compile(r"/clusters/(?P<cluster>[^/]+)/pod-identity-associations(?:/(?P<id>[^/]+))?/?")
#: The credential scope of a SigV4 ``Authorization`` header: ``…/DATE/REGION/SERVICE/aws4_request``.
_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/(?P<region>[^/,]+)/(?P<service>[^/,]+)/aws4_request")


class PodIdentityLayer:
    """EKS Pod Identity associations in front of moto, which implements none (moto 5.2
    answers HTTP 404, and the demo's inventory said "Pod Identity … incomplete").

    A WSGI layer answering botocore's REST-JSON ``CreatePodIdentityAssociation`` (``POST
    /clusters/{name}/pod-identity-associations``), ``ListPodIdentityAssociations`` (``GET``
    the same, with the ``namespace``/``serviceAccount`` filters and ``maxResults``/
    ``nextToken`` paging) and ``DescribePodIdentityAssociation`` (``GET …/{associationId}``)
    for the clusters moto holds (asked with moto's own ``DescribeCluster``), from the
    associations created through it, until moto is reset (``/moto-api/reset``); every other
    request goes to moto untouched.
    """

    def __init__(self, app: Callable[..., Any], *, account: str = ACCOUNT) -> None:
        self.app = app
        self.account = account
        self._lock = threading.Lock()
        #: (region, cluster) → association id → association, in creation order.
        self._associations: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/moto-api/reset":  # moto forgets everything: so does this
            with self._lock:
                self._associations.clear()
            return self.app(environ, start_response)
        path = _POD_IDENTITY_PATH.fullmatch(environ.get("PATH_INFO") or "")
        scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION") or "")
        method = environ.get("REQUEST_METHOD", "GET")
        if not path or not scope or scope["service"] != "eks" or (method, bool(path["id"])) not in _ANSWERED:
            return self.app(environ, start_response)
        cluster = unquote(path["cluster"])
        if not self._cluster_exists(environ, cluster):
            return _json_error(start_response, "404 Not Found", "ResourceNotFoundException",
                               f"No cluster found for name: {cluster}.")
        key = (scope["region"], cluster)
        if path["id"]:
            return self._describe(start_response, key, unquote(path["id"]))
        if method == "POST":
            return self._create(environ, start_response, key)
        return self._list(environ, start_response, key)

    def _create(self, environ: dict[str, Any], start_response: Callable[..., Any], key: tuple[str, str]) -> Any:
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(size) or b"{}")
        except (ValueError, TypeError):
            return _json_error(start_response, "400 Bad Request", "InvalidRequestException", "the body is not JSON")
        missing = [name for name in ("namespace", "serviceAccount", "roleArn") if not body.get(name)]
        if missing:
            return _json_error(start_response, "400 Bad Request", "InvalidParameterException",
                               f"{missing[0]} must be specified")
        region, cluster = key
        with self._lock:
            held = self._associations.setdefault(key, {})
            if any((a["namespace"], a["serviceAccount"]) == (body["namespace"], body["serviceAccount"])
                   for a in held.values()):
                return _json_error(start_response, "409 Conflict", "ResourceInUseException",
                                   "Association already exists for this namespace and service account")
            association_id = "a-" + "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=17))
            now = time.time()
            association = {
                "clusterName": cluster,
                "namespace": body["namespace"],
                "serviceAccount": body["serviceAccount"],
                "roleArn": body["roleArn"],
                "associationArn": f"arn:aws:eks:{region}:{self.account}:podidentityassociation/{cluster}/{association_id}",
                "associationId": association_id,
                "tags": body.get("tags") or {},
                "createdAt": now,
                "modifiedAt": now,
                "disableSessionTags": bool(body.get("disableSessionTags", False)),
                **({"targetRoleArn": body["targetRoleArn"]} if body.get("targetRoleArn") else {}),
            }
            held[association_id] = association
        return _json(start_response, {"association": association})

    def _list(self, environ: dict[str, Any], start_response: Callable[..., Any], key: tuple[str, str]) -> Any:
        query = parse_qs(environ.get("QUERY_STRING") or "")
        namespace, account = query.get("namespace", [None])[0], query.get("serviceAccount", [None])[0]
        try:
            size = min(max(int(query.get("maxResults", ["100"])[0]), 1), 100)
            start = int(query.get("nextToken", ["0"])[0])
        except ValueError:
            return _json_error(start_response, "400 Bad Request", "InvalidParameterException",
                               "maxResults and nextToken must be numbers")
        with self._lock:
            matching = [
                {name: a[name] for name in ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId")}
                for a in self._associations.get(key, {}).values()
                if (namespace is None or a["namespace"] == namespace) and (account is None or a["serviceAccount"] == account)
            ]
        page = matching[start : start + size]
        following = start + size if start + size < len(matching) else None
        return _json(start_response, {"associations": page, **({"nextToken": str(following)} if following else {})})

    def _describe(self, start_response: Callable[..., Any], key: tuple[str, str], association_id: str) -> Any:
        with self._lock:
            association = self._associations.get(key, {}).get(association_id)
        if association is None:
            return _json_error(start_response, "404 Not Found", "ResourceNotFoundException",
                               f"No Pod Identity Association found with id: {association_id}.")
        return _json(start_response, {"association": association})

    def _cluster_exists(self, environ: dict[str, Any], cluster: str) -> bool:
        """Whether moto holds *cluster*: its answer to ``DescribeCluster`` (same headers)."""
        path = f"/clusters/{quote(cluster, safe='')}"
        asked = {name: value for name, value in environ.items() if not name.startswith("werkzeug.")}
        asked.update({
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "REQUEST_URI": path,  # what moto routes on, before PATH_INFO
            "RAW_URI": path,
            "QUERY_STRING": "",
            "CONTENT_LENGTH": "0",
            "wsgi.input": io.BytesIO(b""),
        })
        asked.pop("CONTENT_TYPE", None)
        status: list[str] = []
        answer = self.app(asked, lambda line, headers, exc_info=None: status.append(line))
        try:
            for _ in answer:
                pass
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        return bool(status) and status[0].startswith("200")


#: (method, with an association id) of the requests :class:`PodIdentityLayer` answers.
_ANSWERED = {("POST", False), ("GET", False), ("GET", True)}


def _json(start_response: Callable[..., Any], document: dict[str, Any], status: str = "200 OK") -> list[bytes]:
    body = json.dumps(document).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _json_error(start_response: Callable[..., Any], status: str, code: str, message: str) -> list[bytes]:
    body = json.dumps({"message": message}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("x-amzn-ErrorType", code)])
    return [body]


_PROXY_VARIABLES = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}


class _LoopbackSession(boto3.Session):
    """A session whose every client talks to one endpoint, directly (never through an
    ``HTTP(S)_PROXY`` of the environment, which would not reach 127.0.0.1)."""

    def __init__(self, endpoint_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint_url = endpoint_url

    def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # An explicit endpoint_url wins over AWS_ENDPOINT_URL* and config files.
        kwargs["endpoint_url"] = self.endpoint_url
        config = kwargs.get("config")
        direct = Config(proxies={})
        kwargs["config"] = config.merge(direct) if config is not None else direct
        return super().client(*args, **kwargs)


def loopback_session(endpoint_url: str, region: str, folder: Path) -> boto3.Session:
    """A ``boto3.Session`` for the simulated account at ``endpoint_url`` that ignores the
    user's AWS configuration: its own profile in an otherwise empty config file under
    ``folder`` (so ``AWS_PROFILE``, ``~/.aws/config`` and their endpoints do not apply),
    fixed fake credentials, and the endpoint passed to every client it makes."""
    config = folder / "aws-config"
    config.write_text(f"[profile trailscan-demo]\nregion = {region}\n")
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(config))
    core.set_config_variable("credentials_file", str(folder / "no-credentials"))
    core.set_config_variable("profile", "trailscan-demo")
    core.set_config_variable("use_fips_endpoint", False)
    core.set_config_variable("use_dualstack_endpoint", False)
    return _LoopbackSession(
        endpoint_url,
        botocore_session=core,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
        region_name=region,
    )


# --------------------------------------------------------------------------
# The seeded world
# --------------------------------------------------------------------------


@dataclass
class SeededWorld:
    """What :func:`seed_world` left in the simulated account."""

    service_accounts: Path  # `kubectl get serviceaccounts -A -o json`, saved
    events: int = 0
    log_files: int = 0
    digest_files: int = 0
    stories: list[str] = field(default_factory=list)


def _document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class World:
    """The simulated account while it is being seeded: IAM and EKS through boto3, the
    cluster's service accounts, and the CloudTrail records of the last 24 hours.

    The demo seeds ``shop-prod`` with it (:func:`seed_world`); tests/test_explain.py builds a
    cluster per SPEC §7 cause with it, in moto as here.
    """

    def __init__(self, session: boto3.Session, *, now: datetime, rng: random.Random) -> None:
        self.session = session
        self.iam = session.client("iam")
        self.eks = session.client("eks")
        self.now = now
        self.rng = rng
        self.records: list[dict] = []
        self.service_accounts: list[dict] = []
        self.stories: list[str] = []
        self.role_ids: dict[str, str] = {}
        self.issuer = ""
        self.provider_arn = ""
        self.old_provider_arn = (
            f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/{OLD_ISSUER_ID}"
        )
        self.node_role_arn = ""

    # -- IAM ---------------------------------------------------------------------------

    def role(self, name: str, trust: str, inline: dict[str, str] | None = None, *, boundary: str | None = None) -> str:
        extra = {"PermissionsBoundary": boundary} if boundary else {}
        role = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust, **extra)["Role"]
        for policy_name, document in (inline or {}).items():
            self.iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=document)
        self.role_ids[role["Arn"]] = role["RoleId"]
        return role["Arn"]

    def irsa_trust(self, namespace: str, name: str, *, provider: str | None = None, sub: str | None = None,
                   aud: str = "sts.amazonaws.com", action: str = "sts:AssumeRoleWithWebIdentity") -> str:
        """The trust policy `eksctl create iamserviceaccount` writes, with what can be got wrong."""
        provider = provider or self.provider_arn
        issuer = provider.split(":oidc-provider/", 1)[1]
        return _document({
            "Effect": "Allow",
            "Principal": {"Federated": provider},
            "Action": action,
            "Condition": {"StringEquals": {
                f"{issuer}:sub": sub or f"system:serviceaccount:{namespace}:{name}",
                f"{issuer}:aud": aud,
            }},
        })

    def irsa_role(self, name: str, namespace: str, sa: str, inline: dict[str, str] | None = None, **trust: Any) -> str:
        boundary = trust.pop("boundary", None)
        return self.role(name, self.irsa_trust(namespace, sa, **trust), inline, boundary=boundary)

    # -- EKS ---------------------------------------------------------------------------

    def cluster(self, name: str, *, node_policy: dict[str, str], node_role: str | None = None,
                subnets: tuple[str, ...] = ("subnet-0a1b2c3d4e5f60718", "subnet-0f1e2d3c4b5a69788"),
                version: str | None = None, oidc_provider: bool = True,
                background: ThreadPoolExecutor | None = None, **node_group: Any) -> Future | None:
        """An EKS cluster and its role; the IAM OIDC provider of its issuer (unless
        ``oidc_provider`` is false: nobody ran ``eksctl utils associate-iam-oidc-provider``)
        and that of the cluster it replaced; and the node group ``general``, whose role
        (``node_role``, by default ``NAME-node-role``) has the inline ``node_policy``.

        The node group is created in ``background`` when given (moto takes seconds over it),
        and its future returned; otherwise before this returns.  ``node_group``: more
        ``create_nodegroup`` parameters.
        """
        cluster_role = self.role(f"{name}-cluster", _document(
            {"Effect": "Allow", "Principal": {"Service": "eks.amazonaws.com"}, "Action": "sts:AssumeRole"}))
        cluster = self.eks.create_cluster(
            name=name, **({"version": version} if version else {}), roleArn=cluster_role,
            resourcesVpcConfig={"subnetIds": list(subnets)},
        )["cluster"]
        self.issuer = cluster["identity"]["oidc"]["issuer"].removeprefix("https://")
        self.provider_arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{self.issuer}"
        old_issuer = self.old_provider_arn.split(":oidc-provider/", 1)[1]
        for issuer in [self.issuer, old_issuer] if oidc_provider else [old_issuer]:
            self.iam.create_open_id_connect_provider(
                Url=f"https://{issuer}", ClientIDList=["sts.amazonaws.com"],
                ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
            )
        self.node_role_arn = self.role(
            node_role or f"{name}-node-role",
            _document({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}),
            node_policy,
        )
        create = {"clusterName": name, "nodegroupName": "general", "nodeRole": self.node_role_arn,
                  "subnets": list(subnets), **node_group}
        if background is None:
            self.eks.create_nodegroup(**create)
            return None
        return background.submit(self.session.client("eks").create_nodegroup, **create)  # a client of its own

    # -- Kubernetes --------------------------------------------------------------------

    def sa(self, namespace: str, name: str, role_arn: str | None = None) -> None:
        """A ServiceAccount as `kubectl get serviceaccounts -A -o json` lists it."""
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "uid": str(random.Random(f"{namespace}/{name}").getrandbits(128)),
            "resourceVersion": str(self.rng.randrange(10_000, 99_999_999)),
            "creationTimestamp": "2025-09-14T08:12:44Z",
        }
        if role_arn:
            metadata["annotations"] = {"eks.amazonaws.com/role-arn": role_arn}
        self.service_accounts.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata})

    # -- CloudTrail --------------------------------------------------------------------

    def moments(self, count: int, *, since: timedelta, until: timedelta = timedelta(minutes=2)) -> list[datetime]:
        """``count`` moments between ``since`` and ``until`` ago, spaced like retries with jitter."""
        span = (since - until).total_seconds()
        step = span / max(count, 1)
        return [
            self.now - since + timedelta(seconds=step * index + self.rng.random() * step * 0.8)
            for index in range(count)
        ]

    def subject(self, namespace: str, name: str) -> str:
        return f"system:serviceaccount:{namespace}:{name}"

    def refused_web_identity(self, namespace: str, name: str, role_arn: str, *, count: int,
                             since: timedelta = timedelta(hours=1), region: str = REGION,
                             user_agent: str = BOTO3, global_endpoint: bool = False,
                             code: str = "AccessDenied", message: str = "An unknown error occurred",
                             audience: str = "sts.amazonaws.com", until: timedelta = timedelta(minutes=2)) -> None:
        for when in self.moments(count, since=since, until=until):
            self.records.append(web_identity_call(
                self.rng, when=when, region=region, account=ACCOUNT, provider_arn=self.provider_arn,
                subject=self.subject(namespace, name), role_arn=role_arn, audience=audience, user_agent=user_agent,
                error_code=code, error_message=message, global_endpoint=global_endpoint,
            ))

    def minted(self, namespace: str, name: str, role_arn: str, *, ago: timedelta = timedelta(hours=2)) -> RoleSession:
        """A granted AssumeRoleWithWebIdentity: the pod's role session, known by its access key."""
        when = self.now - ago
        session = RoleSession(
            ACCOUNT, role_arn.rsplit("/", 1)[-1], f"botocore-session-{int(when.timestamp())}",
            access_key_id(self.rng), role_id=self.role_ids.get(role_arn, "AROAEXAMPLEROLEID0001"),
        )
        self.records.append(web_identity_call(
            self.rng, when=when, region=REGION, account=ACCOUNT, provider_arn=self.provider_arn,
            subject=self.subject(namespace, name), role_arn=role_arn, user_agent=BOTO3, session=session,
        ))
        return session

    def calls(self, session: RoleSession, source: str, name: str, *, count: int,
              since: timedelta = timedelta(hours=1), code: str | None = None, message: str | None = None,
              user_agent: str = BOTO3, request: dict | None = None, read_only: bool = True,
              data_event: dict | None = None) -> None:
        """API calls made with a role session; ``data_event`` (the ``resources``) marks S3
        object calls, which an organization trail records when data events are on."""
        for when in self.moments(count, since=since):
            record = api_call(
                self.rng, when=when, region=REGION, account=ACCOUNT,
                identity=session.user_identity(when - timedelta(minutes=self.rng.randrange(5, 50))),
                event_source=source, event_name=name, read_only=read_only, user_agent=user_agent,
                error_code=code, error_message=message, request_parameters=request,
            )
            if data_event is not None:
                record["eventCategory"] = "Data"
                record["managementEvent"] = False
                record["resources"] = data_event["resources"]
                record["additionalEventData"] = {"SignatureVersion": "SigV4", "AuthenticationMethod": "AuthHeader",
                                                 "x-amz-id-2": "EXAMPLE"}
            self.records.append(record)

    def changed(self, name: str, request: dict, *, ago: timedelta, by: str = "alice") -> None:
        """A successful IAM change made by the IAM user ``by``; CloudTrail records every IAM
        call in us-east-1, policy documents as the JSON text they were sent as."""
        user_id = "AIDA" + "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(17))
        self.records.append(api_call(
            self.rng, when=self.now - ago, region="us-east-1", account=ACCOUNT,
            identity=iam_user_identity(ACCOUNT, by, access_key_id(self.rng, "AKIA"), user_id),
            event_source="iam.amazonaws.com", event_name=name, read_only=False, user_agent=AWS_CLI,
            request_parameters=request,
        ))

    def session_of(self, role_arn: str, session_name: str = "botocore-session-1764291111") -> RoleSession:
        """A session of ``role_arn`` whose minting is not in the trail (older than the window)."""
        return RoleSession(ACCOUNT, role_arn.rsplit("/", 1)[-1], session_name, access_key_id(self.rng))

    def node_session(self, instance: str = "i-0a1b2c3d4e5f60718") -> RoleSession:
        name = self.node_role_arn.rsplit("/", 1)[-1]
        return RoleSession(ACCOUNT, name, instance, access_key_id(self.rng),
                           role_id=self.role_ids.get(self.node_role_arn, "AROAEXAMPLEROLEID0001"),
                           ec2_role_delivery=True)


# -- the cluster and its healthy life ---------------------------------------------------


def _cluster(w: World, background: ThreadPoolExecutor) -> Future:
    """The EKS cluster, its OIDC provider, the provider of the cluster it replaced, and its
    node group (created in the background: moto takes seconds over it)."""
    node_group = w.cluster(
        CLUSTER, version="1.31", background=background,
        node_policy={"worker-node": _document({
            "Effect": "Allow",
            "Action": ["ec2:DescribeInstances", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups",
                       "ec2:DescribeSubnets", "ec2:DescribeVpcs", "eks:DescribeCluster",
                       "eks-auth:AssumeRoleForPodIdentity", "ecr:GetAuthorizationToken",
                       "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": "*",
        })},
        instanceTypes=["m6i.large"], scalingConfig={"minSize": 3, "maxSize": 6, "desiredSize": 3},
    )
    assert node_group is not None
    for namespace in ("default", "kube-system", "frontend", "catalog", "payments", "search", "billing", "checkout", "analytics",
                      "notifications", "orders", "legacy", "media", "fulfillment", "reports", "batch"):
        w.sa(namespace, "default")
    return node_group


def _healthy_workloads(w: World) -> None:
    """Workloads that work: their tokens are exchanged every hour or so, and the node's kubelet
    and VPC CNI make their usual calls with the node role."""
    for namespace, name in (("frontend", "web"), ("catalog", "api"), ("kube-system", "aws-node"),
                            ("kube-system", "ebs-csi-controller-sa")):
        arn = w.irsa_role(f"shop-prod-{namespace}-{name}"[:64], namespace, name)
        w.sa(namespace, name, role_arn=arn)
        for hours in range(23, 0, -1):
            w.minted(namespace, name, arn, ago=timedelta(hours=hours, minutes=w.rng.randrange(60)))
    node = w.node_session()
    w.calls(node, "ec2.amazonaws.com", "DescribeInstances", count=96, since=timedelta(hours=24), user_agent=GO_V2)
    w.calls(node, "ecr.amazonaws.com", "GetAuthorizationToken", count=48, since=timedelta(hours=24), user_agent=GO_V2)
    # Failures that are not refusals: never findings.
    noisy = w.session_of(f"arn:aws:iam::{ACCOUNT}:role/shop-prod-frontend-web")
    w.calls(noisy, "sts.amazonaws.com", "GetCallerIdentity", count=6, since=timedelta(hours=20),
            code="ThrottlingException", message="Rate exceeded")
    w.calls(noisy, "ec2.amazonaws.com", "DescribeInstances", count=5, since=timedelta(hours=12),
            code="Client.RequestLimitExceeded", message="Request limit exceeded.")
    w.calls(noisy, "iam.amazonaws.com", "GetRole", count=3, since=timedelta(hours=9),
            code="NoSuchEntity", message="The role with name shop-prod-canary cannot be found.")


# -- the broken workloads: one story, one cause each -------------------------------------


def trust_subject_mismatch(w: World) -> str:
    arn = w.irsa_role("payments-api", "payments", "api", sub="system:serviceaccount:payment:api")
    w.sa("payments", "api", role_arn=arn)
    # The failures began when alice "tidied up" the trust policy.
    w.changed("UpdateAssumeRolePolicy", {"roleName": "payments-api", "policyDocument": w.irsa_trust(
        "payments", "api", sub="system:serviceaccount:payment:api")}, ago=timedelta(hours=5, minutes=3))
    w.refused_web_identity("payments", "api", arn, count=14, since=timedelta(hours=5))
    return "payments/api: alice's edit of the role's trust policy names namespace `payment`, not `payments`"


def trust_audience_mismatch(w: World) -> str:
    # Fixed since: today's trust policy is right; CloudTrail holds the one in force at the failures.
    arn = w.irsa_role("search-indexer", "search", "indexer")
    w.sa("search", "indexer", role_arn=arn)
    broken = w.irsa_trust("search", "indexer", aud="system:serviceaccount:search:indexer")
    w.changed("UpdateAssumeRolePolicy", {"roleName": "search-indexer", "policyDocument": broken},
              ago=timedelta(hours=16, minutes=4))
    w.refused_web_identity("search", "indexer", arn, count=6, since=timedelta(hours=16), until=timedelta(hours=3),
                           user_agent=GO_V2)
    w.changed("UpdateAssumeRolePolicy", {"roleName": "search-indexer", "policyDocument": w.irsa_trust(
        "search", "indexer")}, ago=timedelta(hours=2, minutes=41), by="bob")
    return ("search/indexer: the trust policy's :aud condition held the subject instead of sts.amazonaws.com, "
            "until bob fixed it")


def trust_provider_mismatch(w: World) -> str:
    arn = w.irsa_role("billing-invoicer", "billing", "invoicer", provider=w.old_provider_arn)
    w.sa("billing", "invoicer", role_arn=arn)
    w.refused_web_identity("billing", "invoicer", arn, count=9, since=timedelta(hours=20))
    return "billing/invoicer: the role still trusts the OIDC provider of the cluster shop-prod replaced"


def role_mismatch(w: World) -> str:
    # The old role was made for the cluster shop-prod replaced; v2 for shop-prod.
    old = w.irsa_role("checkout-cart", "checkout", "cart", provider=w.old_provider_arn)
    new = w.irsa_role("checkout-cart-v2", "checkout", "cart")
    w.sa("checkout", "cart", role_arn=new)
    w.refused_web_identity("checkout", "cart", old, count=11, since=timedelta(hours=7))
    return "checkout/cart: the annotation moved to checkout-cart-v2, the running pods still ask for checkout-cart"


def sa_not_annotated(w: World) -> str:
    arn = w.irsa_role("analytics-etl", "analytics", "etl")
    w.sa("analytics", "etl")
    w.refused_web_identity("analytics", "etl", arn, count=4, since=timedelta(hours=3))
    return "analytics/etl: the service account lost its eks.amazonaws.com/role-arn annotation"


def role_not_found(w: World) -> str:
    arn = f"arn:aws:iam::{ACCOUNT}:role/notifications-mailer"
    w.sa("notifications", "mailer", role_arn=arn)
    # Java SDK v1 calls the global STS endpoint, which CloudTrail records in us-east-1.
    w.refused_web_identity("notifications", "mailer", arn, count=8, since=timedelta(hours=22),
                           region="us-east-1", user_agent=JAVA_V1, global_endpoint=True)
    return "notifications/mailer: its role was deleted (the calls reach STS's global endpoint, logged in us-east-1)"


def token_expired(w: World) -> str:
    arn = w.irsa_role("batch-nightly", "batch", "nightly")
    w.sa("batch", "nightly", role_arn=arn)
    w.refused_web_identity(
        "batch", "nightly", arn, count=3, since=timedelta(hours=2), code="ExpiredTokenException",
        message="Token expired: current date/time 1764309600 must be before the expiration date/time 1764306000",
    )
    return "batch/nightly: a long job cached its projected token past expiry"


def missing_permission(w: World) -> str:
    arn = w.irsa_role("orders-worker", "orders", "worker", {"queue": _document(
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
         "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders"})})
    w.sa("orders", "worker", role_arn=arn)
    session = w.minted("orders", "worker", arn, ago=timedelta(hours=4))
    secret = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:orders/db-password-Xa9k2P"
    w.calls(session, "secretsmanager.amazonaws.com", "GetSecretValue", count=23, since=timedelta(hours=3, minutes=50),
            code="AccessDenied",
            message=f"User: {session.arn} is not authorized to perform: secretsmanager:GetSecretValue on resource: "
                    f"{secret} because no identity-based policy allows the secretsmanager:GetSecretValue action",
            request={"secretId": secret})
    return "orders/worker: a new release reads a secret its role was never allowed to read"


def node_role_fallback(w: World) -> str:
    node = w.node_session("i-0c4d5e6f708192a3b")
    w.calls(node, "ec2.amazonaws.com", "DescribeSnapshots", count=31, since=timedelta(hours=24),
            code="Client.UnauthorizedOperation", message=EC2_SILENT, user_agent=OLD_BOTO3,
            request={"ownersSet": {"items": [{"owner": "self"}]}})
    w.sa("legacy", "reporter", role_arn=w.irsa_role("legacy-reporter", "legacy", "reporter", {"snapshots": _document(
        {"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"})}))
    return "legacy/reporter: Boto3 1.9.100 is too old for IRSA, so it falls back to the node's role"


def explicit_deny(w: World) -> str:
    arn = w.irsa_role("media-uploader", "media", "uploader", {"uploads": _document(
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"], "Resource": "arn:aws:s3:::acme-media-eu/*"})})
    w.sa("media", "uploader", role_arn=arn)
    session = w.minted("media", "uploader", arn, ago=timedelta(hours=6))
    key = "uploads/2026/11/a7f3c2e1.jpg"
    w.calls(session, "s3.amazonaws.com", "PutObject", count=7, since=timedelta(hours=5, minutes=30),
            code="AccessDenied", read_only=False,
            message=f'User: {session.arn} is not authorized to perform: s3:PutObject on resource: '
                    f'"arn:aws:s3:::acme-media-eu/{key}" with an explicit deny in a service control policy',
            request={"bucketName": "acme-media-eu", "key": key, "Host": "acme-media-eu.s3.eu-west-1.amazonaws.com"},
            data_event={"resources": [
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::acme-media-eu/{key}"},
                {"accountId": ACCOUNT, "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::acme-media-eu"}]})
    return "media/uploader: an organization SCP denies uploads without SSE-KMS"


def boundary_deny(w: World) -> str:
    boundary = w.iam.create_policy(
        PolicyName="developer-boundary",
        PolicyDocument=_document({"Effect": "Allow", "Action": ["s3:*", "sqs:*", "dynamodb:*"], "Resource": "*"}),
    )["Policy"]["Arn"]
    arn = w.irsa_role("reports-exporter", "reports", "exporter", {"snapshots": _document(
        {"Effect": "Allow", "Action": "ec2:DescribeSnapshots", "Resource": "*"})}, boundary=boundary)
    w.sa("reports", "exporter", role_arn=arn)
    session = w.minted("reports", "exporter", arn, ago=timedelta(hours=10))
    w.calls(session, "ec2.amazonaws.com", "DescribeSnapshots", count=5, since=timedelta(hours=9),
            code="Client.UnauthorizedOperation", message=EC2_SILENT)
    return "reports/exporter: the role's permissions boundary does not allow EC2"


def resource_policy_deny(w: World) -> str:
    arn = w.irsa_role("reports-reader", "reports", "reader", {"partner": _document(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::partner-reports/*"})})
    w.sa("reports", "reader", role_arn=arn)
    session = w.minted("reports", "reader", arn, ago=timedelta(hours=12))
    key = "exports/2026-q3.csv"
    w.calls(session, "s3.amazonaws.com", "GetObject", count=4, since=timedelta(hours=11),
            code="AccessDenied",
            message=f'User: {session.arn} is not authorized to perform: s3:GetObject on resource: '
                    f'"arn:aws:s3:::partner-reports/{key}" because no resource-based policy allows the s3:GetObject action',
            request={"bucketName": "partner-reports", "key": key, "Host": "partner-reports.s3.eu-west-1.amazonaws.com"},
            data_event={"resources": [
                {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::partner-reports/{key}"},
                {"accountId": "444455556666", "type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::partner-reports"}]})
    return "reports/reader: the partner's bucket policy does not grant this role"


def pod_identity_trust(w: World) -> str:
    arn = w.role("fulfillment-shipper", _document(
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}))
    w.sa("fulfillment", "shipper")
    w.eks.create_pod_identity_association(clusterName=CLUSTER, namespace="fulfillment", serviceAccount="shipper",
                                          roleArn=arn)
    pods = ("shipper-7c9d8f6b5-qx2lm", "shipper-7c9d8f6b5-8kfzt", "shipper-7c9d8f6b5-w4n9d")
    for pod, when in zip(pods, w.moments(len(pods), since=timedelta(hours=1, minutes=30))):
        w.records.append(pod_identity_assume_role(
            w.rng, when=when, region=REGION, account=ACCOUNT, role_arn=arn, cluster=CLUSTER,
            namespace="fulfillment", service_account="shipper", pod=pod, error_code="AccessDenied",
        ))
    return "fulfillment/shipper: the Pod Identity role trusts pods.eks.amazonaws.com for sts:AssumeRole, not sts:TagSession"


#: The broken workloads, one SPEC §7 cause each.
SCENARIOS: tuple[Callable[[World], str], ...] = (
    trust_subject_mismatch, trust_audience_mismatch, trust_provider_mismatch, role_mismatch, sa_not_annotated,
    role_not_found, token_expired, missing_permission, node_role_fallback, explicit_deny, boundary_deny,
    resource_policy_deny, pod_identity_trust,
)


def seed_world(
    session: boto3.Session,
    folder: Path,
    *,
    now: datetime,
    healthy_events: int = HEALTHY_EVENTS,
    seed: int = 7,
    progress: ProgressFn | None = None,
) -> SeededWorld:
    """Create the cluster, roles and trail bucket in the account ``session`` reaches, deliver
    the last 24 hours of CloudTrail to the bucket, and save the cluster's service accounts
    to ``folder/serviceaccounts.json``."""
    rng = random.Random(seed)
    w = World(session, now=now, rng=rng)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="trailscan-demo-eks") as background:
        node_group = _cluster(w, background)
        _healthy_workloads(w)
        for scenario in SCENARIOS:
            w.stories.append(scenario(w))
        start, end = now - timedelta(hours=24) + timedelta(minutes=1), now - timedelta(minutes=1)
        w.records += healthy_traffic(rng, count=healthy_events * 2 // 3, start=start, end=end,
                                     accounts=(ACCOUNT,), regions=REGIONS)
        w.records += healthy_traffic(rng, count=healthy_events // 3, start=start, end=end,
                                     accounts=(MEMBER_ACCOUNT,), regions=(REGION,))
        logs = list(delivery_files(w.records, rng, org_id=ORG_ID))
        digests = list(digest_files(logs, rng, bucket=TRAIL_BUCKET, trail_name=TRAIL, home_region=REGION))
        _trail_bucket(session, logs + digests, progress)
        node_group.result()
    accounts = folder / "serviceaccounts.json"
    accounts.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                                    "items": w.service_accounts}, indent=2))
    return SeededWorld(accounts, events=len(w.records), log_files=len(logs), digest_files=len(digests),
                       stories=w.stories)


def _trail_bucket(session: boto3.Session, objects: list[tuple[str, bytes]], progress: ProgressFn | None) -> None:
    """The organization trail and its bucket, with ``objects`` delivered into it."""
    s3 = session.client("s3", config=Config(max_pool_connections=8))
    s3.create_bucket(Bucket=TRAIL_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    session.client("cloudtrail").create_trail(
        Name=TRAIL, S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True, EnableLogFileValidation=True
    )
    label = f"delivering the trail to s3://{TRAIL_BUCKET}"

    def put(item: tuple[str, bytes]) -> None:
        key, body = item
        s3.put_object(Bucket=TRAIL_BUCKET, Key=key, Body=body)

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="trailscan-demo") as pool:
        for done, _ in enumerate(pool.map(put, objects), start=1):
            if progress is not None and (done % 50 == 0 or done == len(objects)):
                progress(label, done, len(objects))
