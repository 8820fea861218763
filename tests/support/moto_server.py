"""moto in server mode on 127.0.0.1, for tests and benchmarks that drive real boto3 clients.

One ``ThreadedMotoServer`` on an ephemeral port serves every AWS service moto implements (S3,
IAM, STS, EKS, CloudTrail trails …), and EKS Pod Identity associations through the demo's
:class:`~trailscan.demo.PodIdentityLayer`; clients reach it over HTTP, so botocore's serialisers,
retries, paginators and event hooks all run as they do against AWS::

    with MotoServer() as moto:
        session = moto.session("eu-west-1")          # a boto3.Session pointed at the server
        session.client("s3").create_bucket(...)
        subprocess.run([...], env={**os.environ, **moto.environ()})   # a CLI, through AWS_ENDPOINT_URL
        moto.reset()                                  # forget every resource
        moto.requests                                 # what reached the server: method, path, user agent

:meth:`MotoServer.session` writes an ordinary AWS config file (a profile with ``endpoint_url``,
``region`` and test credentials) and points a botocore session at it, so the code under test
resolves the endpoint through standard AWS configuration, without process-wide environment
variables.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.loaders
import botocore.session
from moto.server import ThreadedMotoServer

from trailscan.demo import PodIdentityLayer

ACCESS_KEY = "testing"
SECRET_KEY = "testing"


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server received it (the path percent-decoded)."""

    method: str
    path: str
    query: str
    user_agent: str


class _Recorder:
    """WSGI middleware: notes each request before moto answers it."""

    def __init__(self, app, log: list[Request], lock: threading.Lock) -> None:
        self.app, self.log, self.lock = app, log, lock

    def __call__(self, environ, start_response):
        request = Request(
            environ.get("REQUEST_METHOD", ""),
            # WSGI hands the path percent-decoded, its bytes as latin-1 characters.
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace"),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_USER_AGENT", ""),
        )
        with self.lock:
            self.log.append(request)
        return self.app(environ, start_response)


class MotoServer:
    """A moto server on 127.0.0.1 and an ephemeral port; a context manager.

    Every request that reaches it is noted in :attr:`requests`, whichever client sent it
    (boto3, the AWS Common Runtime, a CLI in a subprocess).
    """

    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._folder = tempfile.TemporaryDirectory(prefix="moto-config-")
        self.endpoint_url = ""
        # Service models parsed once for every session handed out (botocore caches them per loader).
        self._loader = botocore.loaders.create_loader()
        self._log: list[Request] = []
        self._log_lock = threading.Lock()

    @property
    def requests(self) -> list[Request]:
        """The requests received so far, oldest first (a copy)."""
        with self._log_lock:
            return list(self._log)

    def object_gets(self, bucket: str, since: int = 0) -> list[tuple[str, Request]]:
        """``(key, request)`` for each GET of an object of ``bucket`` (not a listing of it)
        among the requests from index ``since`` on."""
        folder = f"/{bucket}/"
        return [
            (request.path.removeprefix(folder), request)
            for request in self.requests[since:]
            if request.method == "GET" and request.path.startswith(folder)
        ]

    def start(self) -> "MotoServer":
        # werkzeug logs every request at INFO; tests and benchmarks only want errors.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server.start()
        # werkzeug's handlers call ``server.app`` for each request: wrap it to note them, and
        # to answer EKS Pod Identity associations, which moto lacks, as the demo's moto does.
        served = self._server._server
        served.app = _Recorder(PodIdentityLayer(served.app), self._log, self._log_lock)
        _, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://127.0.0.1:{port}"
        # moto's backends are global to the process: without this, a server would start with
        # what an earlier test module's server created, and results would depend on test order.
        self.reset()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._folder.cleanup()

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every resource of every service (moto's ``/moto-api/reset``)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def environ(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment variables that point any AWS SDK or CLI at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_CONFIG_FILE": str(Path(self._folder.name) / "absent-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(Path(self._folder.name) / "absent-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def session(self, region: str = "us-east-1") -> boto3.Session:
        """A fresh ``boto3.Session`` whose clients all talk to this server.

        Each call returns a new session, so event hooks registered on one
        (``session.events.register(...)``) never leak into another.
        """
        folder = Path(self._folder.name)
        config = folder / f"config-{region}"
        config.write_text(
            "[profile moto]\n"
            f"endpoint_url = {self.endpoint_url}\n"
            f"region = {region}\n"
            f"aws_access_key_id = {ACCESS_KEY}\n"
            f"aws_secret_access_key = {SECRET_KEY}\n"
        )
        core = botocore.session.Session()
        core.register_component("data_loader", self._loader)
        core.set_config_variable("config_file", str(config))
        core.set_config_variable("credentials_file", str(folder / "absent-credentials"))
        core.set_config_variable("profile", "moto")
        core.set_config_variable("region", region)
        return boto3.Session(botocore_session=core)
