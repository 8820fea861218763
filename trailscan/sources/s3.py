"""The ``s3`` source: the log files a trail delivers to its bucket, read for one window.

CloudTrail writes one gzip file per account, region and ~5 minutes, named by its delivery
time, under a dated folder::

    [prefix/]AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_YYYYMMDDTHHMMZ_XXXXXXXXXXXXXXXX.json.gz
    [prefix/]AWSLogs/o-ORGID/ACCOUNT/CloudTrail/REGION/…     (organization trails)

Older organization trails write without the ``o-ORGID`` segment.  Digest files
(``CloudTrail-Digest/``) and Insights (``CloudTrail-Insight/``) sit in folders beside
``CloudTrail/`` and are never listed, let alone downloaded.

How a window is read, cheaply enough for a nightly run:

1. The organization, accounts and regions not given are discovered by delimiter listings
   (``Delimiter="/"``), one folder level at a time; the bucket is never listed as a whole.
2. Only the day folders the window needs are listed.  File names carry *delivery* time:
   an event at ``T`` is delivered at ``T`` plus up to ~15 minutes, so a file delivered at
   ``D`` holds events from before ``D``.  Files delivered in
   ``[window start, window end + DELIVERY_LAG]`` are read and every record is then kept or
   dropped on its own ``eventTime`` (:meth:`Store.commit_staged` with ``window``).
3. Objects already stored with the same ETag are skipped; the others are downloaded in
   parallel into a temporary folder.  While the next download has not arrived, the files
   that have are read into the store's batch and deleted; a batch is committed in one
   transaction when it is large enough (memory and disk stay bounded whatever the
   window), so the last commit, after the last download, is short.  An object that
   cannot be read is named, makes its account/region ``partial``, and is not remembered,
   so the next run retries it.

Listings go through boto3.  Downloads go through the AWS Common Runtime's S3 client
(``awscrt``, the engine of boto3's and the AWS CLI's fast transfers) when it can serve
the session: it signs, sends and writes each GetObject in C, outside the GIL, for about
a quarter of boto3's CPU per object — what bounds a run reading many small log files.
boto3 in threads downloads otherwise: behind a proxy (the runtime does not read proxy
settings as botocore does), without credentials, or with ``TRAILSCAN_S3_DOWNLOADER=boto3``.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import quote, urlsplit

import boto3
import duckdb
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from trailscan.errors import SourceError, TrailscanError, UsageError
from trailscan.interrupt import Terminated, interruption, sigterm_as_interrupt
from trailscan.model import (
    COMPLETE,
    FAILED,
    PARTIAL,
    BatchResult,
    Coverage,
    FileProblem,
    ProgressFn,
    Window,
    record_notes,
)
from trailscan.store import GZIP_RATIO, IngestedObject, Store, decompressed_size

SOURCE = "s3"
#: How long after its last event a log file may still be delivered.  CloudTrail delivers
#: within ~15 minutes "typically"; an hour covers its slow days for one extra day folder
#: at most.
DELIVERY_LAG = timedelta(hours=1)
DEFAULT_WORKERS = 8
#: Decompressed bytes per store transaction, compressed sizes counted ×10 (as the files
#: source does): larger batches cost the store less CPU per event.  Downloads run ahead of
#: the store by at most one more batch, so the temporary disk holds at most two.
BATCH_BYTES = 256 * 1024 * 1024
#: Objects per transaction at most, whatever their size.
BATCH_OBJECTS = 5000
#: When the next download has not arrived yet, a batch of at least this many objects is
#: stored rather than waited on, so the store works while downloads continue.  (Each
#: transaction has a fixed cost, and one under DuckDB's row group goes through its
#: write-ahead log, so batches are not made smaller than this.)
EARLY_BATCH = 500
#: While the next download has not arrived, files that have are read into the batch
#: (staged) this many at a time: the batch's commit then only inserts, and the last
#: one, after the last download, is short.
STAGE_FILES = 50
#: ``auto`` (the AWS Common Runtime when it can serve the session, else boto3), ``crt`` or ``boto3``.
DOWNLOADER_ENV = "TRAILSCAN_S3_DOWNLOADER"
DOWNLOADERS = ("auto", "crt", "boto3")

_STAMP = re.compile(r"_(\d{8}T\d{4})Z_")
_ACCOUNT = re.compile(r"^\d{12}$")
_SKIPPED_FOLDERS = ("CloudTrail-Digest", "CloudTrail-Insight")

T = TypeVar("T")
R = TypeVar("R")


# -- key prefixes: small pure functions ----------------------------------------------------


def logs_prefix(prefix: str = "") -> str:
    """``[prefix/]AWSLogs/``: the folder a trail writes under."""
    head = prefix.strip("/")
    return f"{head}/AWSLogs/" if head else "AWSLogs/"


def normalize_org_id(org_id: str) -> str:
    """``o-abc123`` or ``abc123`` → ``o-abc123`` (the folder name of an organization trail)."""
    org_id = org_id.strip().strip("/")
    return org_id if org_id.startswith("o-") else f"o-{org_id}"


def region_prefix(prefix: str, account: str, region: str, org_id: str | None = None) -> str:
    """``[prefix/]AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/``."""
    org = f"{normalize_org_id(org_id)}/" if org_id else ""
    return f"{logs_prefix(prefix)}{org}{account}/CloudTrail/{region}/"


def delivery_days(window: Window, lag: timedelta = DELIVERY_LAG) -> list[date]:
    """The UTC days whose folders can hold files delivered in ``[start, end + lag]``."""
    first = window.start.astimezone(timezone.utc).date()
    last = (window.end + lag).astimezone(timezone.utc).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def day_folders(root: str, window: Window, lag: timedelta = DELIVERY_LAG) -> list[str]:
    """``root`` (a :func:`region_prefix`) + ``YYYY/MM/DD/`` for each of :func:`delivery_days`."""
    return [f"{root}{day:%Y/%m/%d}/" for day in delivery_days(window, lag)]


def day_prefixes(
    prefix: str,
    account: str,
    region: str,
    window: Window,
    *,
    org_id: str | None = None,
    lag: timedelta = DELIVERY_LAG,
) -> list[str]:
    """Every day folder to list for one account and region (trailscraper-style)."""
    return day_folders(region_prefix(prefix, account, region, org_id), window, lag)


def delivery_time(key: str) -> datetime | None:
    """The delivery time in a log file's name (``…_20261127T0605Z_…``), if it has one."""
    match = _STAMP.search(key.rsplit("/", 1)[-1])
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)


def is_log_key(key: str) -> bool:
    """A CloudTrail log file (not a digest, not an Insights file, not a folder marker)."""
    if any(folder in key for folder in _SKIPPED_FOLDERS):
        return False
    return key.endswith((".json.gz", ".json"))


def delivered_in(key: str, window: Window, lag: timedelta = DELIVERY_LAG) -> bool:
    """Whether a log file can hold events of ``window``: delivered in ``[start, end + lag]``.

    The name's time has minute precision, so the start is taken to its minute.  A name
    without a time is read (its records are filtered on ``eventTime`` all the same).
    """
    delivered = delivery_time(key)
    if delivered is None:
        return True
    start = window.start.astimezone(timezone.utc).replace(second=0, microsecond=0)
    return start <= delivered <= window.end + lag


def s3_url(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


# -- finding the trail -------------------------------------------------------------------


@dataclass(frozen=True)
class Trail:
    """Where a trail delivers: its bucket and key prefix."""

    name: str
    bucket: str
    prefix: str = ""
    multi_region: bool = False
    organization: bool = False


def choose_trail(trails: Iterable[dict], region: str = "") -> Trail:
    """The trail to read among ``describe_trails`` output: an organization trail, else a
    multi-region trail, else the only one.  Trails delivering to the same place count once.

    Raises :class:`SourceError` when no trail delivers to S3, :class:`UsageError` when
    several places remain (naming them).
    """
    found: dict[tuple[str, str], Trail] = {}
    for item in trails:
        if not item.get("S3BucketName"):
            continue
        trail = Trail(
            name=item.get("Name", ""),
            bucket=item["S3BucketName"],
            prefix=item.get("S3KeyPrefix") or "",
            multi_region=bool(item.get("IsMultiRegionTrail")),
            organization=bool(item.get("IsOrganizationTrail")),
        )
        found.setdefault((trail.bucket, trail.prefix.strip("/")), trail)
    where = f" in {region}" if region else ""
    if not found:
        raise SourceError(f"no CloudTrail trail delivering to S3 found{where}", "pass --bucket")
    candidates = list(found.values())
    for preferred in ([t for t in candidates if t.organization], [t for t in candidates if t.multi_region]):
        if preferred:
            candidates = preferred
            break
    if len(candidates) > 1:
        names = ", ".join(f"{t.name} (s3://{t.bucket}/{t.prefix.strip('/')})" for t in candidates)
        raise UsageError(
            f"several trails deliver to S3{where}: {names}", "choose one with --bucket and --prefix"
        )
    return candidates[0]


def discover_trail(session: boto3.Session) -> Trail:
    """The trail to read, from ``cloudtrail describe-trails`` in the session's region
    (which lists multi-region and organization trails of other home regions too)."""
    region = session.region_name or "us-east-1"
    client = session.client("cloudtrail", region_name=region, config=_config(1))
    try:
        trails = client.describe_trails(includeShadowTrails=True).get("trailList", [])
    except (ClientError, BotoCoreError) as exc:
        raise SourceError(
            f"cannot list the CloudTrail trails in {region}: {_aws_error(exc)}", "pass --bucket"
        ) from None
    return choose_trail(trails, region)


# -- the bucket --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Object:
    key: str
    etag: str
    size: int


class _ListError(Exception):
    """A listing that failed (after botocore's retries)."""


class _Bucket:
    """One bucket, one S3 client in the bucket's region (clients are thread-safe)."""

    def __init__(self, session: boto3.Session, name: str, workers: int) -> None:
        self.name = name
        config = _config(workers)
        client = session.client("s3", region_name=session.region_name or "us-east-1", config=config)
        region = self._locate(client)
        if region and region != client.meta.region_name:
            client = session.client("s3", region_name=region, config=config)
        self.client = client

    def _locate(self, client) -> str | None:
        """Check the bucket can be read and return its region.  ``HeadBucket`` needs only
        ``s3:ListBucket``, which reading needs anyway (``GetBucketLocation`` is one more
        permission a least-privilege role may lack)."""
        try:
            response = client.head_bucket(Bucket=self.name)
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise SourceError(f"bucket {self.name} does not exist") from None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise SourceError(
                    f"access to bucket {self.name} is denied",
                    "the credentials need s3:ListBucket and s3:GetObject on it",
                ) from None
            raise SourceError(f"cannot read bucket {self.name}: {_aws_error(exc)}") from None
        except NoCredentialsError:
            raise SourceError(
                f"no AWS credentials to read bucket {self.name}", "set AWS_PROFILE or configure credentials"
            ) from None
        except BotoCoreError as exc:
            raise SourceError(f"cannot reach bucket {self.name}: {exc}") from None
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return response.get("BucketRegion") or headers.get("x-amz-bucket-region")

    def _pages(self, prefix: str) -> Iterator[dict]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            yield from paginator.paginate(Bucket=self.name, Prefix=prefix, Delimiter="/")
        except (ClientError, BotoCoreError) as exc:
            raise _ListError(f"cannot list {s3_url(self.name, prefix)}: {_aws_error(exc)}") from None

    def folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under ``prefix`` (one delimiter listing)."""
        names = []
        for page in self._pages(prefix):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(prefix) :].rstrip("/"))
        return names

    def objects(self, prefix: str) -> list[_Object]:
        """The objects directly under ``prefix`` (never descending further)."""
        found = []
        for page in self._pages(prefix):
            for item in page.get("Contents", []):
                found.append(_Object(item["Key"], item.get("ETag", "").strip('"'), item.get("Size", 0)))
        return found

    def download(self, key: str, path: Path) -> tuple[str | None, str | None]:
        """Stream one object to ``path``: ``(etag, None)``, or ``(None, why not)``.

        The ETag is the one of the bytes downloaded (the object may have changed since it
        was listed), so what is remembered matches what was stored.
        """
        try:
            response = self.client.get_object(Bucket=self.name, Key=key)
            with open(path, "wb") as handle:
                handle.writelines(response["Body"].iter_chunks(1 << 20))
            return response.get("ETag", "").strip('"'), None
        except ClientError as exc:
            return None, _object_error(exc)
        except BotoCoreError as exc:
            return None, f"download failed: {exc}"
        except OSError as exc:
            return None, f"cannot write the download: {exc.strerror}"


def _config(workers: int) -> Config:
    return Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=max(workers, 1))


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        return f"{code}: {message}" if message and message != code else str(code or exc)
    return str(exc)


def _object_error(exc: ClientError) -> str:
    return _object_problem(_error_code(exc), _aws_error(exc))


def _object_problem(code: str, otherwise: str) -> str:
    """Why an object could not be downloaded, from S3's error code (or HTTP status)."""
    if code in ("NoSuchKey", "404"):
        return "vanished between listing and download"
    if code in ("AccessDenied", "403"):
        return "access denied (s3:GetObject, or kms:Decrypt on the trail's KMS key)"
    if code == "InvalidObjectState":
        return "archived (S3 Glacier): restore it first"
    return otherwise


# -- downloads ---------------------------------------------------------------------------

#: What a download gives: ``(etag, None)``, or ``(None, why not)``.
Outcome = tuple[str | None, str | None]


class _Downloads(Protocol):
    def submit(self, key: str, path: Path) -> Future[Outcome]: ...

    def close(self, cancel: bool) -> None: ...


class _ThreadDownloads:
    """GetObject with boto3, in the worker threads (see :meth:`_Bucket.download`)."""

    name = "boto3"

    def __init__(self, bucket: _Bucket, pool: ThreadPoolExecutor) -> None:
        self.bucket = bucket
        self.pool = pool

    def submit(self, key: str, path: Path) -> Future[Outcome]:
        return self.pool.submit(self.bucket.download, key, path)

    def close(self, cancel: bool) -> None:
        """Nothing of its own: the pool is shut down by its owner."""


#: A key without characters to escape, to learn from boto3 how this bucket's objects are
#: addressed (virtual-hosted or path style, the endpoint, a configured endpoint URL).
_PROBE_KEY = "trailscan-probe"


class _CrtDownloads:
    """GetObject through the AWS Common Runtime's S3 client, ``workers`` at a time.

    Each request is signed, sent and written to ``path`` by C code outside the GIL.
    Measured against moto on 127.0.0.1: 0.7 ms of CPU per 12 KB object, where boto3 in
    threads takes 2.6-2.9 ms.  Addresses come from boto3 (a presigned URL's host and
    path), so the endpoint and addressing style are the ones boto3 would use; credentials
    come from the session each time the runtime signs, so refreshed ones are picked up.
    """

    name = "crt"

    def __init__(self, session: boto3.Session, client, bucket: str, workers: int) -> None:
        from awscrt.auth import AwsCredentials, AwsCredentialsProvider
        from awscrt.io import (
            ClientBootstrap,
            ClientTlsContext,
            DefaultHostResolver,
            EventLoopGroup,
            TlsContextOptions,
        )
        from awscrt.s3 import S3Client, S3RequestTlsMode

        credentials = session.get_credentials()

        def current() -> AwsCredentials:
            frozen = credentials.get_frozen_credentials()
            return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)

        url = urlsplit(
            client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
            )
        )
        self.host = url.netloc
        self.path = url.path[: -len(_PROBE_KEY)]
        tls, bundle = None, _ca_bundle(session)
        if url.scheme == "https" and bundle:
            options = TlsContextOptions()
            options.override_default_trust_store_from_path(ca_filepath=bundle)
            tls = ClientTlsContext(options).new_connection_options()
        loops = EventLoopGroup(max(1, min(workers, os.cpu_count() or 1)))
        self.client = S3Client(
            bootstrap=ClientBootstrap(loops, DefaultHostResolver(loops)),
            region=client.meta.region_name,
            tls_mode=S3RequestTlsMode.ENABLED if url.scheme == "https" else S3RequestTlsMode.DISABLED,
            tls_connection_options=tls,
            credential_provider=AwsCredentialsProvider.new_delegate(current),
        )
        self.slots = threading.BoundedSemaphore(workers)
        self.queue: deque[tuple[str, Path, Future] | None] = deque()
        self.ready = threading.Semaphore(0)
        self.lock = threading.RLock()
        self.active: dict[Future, object] = {}
        self.dispatcher = threading.Thread(target=self._dispatch, name="trailscan-s3-get", daemon=True)
        self.dispatcher.start()

    def submit(self, key: str, path: Path) -> Future[Outcome]:
        future: Future = Future()
        self.queue.append((key, path, future))
        self.ready.release()
        return future

    def _dispatch(self) -> None:
        """Start queued requests, keeping ``workers`` of them running."""
        while True:
            self.ready.acquire()
            try:
                job = self.queue.popleft()
            except IndexError:  # a job cancelled by close() left its permit behind
                continue
            if job is None:
                return
            key, path, future = job
            if not future.set_running_or_notify_cancel():
                continue
            self.slots.acquire()
            try:
                with self.lock:
                    self.active[future] = self._start(key, path, future)
            except Exception as exc:  # noqa: BLE001 - whatever refused it, its object is named, never awaited forever
                self.slots.release()
                future.set_result((None, f"download failed: {exc}"))

    def _start(self, key: str, path: Path, future: Future):
        from awscrt.http import HttpHeaders, HttpRequest
        from awscrt.s3 import S3RequestType

        etag: list[str] = []

        def on_headers(status_code: int, headers, **_) -> None:
            if status_code == 200:  # the headers of the response written to disk (a retry's, if any)
                etag[:] = [value.strip('"') for name, value in headers if name.lower() == "etag"]

        def on_done(error=None, status_code=None, error_body=None, **_) -> None:
            with self.lock:
                self.active.pop(future, None)
            self.slots.release()
            outcome: Outcome = (None, f"download failed: {error}")
            try:
                outcome = (
                    (etag[0] if etag else None, None)
                    if error is None
                    else (None, _crt_problem(error, status_code, error_body))
                )
            finally:  # the waiting thread always hears back
                future.set_result(outcome)

        request = HttpRequest(
            "GET",
            self.path + quote(key, safe="/~"),
            HttpHeaders([("Host", self.host), ("Content-Length", "0")]),
        )
        return self.client.make_request(
            type=S3RequestType.DEFAULT,
            operation_name="GetObject",
            request=request,
            recv_filepath=str(path),
            on_headers=on_headers,
            on_done=on_done,
        )

    def close(self, cancel: bool) -> None:
        """Stop the dispatcher and wait for running requests (cancelled with ``cancel``),
        so no download writes into a folder about to be removed."""
        if cancel:
            while True:
                try:
                    job = self.queue.popleft()
                except IndexError:
                    break
                if job is not None:
                    job[2].cancel()
        self.queue.append(None)
        self.ready.release()
        self.dispatcher.join()
        with self.lock:
            running = list(self.active.values())
        for request in running:
            if cancel:
                request.cancel()
            request.finished_future.exception()


def _crt_problem(error: Exception, status: int | None, body: bytes | None) -> str:
    """Why a runtime download failed, worded as for boto3 (S3's error code first)."""
    text = (body or b"").decode("utf-8", "replace")
    code = re.search(r"<Code>([^<]+)</Code>", text)
    message = re.search(r"<Message>([^<]+)</Message>", text)
    if code:
        detail = f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
        return _object_problem(code.group(1), detail)
    if status:
        return _object_problem(str(status), f"HTTP {status}")
    return f"download failed: {getattr(error, 'name', None) or error}"


def _crt_unusable(session: boto3.Session, client) -> str | None:
    """Why the AWS Common Runtime cannot download for this session (None when it can).
    The runtime does not read proxy settings the way botocore does."""
    try:
        import awscrt.s3  # noqa: F401
    except ImportError:
        return "awscrt is not installed"
    if session.get_credentials() is None:
        return "no credentials"
    if getattr(client.meta.config, "signature_version", None) is UNSIGNED:
        return "unsigned requests"
    if client.meta.config.proxies:
        return "a proxy is configured"
    host = urlsplit(client.meta.endpoint_url).hostname or ""
    proxies = urllib.request.getproxies()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")) and not urllib.request.proxy_bypass(
        host
    ):
        return "a proxy is configured"
    return None


def _ca_bundle(session: boto3.Session) -> str | None:
    """The CA bundle botocore verifies TLS with (``AWS_CA_BUNDLE`` or the profile's ``ca_bundle``)."""
    return session._session.get_config_variable("ca_bundle") or None


def _downloads(
    session: boto3.Session, bucket: _Bucket, pool: ThreadPoolExecutor, workers: int, downloader: str | None
) -> _Downloads:
    """The runtime's downloads when asked for or usable, else boto3's."""
    choice = (downloader or os.environ.get(DOWNLOADER_ENV) or "auto").lower()
    if choice not in DOWNLOADERS:
        raise UsageError(f"{DOWNLOADER_ENV}={choice!r}: one of {', '.join(DOWNLOADERS)}")
    if choice == "boto3":
        return _ThreadDownloads(bucket, pool)
    why_not = _crt_unusable(session, bucket.client)
    if why_not is None:
        from awscrt.exceptions import AwsCrtError

        try:
            return _CrtDownloads(session, bucket.client, bucket.name, workers)
        except (AwsCrtError, OSError, ValueError) as exc:  # e.g. a CA bundle the runtime cannot load
            why_not = str(exc)
    if choice == "crt":
        raise UsageError(f"cannot download with the AWS Common Runtime: {why_not}", f"unset {DOWNLOADER_ENV}")
    return _ThreadDownloads(bucket, pool)


# -- accounts and regions ---------------------------------------------------------------


@dataclass
class _Unit:
    """One account and region: the folders it is read from and what reading did."""

    account: str
    region: str
    roots: list[str]
    in_window: int = 0
    downloaded: int = 0
    unchanged: int = 0
    untimed: int = 0
    conflicts: int = 0
    problems: list[FileProblem] = field(default_factory=list)
    list_errors: list[str] = field(default_factory=list)


def _discover(
    bucket: _Bucket,
    pool: ThreadPoolExecutor,
    window: Window,
    *,
    prefix: str,
    org_id: str | None,
    accounts: Sequence[str],
    regions: Sequence[str],
) -> tuple[list[_Unit], list[Coverage]]:
    """The account/region units to read, by delimiter listings of what was not given,
    and a ``failed`` coverage for each requested one that has no logs or cannot be listed."""
    root = logs_prefix(prefix)
    if org_id:
        containers = [f"{root}{normalize_org_id(org_id)}/"]
    else:
        try:
            children = bucket.folders(root)
        except _ListError as exc:
            raise SourceError(str(exc)) from None
        orgs = [f"{root}{name}/" for name in children if name.startswith("o-")]
        plain = any(_ACCOUNT.match(name) for name in children)
        containers = ([root] if plain or not orgs else []) + orgs
        if not children and not accounts:
            raise SourceError(
                f"no CloudTrail logs under {s3_url(bucket.name, root)}",
                "check --prefix, or the trail's bucket",
            )

    def failed(account: str, region: str, detail: str) -> Coverage:
        return Coverage(SOURCE, account, region, window.start, window.end, status=FAILED, detail=detail)

    def accounts_in(container: str) -> list[str]:
        if accounts:
            return list(accounts)
        return [name for name in bucket.folders(container) if _ACCOUNT.match(name)]

    failures: list[Coverage] = []
    account_roots: dict[str, list[str]] = {}
    for container, listed in zip(containers, pool.map(_catching(accounts_in), containers)):
        if isinstance(listed, _ListError):
            raise SourceError(str(listed)) from None
        for account in listed:
            account_roots.setdefault(account, []).append(f"{container}{account}/CloudTrail/")
    if not account_roots:
        raise SourceError(
            f"no account folders under {', '.join(s3_url(bucket.name, c) for c in containers)}",
            "check --prefix and --org-id",
        )

    def regions_of(roots: list[str]) -> tuple[dict[str, list[str]], list[str]]:
        present: dict[str, list[str]] = {}
        errors = []
        for account_root in roots:
            try:
                for name in bucket.folders(account_root):
                    present.setdefault(name, []).append(f"{account_root}{name}/")
            except _ListError as exc:
                errors.append(str(exc))
        return present, errors

    units: list[_Unit] = []
    items = list(account_roots.items())
    for (account, roots), (present, errors) in zip(items, pool.map(lambda item: regions_of(item[1]), items)):
        where = s3_url(bucket.name, roots[0])
        if errors and not present:
            for region in regions or [""]:
                failures.append(failed(account, region, "; ".join(errors)))
            continue
        if not present and not regions:
            failures.append(failed(account, "", f"no CloudTrail logs under {where}"))
            continue
        for region in regions or sorted(present):
            if region in present:
                units.append(_Unit(account, region, present[region], list_errors=list(errors)))
            else:
                failures.append(failed(account, region, f"no CloudTrail logs for {region} under {where}"))
    return units, failures


def _catching(function: Callable[[T], R]) -> Callable[[T], R | _ListError]:
    def call(item: T) -> R | _ListError:
        try:
            return function(item)
        except _ListError as exc:
            return exc

    return call


def _ahead(
    pool: ThreadPoolExecutor, function: Callable[[T], R], items: Iterable[T], depth: int
) -> Iterator[tuple[T, R]]:
    """``(item, function(item))`` in order, computed in ``pool`` with at most ``depth`` pending."""
    pending: deque[tuple[T, Future]] = deque()
    for item in items:
        pending.append((item, pool.submit(function, item)))
        if len(pending) >= depth:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()


# -- reading a window ------------------------------------------------------------------


class _Transfer:
    """Lists day folders, downloads what is new, stores it in bounded batches."""

    def __init__(
        self,
        store: Store,
        bucket: _Bucket,
        pool: ThreadPoolExecutor,
        downloads: _Downloads,
        folder: Path,
        window: Window,
        *,
        workers: int,
        lag: timedelta,
        batch_objects: int,
        progress: ProgressFn | None,
    ) -> None:
        self.store = store
        self.bucket = bucket
        self.pool = pool
        self.downloads = downloads
        self.folder = folder
        self.window = window
        self.workers = workers
        self.lag = lag
        self.batch_objects = batch_objects
        self.progress = progress
        self.total = BatchResult()
        self.in_flight: deque[tuple[_Object, _Unit, Path, Future]] = deque()
        # The batch: objects downloaded, then staged in the store, until their commit.
        self.arrived: list[tuple[_Object, _Unit, Path, str]] = []
        self.staged: list[tuple[_Object, _Unit, str]] = []
        self.batch_bytes = 0
        self.in_flight_bytes = 0
        self.submitted = 0
        self.finished = 0

    def run(self, units: list[_Unit]) -> BatchResult:
        tasks = [
            (unit, folder)
            for unit in units
            for root in unit.roots
            for folder in day_folders(root, self.window, self.lag)
        ]
        listed = 0
        list_folder = _catching(self.bucket.objects)
        for (unit, folder), outcome in _ahead(
            self.pool, lambda task: list_folder(task[1]), tasks, 2 * self.workers
        ):
            listed += 1
            if self.progress:
                self.progress("listing day folders", listed, len(tasks))
            if isinstance(outcome, _ListError):
                unit.list_errors.append(str(outcome))
                continue
            known = self.store.ingested_objects(SOURCE, s3_url(self.bucket.name, folder))
            for item in outcome:
                if not is_log_key(item.key):
                    if "CloudTrail-Digest" in item.key:
                        self.total.digests += 1
                    continue
                if not delivered_in(item.key, self.window, self.lag):
                    continue
                unit.in_window += 1
                if known.get(s3_url(self.bucket.name, item.key)) == item.etag:
                    unit.unchanged += 1
                    continue
                self._submit(item, unit)
        while self.in_flight:
            self._finish_one()
        self._flush()
        return self.total

    def _submit(self, item: _Object, unit: _Unit) -> None:
        self.submitted += 1
        # The local name is a counter and the compression suffix only: a key's last segment
        # may be no valid file name (too long, a NUL byte); problems name the s3:// URL.
        path = self.folder / f"{self.submitted:07d}{'.json.gz' if item.key.endswith('.gz') else '.json'}"
        self.in_flight.append((item, unit, path, self.downloads.submit(item.key, path)))
        self.in_flight_bytes += _expected_bytes(item)
        # Downloads run ahead of the store by at most one batch: bounded disk.
        while len(self.in_flight) >= self.batch_objects + self.workers or self.in_flight_bytes >= BATCH_BYTES:
            self._finish_one()

    def _finish_one(self) -> None:
        if not self.in_flight[0][3].done():
            # Work on what has arrived rather than wait idle for the next download.
            if len(self.arrived) + len(self.staged) >= min(EARLY_BATCH, self.batch_objects):
                self._flush(waiting=True)
            elif len(self.arrived) >= STAGE_FILES:
                self._stage(threads=1)
        item, unit, path, future = self.in_flight.popleft()
        self.in_flight_bytes -= _expected_bytes(item)
        etag, error = future.result()
        self.finished += 1
        if self.progress:
            self.progress("downloading objects", self.finished, self.submitted)
        if error is not None:
            problem = FileProblem(s3_url(self.bucket.name, item.key), error)
            unit.problems.append(problem)
            self.total.problems.append(problem)
            self.total.files += 1
            path.unlink(missing_ok=True)
            return
        self.arrived.append((item, unit, path, etag or item.etag))
        self.batch_bytes += decompressed_size(path)
        if len(self.arrived) + len(self.staged) >= self.batch_objects or self.batch_bytes >= BATCH_BYTES:
            self._flush()

    def _stage(self, threads: int | None) -> None:
        """Read the files that have arrived into the store's batch, and delete them."""
        if not self.arrived:
            return
        urls = [s3_url(self.bucket.name, item.key) for item, _, _, _ in self.arrived]
        try:
            self.store.stage_files([path for _, _, path, _ in self.arrived], names=urls, threads=threads)
        finally:
            for _, _, path, _ in self.arrived:
                path.unlink(missing_ok=True)
        self.staged.extend((item, unit, etag) for item, unit, _, etag in self.arrived)
        self.arrived = []

    def _flush(self, *, waiting: bool = False) -> None:
        """Store the batch.  ``waiting``: the store has caught up with the downloads, which
        are what the run waits on; the batch is then stored on one thread, leaving the other
        cores to the downloads (measured against moto on 2 CPUs: with files read a line at a
        time, ingest s3 spent 0.8 CPU-s less per 200k events, and finished 0.3 s sooner).  A
        store that falls behind gets full batches, stored on every core, as is the last one.
        """
        threads = 1 if waiting else None
        self._stage(threads)
        if not self.staged:
            return
        urls = [s3_url(self.bucket.name, item.key) for item, _, _ in self.staged]
        units = {url: unit for url, (_, unit, _) in zip(urls, self.staged)}
        result = self.store.commit_staged(
            objects=[IngestedObject(SOURCE, url, etag) for url, (_, _, etag) in zip(urls, self.staged)],
            window=self.window,
            threads=threads,
        )
        self.total.add(result)
        bad = set()
        for problem in result.problems:
            bad.add(problem.name)
            if problem.name in units:
                units[problem.name].problems.append(problem)
        for url, unit in units.items():
            unit.downloaded += url not in bad
            unit.untimed += result.untimed.get(url, 0)
            unit.conflicts += result.conflicts.get(url, 0)
        self.staged, self.batch_bytes = [], 0


def ingest_s3(
    store: Store,
    session: boto3.Session,
    *,
    window: Window,
    bucket: str | None = None,
    prefix: str = "",
    org_id: str | None = None,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
    workers: int = DEFAULT_WORKERS,
    progress: ProgressFn | None = None,
    lag: timedelta = DELIVERY_LAG,
    batch_objects: int = BATCH_OBJECTS,
    downloader: str | None = None,
) -> tuple[BatchResult, list[Coverage]]:
    """Read the CloudTrail records of ``window`` from a trail's bucket into ``store``.

    ``bucket`` may be a name or ``s3://bucket/prefix``; without it the trail is found with
    :func:`discover_trail`.  Organization, accounts and regions not given are discovered.
    Returns what was stored and one :class:`Coverage` per account/region (also recorded in
    the store): ``partial`` when some objects could not be read (they are named in the
    result's problems and retried by the next run), ``failed`` when an account or region
    could not be listed or holds no logs.

    ``downloader`` is one of :data:`DOWNLOADERS` (default ``$TRAILSCAN_S3_DOWNLOADER``,
    else ``auto``): see the module's docstring.

    Interrupted by Ctrl-C or SIGTERM (:mod:`trailscan.interrupt`), it removes its downloads,
    keeps every batch already stored, records each account/region it was reading as
    ``partial``, and raises :class:`KeyboardInterrupt`.

    Raises :class:`SourceError` when the bucket is missing or denied, or holds no trail logs.
    """
    if workers < 1:
        raise UsageError(f"--workers {workers}: must be at least 1")
    for account in accounts:
        if not _ACCOUNT.match(account):
            raise UsageError(f"--accounts {account!r}: not an AWS account id (12 digits)")
    if bucket is None:
        trail = discover_trail(session)
        bucket, prefix = trail.bucket, prefix or trail.prefix
    bucket, prefix = _split_url(bucket, prefix)
    reader = _Bucket(session, bucket, workers)
    with sigterm_as_interrupt():
        return _read_window(
            store, session, reader, window, prefix=prefix, org_id=org_id, accounts=accounts, regions=regions,
            workers=workers, progress=progress, lag=lag, batch_objects=batch_objects, downloader=downloader,
        )


def _read_window(
    store: Store,
    session: boto3.Session,
    reader: _Bucket,
    window: Window,
    *,
    prefix: str,
    org_id: str | None,
    accounts: Sequence[str],
    regions: Sequence[str],
    workers: int,
    progress: ProgressFn | None,
    lag: timedelta,
    batch_objects: int,
    downloader: str | None,
) -> tuple[BatchResult, list[Coverage]]:
    """:func:`ingest_s3` once the bucket is known.  Interrupted (Ctrl-C, SIGTERM), it
    removes its downloads, records every account/region it was reading as ``partial``,
    and lets the interruption go on."""
    units: list[_Unit] = []
    with tempfile.TemporaryDirectory(prefix="trailscan-s3-", ignore_cleanup_errors=True) as folder:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trailscan-s3")
        downloads: _Downloads | None = None
        finished = False
        try:
            units, failures = _discover(
                reader, pool, window, prefix=prefix, org_id=org_id, accounts=accounts, regions=regions
            )
            downloads = _downloads(session, reader, pool, workers, downloader)
            transfer = _Transfer(
                store,
                reader,
                pool,
                downloads,
                Path(folder),
                window,
                workers=workers,
                lag=lag,
                batch_objects=batch_objects,
                progress=progress,
            )
            total = transfer.run(units)
            finished = True
        except (KeyboardInterrupt, RuntimeError) as error:
            stands_for = interruption(error)
            if not isinstance(stands_for, KeyboardInterrupt):
                raise
            _record_interrupted(store, units, window, stands_for)
            raise stands_for from None
        finally:
            # On an interruption, queued downloads are dropped, running ones finish
            # before their folder goes; every batch already stored stays stored, and
            # one still being staged is dropped.
            if not finished:
                store.discard_staged()
            if downloads is not None:
                downloads.close(cancel=not finished)
            pool.shutdown(wait=True, cancel_futures=True)
    events = _events_by_unit(store, window)
    coverages = [_coverage(unit, window, events.get((unit.account, unit.region), 0)) for unit in units]
    coverages += failures
    for coverage in coverages:
        store.record_coverage(coverage)
    return total, coverages


def _record_interrupted(store: Store, units: list[_Unit], window: Window, interruption: BaseException) -> None:
    """Coverage for a run cut short: every unit ``partial``, saying what was stored."""
    why = "terminated (SIGTERM)" if isinstance(interruption, Terminated) else "interrupted"
    store.discard_staged()  # what was staged is not stored: the transaction is never opened
    try:
        events = _events_by_unit(store, window)
        for unit in units:
            coverage = _coverage(unit, window, events.get((unit.account, unit.region), 0))
            coverage.status = FAILED if coverage.status == FAILED else PARTIAL
            coverage.detail = f"{why} before the end: {coverage.detail}"
            store.record_coverage(coverage)
    except (TrailscanError, duckdb.Error):
        pass  # the interruption is what is reported; the next run reads what this did not


def _expected_bytes(item: _Object) -> int:
    """What an object will hold decompressed, before it is downloaded (then its gzip
    trailer says exactly)."""
    return item.size * (GZIP_RATIO if item.key.endswith(".gz") else 1)


def _split_url(bucket: str, prefix: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``."""
    if bucket.startswith("s3://"):
        name, _, path = bucket[len("s3://") :].partition("/")
        if path.strip("/") and prefix.strip("/"):
            raise UsageError(f"--bucket {bucket} already holds a prefix; drop --prefix {prefix}")
        bucket, prefix = name, path or prefix
    if not bucket:
        raise UsageError("--bucket is empty")
    return bucket, prefix


def _events_by_unit(store: Store, window: Window) -> dict[tuple[str, str], int]:
    """Events the store holds in ``window``, per account and region (whichever run stored them)."""
    _, rows = store.query(
        "SELECT account_id, aws_region, count(*) FROM events "
        "WHERE event_time >= $start AND event_time < $end GROUP BY ALL",
        {"start": window.start, "end": window.end},
    )
    return {(account, region): count for account, region, count in rows}


def _coverage(unit: _Unit, window: Window, events: int) -> Coverage:
    parts = [
        f"{unit.in_window} log files in the window",
        f"{unit.downloaded} downloaded",
        f"{unit.unchanged} already stored",
    ]
    if unit.problems:
        parts.append(f"{len(unit.problems)} unreadable")
    detail = ", ".join(parts + record_notes(unit.untimed, unit.conflicts))
    if unit.list_errors:
        detail += "; " + "; ".join(unit.list_errors)
    status = FAILED if unit.list_errors else PARTIAL if unit.problems else COMPLETE
    return Coverage(
        SOURCE,
        unit.account,
        unit.region,
        window.start,
        window.end,
        events=events,
        skipped=unit.untimed,
        status=status,
        detail=detail,
    )


__all__ = [
    "DELIVERY_LAG",
    "Trail",
    "choose_trail",
    "day_folders",
    "day_prefixes",
    "delivered_in",
    "delivery_days",
    "delivery_time",
    "discover_trail",
    "ingest_s3",
    "is_log_key",
    "logs_prefix",
    "normalize_org_id",
    "region_prefix",
    "s3_url",
]


class S3Source:
    """``s3``: a trail's bucket, the window's day folders of every account and region."""

    name = "s3"
    remote = True
    asks_caller_identity = False

    def ingest(self, store: Store, request, *, window: Window | None, session, progress=None):
        if window is None:
            raise UsageError("reading a trail's bucket needs a time window", "pass --since, e.g. 24h")
        return ingest_s3(
            store,
            session,
            window=window,
            bucket=request.bucket,
            prefix=request.prefix,
            org_id=request.org_id,
            accounts=list(request.accounts),
            regions=list(request.regions),
            workers=request.workers,
            progress=progress,
        )

    def required_statements(self, request, notes: list[str]) -> list[dict]:
        from trailscan.iam_policy import BUCKET_PLACEHOLDER, check_account, kms_statement, split_s3, statement

        arn = f"arn:{request.partition}"
        statements: list[dict] = []
        bucket, prefix = split_s3(request.bucket, request.prefix, option="--bucket")
        if bucket is None:
            bucket = BUCKET_PLACEHOLDER
            statements.append(statement("DiscoverTrail", ["cloudtrail:DescribeTrails"], "*"))
            notes.append(f"no --bucket given: the trail is discovered with describe-trails; replace {BUCKET_PLACEHOLDER} "
                         "with its bucket (or pass --bucket)")
        for account in request.accounts:
            check_account(account)
        # The key prefixes the S3 source lists and reads (see trailscan.sources.s3): everything
        # under AWSLogs/, or only the organization's or the accounts' folders when given.
        root = logs_prefix(prefix)
        if request.org_id and request.accounts:
            read = [f"{root}{normalize_org_id(request.org_id)}/{account}/CloudTrail/*" for account in request.accounts]
            listed = read
        elif request.org_id:
            read = listed = [f"{root}{normalize_org_id(request.org_id)}/*"]
        elif request.accounts:
            # Organization trails are found by listing AWSLogs/ itself; then only the accounts'
            # folders, with or without the o-ORGID segment.
            read = [key for account in request.accounts
                    for key in (f"{root}{account}/CloudTrail/*", f"{root}o-*/{account}/CloudTrail/*")]
            listed = [root, *read]
        else:
            read = listed = [f"{root}*"]
        statements.append(statement(
            "ListTrailLogFolders",
            ["s3:ListBucket"],
            f"{arn}:s3:::{bucket}",
            # IfExists: HeadBucket, which finds the bucket's region, also needs s3:ListBucket and
            # carries no s3:prefix; every listing carries one and must match.
            {"StringLikeIfExists": {"s3:prefix": listed}},
        ))
        statements.append(statement(
            "ReadTrailLogFiles", ["s3:GetObject"], [f"{arn}:s3:::{bucket}/{key}" for key in read]
        ))
        if request.kms_keys:
            statements.append(kms_statement("DecryptTrailLogFiles", ["kms:Decrypt"], request.kms_keys))
        else:
            notes.append("if the trail's bucket uses SSE-KMS, pass --kms-key ARN to add kms:Decrypt on its key "
                         "(and allow this role in the key policy)")
        return statements
