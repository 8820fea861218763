"""Shared fixtures: the real CloudTrail corpus, stores, and running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tests reach AWS only through the moto servers and loopback LookupEvents servers they start.
# A developer's own AWS settings must not send them elsewhere: an endpoint (LocalStack's, say),
# a profile, keys, role or container credentials, the instance metadata service, ~/.aws.
for _name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")] + [
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
]:
    os.environ.pop(_name, None)
os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def shared_dir() -> Path:
    """``../shared`` beside the checkout (``TRAILSCAN_SHARED`` overrides)."""
    return Path(os.environ.get("TRAILSCAN_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    path = shared_dir() / "data" / "real"
    if not path.is_dir():
        pytest.fail(f"the real CloudTrail corpus is missing: expected {path} (set TRAILSCAN_SHARED)")
    return path


@pytest.fixture
def store():
    from trailscan.store import Store

    with Store.open(":memory:") as opened:
        yield opened


@pytest.fixture(scope="session")
def real_store(real_data, tmp_path_factory):
    """A store on disk holding the whole real corpus, shared read-only by tests."""
    from trailscan.sources.files import ingest_files
    from trailscan.store import Store

    path = tmp_path_factory.mktemp("real") / "real.duckdb"
    with Store.open(path) as opened:
        ingest_files(opened, [str(real_data)])
    return path


# -- moto: one server for the whole run -------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server():
    """The run's one moto server (tests/support/moto_server.py): 127.0.0.1, an ephemeral port,
    started when a test first needs it, stopped after the last.  moto's backends are global to
    the process anyway; tests take ``moto`` (or a module's fixtures ``moto_module``), which say
    what the account holds.  Taken directly only for an endpoint whose answers hold no state
    (``sts:GetCallerIdentity``) in fixtures wider than a test."""
    from tests.support.moto_server import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture(scope="module")
def moto_module(moto_server, request):
    """The server for a module that seeds AWS once for all its tests (a trail bucket, a cluster
    whose node group takes moto seconds): emptied when the module starts, then left to the
    module.  Its module-scoped fixtures take it by name; a module whose tests also take ``moto``
    declares ``pytestmark = pytest.mark.usefixtures("moto_module")``, so that ``moto`` hands
    every one of its tests the account as the module left it."""
    moto_server.reset()
    moto_server.kept_for = request.module.__name__
    yield moto_server
    moto_server.kept_for = None


@pytest.fixture
def moto(moto_server, request):
    """The server, emptied before the test (every resource of every service and account, and
    the requests noted), unless the test's module keeps it (``moto_module``)."""
    if moto_server.kept_for != request.module.__name__:
        moto_server.reset()
    return moto_server


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, input: str | None = None):
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "trailscan", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
        timeout=300,
    )
