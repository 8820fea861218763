"""The ``lookup`` source: CloudTrail's ``LookupEvents`` API, for accounts without a trail bucket.

What the API allows (SPEC §4), and what this module does about it:

- **Regional, management events only, last 90 days.**  Global-endpoint STS and IAM events are
  recorded in us-east-1 (since 2021), regional STS endpoints log in their own region: read
  us-east-1 and the cluster regions.  The window is clamped to the 90-day floor and the coverage
  says so; data events (S3 object calls and the like) are never visible, and the coverage says
  that too.
- **2 requests/s per account per region, not adjustable; at most 50 events a page.**  Every HTTP
  attempt (botocore's retries included) waits for a :class:`TokenBucket` of its region, regions
  are read in parallel threads, so a run takes ``pages / 2`` seconds per region.  Throttling
  that still happens (another tool sharing the limit) is retried and never ends a run.
- **One lookup attribute per call.**  The default reads every management event of the window:
  the only complete answer.  ``quick`` instead asks for ``EventName=AssumeRoleWithWebIdentity``
  and ``EventName=AssumeRoleForPodIdentity`` (then, where Pod Identity is in use, the
  ``AssumeRole`` calls EKS makes for it), then for each session those minted its calls, by
  ``AccessKeyId`` (or ``Username``, the session name, where the key is not in the event); the
  coverage says what that cannot see.

Pages travel from the region threads to the calling thread, which alone writes the store: a
few pages per transaction, then a checkpoint (:meth:`Store.set_state`) recording which spans of
time are fully stored for that account, region and lookup.  An interrupted run started again
pages only what is missing — NextTokens are not kept, as they may expire; the oldest event time
fully committed is.  Events are unique by ``eventID`` in the store, so the one-second overlaps
at span edges are harmless.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from trailscan.aws import default_session
from trailscan.errors import SourceError, UsageError
from trailscan.model import COMPLETE, FAILED, PARTIAL, BatchResult, Coverage, ProgressFn, Window, utc_now
from trailscan.store import Store

SOURCE = "lookup"
#: Where CloudTrail records global-endpoint STS and IAM events (since 2021).
GLOBAL_REGION = "us-east-1"
#: Event history keeps 90 days; the floor is taken a few minutes inside that, because AWS's own
#: floor moves on while the run pages.
RETENTION = timedelta(days=90)
FLOOR_MARGIN = timedelta(minutes=5)
#: CloudTrail shows an event in event history minutes after the call: spans this close to the
#: time of the run are not checkpointed, so the next run reads them again.
HISTORY_LAG = timedelta(minutes=15)
PAGE_SIZE = 50  # the API's maximum
RATE = 2.0  # requests/s per account and region: LookupEvents' fixed limit
PAGES_PER_BATCH = 4  # pages stored per transaction (and per checkpoint)
#: A network that drops packets costs each attempt its timeout: 3 attempts of 4 s to connect
#: (20 s to read: a page comes back in a second or two) and botocore's back-off between them
#: give up within ~15 s, beside ~7 s for STS (measured: see tests/test_lookup.py).  Throttling is retried by :func:`_pages` itself.
MAX_ATTEMPTS = 3
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=4,
    read_timeout=20,
)
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
#: Rounds of our own back-off once botocore has given up on a throttled call (each round is
#: itself up to 10 attempts): the limit is shared, another reader may hold it for a while.
THROTTLE_ROUNDS = 8

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
#: How far before the window quick mode looks for the sessions whose calls fall inside it:
#: an IRSA session lasts an hour unless asked otherwise, a Pod Identity one six hours.
WEB_IDENTITY_LOOKBACK = timedelta(hours=1)
POD_IDENTITY_LOOKBACK = timedelta(hours=6)
#: Changes are read from this long before the window (what the explainer attaches to findings).
CHANGE_LOOKBACK = timedelta(hours=24)
#: Services whose events CloudTrail records in us-east-1 only (global endpoints).
GLOBAL_SOURCES = frozenset({"iam.amazonaws.com", "organizations.amazonaws.com", "sts.amazonaws.com"})
GLOBAL_REGION = "us-east-1"


def change_event_names() -> list[tuple[str, str]]:
    """``(event source, event name)`` of every change event, as the named query
    ``change_events`` selects them (the one list of what counts as a change)."""
    import re

    from trailscan.queries import load_queries

    sql = load_queries()["change_events"].sql
    return list(dict.fromkeys(re.findall(r"event_source = '([^']+)' AND event_name = '([^']+)'", sql)))
#: A session whose expiry is in neither response nor request: the longest STS allows.
MAX_SESSION = timedelta(hours=12)

DATA_EVENTS_NOTE = (
    "data events (S3 object-level calls, Lambda invocations, DynamoDB item calls and the like) "
    "are never visible through LookupEvents: read the trail's S3 bucket for those"
)


# -- pacing ----------------------------------------------------------------------------------


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, ``burst`` at once.

    :meth:`reserve` takes a token at once and says how long to wait before using it, so the
    waiting happens outside the lock and can be cut short.  ``clock`` is monotonic seconds
    (injectable for tests).
    """

    def __init__(
        self, rate: float, burst: float = 1.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take one token; return the seconds to wait before using it (0.0: use it now)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class AdaptivePacer:
    """At most ``burst`` requests in any ``burst / rate`` seconds (plus a margin), the margin
    growing when the API throttles and shrinking back as calls succeed.

    AWS documents LookupEvents' limit as 2 requests per second; a server that enforces it
    as a strict one-second sliding window refuses a third request that arrives a hair
    under a second after the first, which evenly spaced requests do whenever the network
    jitters.  So each request waits until ``window + margin`` after the request ``rate``
    places before it; a throttle doubles the margin (up to :attr:`MAX_MARGIN`), each
    success takes a little off it (down to :attr:`MIN_MARGIN`).  ``clock`` is injectable.
    """

    MIN_MARGIN = 0.02
    MAX_MARGIN = 0.5

    def __init__(self, rate: float, burst: int = 2, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        # `burst` requests per `burst / rate` seconds: AWS's 2/s is 2 in any second.
        self.slots = burst
        self.window = burst / rate
        self.margin = self.MIN_MARGIN
        self.throttles = 0
        self._clock = clock
        self._sent: deque[float] = deque(maxlen=self.slots)
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next request's time; return the seconds to wait before sending it."""
        with self._lock:
            now = self._clock()
            at = now
            if len(self._sent) == self.slots:
                at = max(now, self._sent[0] + self.window + self.margin)
            self._sent.append(at)
            return at - now

    def throttled(self) -> None:
        with self._lock:
            self.throttles += 1
            self.margin = min(self.MAX_MARGIN, self.margin * 2)

    def succeeded(self) -> None:
        with self._lock:
            self.margin = max(self.MIN_MARGIN, self.margin * 0.97)


# -- regions and account -----------------------------------------------------------------------


def default_regions(session: boto3.Session, cluster_regions: Sequence[str] = ()) -> list[str]:
    """us-east-1 (global STS/IAM events), the configured region, the clusters' regions.

    The configured region is the session's (``AWS_DEFAULT_REGION``, the profile's ``region``),
    else ``AWS_REGION``, which the other AWS SDKs and SPEC §8 honour but boto3 does not."""
    configured = session.region_name or os.environ.get("AWS_REGION", "")
    return _unique([GLOBAL_REGION, configured, *cluster_regions])


def _unique(items: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        item = item.strip()
        if item:
            seen.setdefault(item, None)
    return list(seen)


def _caller_account(session: boto3.Session) -> str:
    """The account of the session's credentials, or "" when STS cannot say (the lookups then
    report their own errors, region by region)."""
    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=10)
    try:
        sts = session.client("sts", region_name=session.region_name or GLOBAL_REGION, config=config)
        return sts.get_caller_identity()["Account"]
    except (ClientError, BotoCoreError):
        return ""


# -- time spans and checkpoints ------------------------------------------------------------------

Span = tuple[float, float]  # epoch seconds, both ends included (as LookupEvents treats them)


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[list[float]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def _gaps(lo: float, hi: float, covered: list[Span]) -> list[Span]:
    """The parts of ``[lo, hi]`` outside the ``covered`` spans, newest first."""
    gaps: list[Span] = []
    cursor = lo
    for c_lo, c_hi in _merge(covered):
        if c_hi <= cursor:
            continue
        if c_lo >= hi:
            break
        if c_lo > cursor:
            gaps.append((cursor, c_lo))
        cursor = max(cursor, c_hi)
    if cursor < hi:
        gaps.append((cursor, hi))
    return gaps[::-1]


def _checkpoint_key(account: str, region: str, attribute: tuple[str, str] | None) -> str:
    """One checkpoint per account, region and lookup ("all" for every management event).

    The window is not part of the key but of the value (the spans stored): ``--since 24h``
    run again names a window a few minutes later, and should still resume."""
    what = "all" if attribute is None else f"{attribute[0]}={attribute[1]}"
    return f"{SOURCE}:{account or 'unknown-account'}:{region}:{what}"


def _load_spans(store: Store, key: str, floor: float) -> list[Span]:
    state = store.get_state(key) or {}
    spans = []
    for lo, hi in state.get("covered", []):
        spans.append((_parse_iso(lo).timestamp(), _parse_iso(hi).timestamp()))
    return [(lo, hi) for lo, hi in _merge(spans) if hi > floor]


def _save_spans(store: Store, key: str, spans: list[Span]) -> None:
    store.set_state(key, {"covered": [[_epoch_iso(lo), _epoch_iso(hi)] for lo, hi in _merge(spans)]})


# -- the work: jobs, pages, and the region threads ------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """One paged lookup: ``attribute`` (None: every management event) over ``[start, end]``."""

    region: str
    attribute: tuple[str, str] | None
    start: float
    end: float
    checkpoint: bool = True
    #: Store what it finds before the window too (the change events the explainer reads from
    #: a day before the window), not only the window's events.
    before: bool = False

    @property
    def span(self) -> float:
        return max(self.end - self.start, 0.0)


@dataclass
class _Page:
    job: _Job
    events: list[dict[str, Any]]
    last: bool
    attempts: int  # HTTP requests this page took (1 + retries)


@dataclass
class _RegionDone:
    region: str
    error: str | None = None
    attempts: int = 0  # requests made by the failed call
    stopped: bool = False
    crash: BaseException | None = None


@dataclass
class _Status:
    """A region's state between pages, for the progress line: connecting, retrying."""

    region: str
    text: str


class _Stopped(Exception):
    """Raised inside a region thread once the run is stopping."""


class _LookupFailed(Exception):
    """A lookup that cannot go on (AccessDenied, a network failure …): ends its region."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts


class _Clients:
    """One CloudTrail client per region, created on first use from the injected session
    (boto3 sessions are not thread-safe, hence the lock), each paced by its own bucket."""

    def __init__(self, session: boto3.Session, rate: float, stop: threading.Event) -> None:
        self._session = session
        self._rate = rate
        self._stop = stop
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Where the hooks say "connecting" and "retrying" (the running phase's queue).
        self.status: queue.Queue | None = None
        self._answered: set[str] = set()

    def _say(self, region: str, text: str) -> None:
        if self.status is not None:
            self.status.put(_Status(region, text))

    def get(self, region: str) -> Any:
        with self._lock:
            if region not in self._clients:
                client = self._session.client("cloudtrail", region_name=region, config=CLIENT_CONFIG)
                # Requests paced to a sliding window that adapts to throttling (AdaptivePacer).
                pacer = AdaptivePacer(self._rate)
                stop = self._stop

                def pace(region: str = region, **_: Any) -> None:
                    # Every HTTP attempt, botocore's retries included, takes a slot.
                    if region not in self._answered:
                        self._say(region, "connecting")
                    delay = pacer.reserve()
                    if stop.wait(delay) if delay > 0 else stop.is_set():
                        raise _Stopped()

                def observe(response: Any = None, caught_exception: Any = None, attempts: int = 1,
                            region: str = region, **_: Any) -> None:
                    # Every attempt's answer, before botocore decides to retry it.
                    if response is None:
                        if caught_exception is not None:
                            self._say(region, f"retrying: no answer ({type(caught_exception).__name__}), "
                                              f"attempt {attempts} of {MAX_ATTEMPTS}")
                        return
                    self._answered.add(region)
                    code = (response[1] or {}).get("Error", {}).get("Code", "")
                    if code in THROTTLING_CODES:
                        pacer.throttled()
                    elif response[0] is not None and response[0].status_code < 400:
                        pacer.succeeded()

                client.meta.events.register("before-send.cloudtrail.LookupEvents", pace)
                client.meta.events.register("needs-retry.cloudtrail.LookupEvents", observe)
                self._clients[region] = client
            return self._clients[region]


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _attempts(response: dict[str, Any]) -> int:
    return 1 + int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)


def _pages(client: Any, job: _Job, stop: threading.Event) -> Iterator[_Page]:
    """Every page of one lookup, newest first.  Throttling is retried (botocore first, then
    here); a NextToken that stopped working is replaced by restarting below the oldest event
    already returned."""
    params: dict[str, Any] = {
        "StartTime": _from_epoch(job.start),
        "EndTime": _from_epoch(job.end),
        "MaxResults": PAGE_SIZE,
    }
    if job.attribute is not None:
        params["LookupAttributes"] = [{"AttributeKey": job.attribute[0], "AttributeValue": job.attribute[1]}]
    token: str | None = None
    oldest: datetime | None = None
    throttled_rounds = restarts = 0
    attempts = 0
    while True:
        if stop.is_set():
            raise _Stopped()
        try:
            answer = client.lookup_events(**params, **({"NextToken": token} if token else {}))
        except ClientError as error:
            attempts += _attempts(error.response)
            code = _error_code(error)
            if code in THROTTLING_CODES and throttled_rounds < THROTTLE_ROUNDS:
                throttled_rounds += 1
                if stop.wait(min(2.0**throttled_rounds, 30.0)):
                    raise _Stopped() from None
                continue
            if code == "InvalidNextTokenException" and token and restarts < 3:
                restarts += 1
                token = None
                if oldest is not None:
                    params["EndTime"] = oldest
                continue
            message = error.response.get("Error", {}).get("Message", "")
            raise _LookupFailed(
                f"{code or 'error'}: {message}" if message else code or str(error), attempts
            ) from None
        except BotoCoreError as error:
            raise _LookupFailed(str(error), attempts + 1) from None
        attempts += _attempts(answer)
        throttled_rounds = 0
        events = answer.get("Events", [])
        token = answer.get("NextToken")
        if events:
            oldest = min(event["EventTime"] for event in events)
        yield _Page(job, events, last=not token, attempts=attempts)
        attempts = 0
        if not token:
            return


def _read_region(
    clients: _Clients, region: str, jobs: list[_Job], out: queue.Queue, stop: threading.Event
) -> None:
    """A region thread: run the region's jobs in order, sending pages to the calling thread."""
    done = _RegionDone(region)
    try:
        client = clients.get(region)
        for job in jobs:
            for page in _pages(client, job, stop):
                out.put(page)
    except _Stopped:
        done.stopped = True
    except _LookupFailed as failure:
        done.error, done.attempts = failure.message, failure.attempts
    except BaseException as crash:  # a bug: handed to the calling thread, which re-raises it
        done.crash = crash
    finally:
        out.put(done)


# -- per-region bookkeeping ------------------------------------------------------------------


@dataclass
class _Region:
    name: str
    pages: int = 0
    calls: int = 0
    retried: int = 0
    result: BatchResult = field(default_factory=BatchResult)
    error: str | None = None
    resumed: float = 0.0  # seconds of the window already stored by an earlier run
    finished: bool = False  # its jobs of the last phase all ran to the end
    # progress estimate over the current phase
    phase_pages: int = 0
    phase_span: float = 0.0
    phase_done_span: float = 0.0
    current_oldest: dict[_Job, float] = field(default_factory=dict)
    # what quick mode found here
    found: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.found[what] = self.found.get(what, 0) + n


@dataclass
class _Pending:
    documents: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # one per document: the store keys them by name
    pages: int = 0
    # per job: oldest event time committed with these pages, and whether the job finished
    jobs: dict[_Job, tuple[float | None, bool]] = field(default_factory=dict)


class _Run:
    """The calling thread's side: starts the region threads of a phase, stores their pages in
    batches, checkpoints, reports progress, and stops everything cleanly on interruption."""

    def __init__(
        self,
        store: Store,
        clients: _Clients,
        stop: threading.Event,
        *,
        account: str,
        window: Window,
        regions: list[str],
        progress: ProgressFn | None,
        label: str,
        started: datetime,
        floor: datetime,
    ) -> None:
        self.store = store
        self.clients = clients
        self.stop = stop
        self.account = account
        self.window = window
        self.regions = {name: _Region(name) for name in regions}
        self.progress = progress
        self.label = label
        self.lag_limit = (started - HISTORY_LAG).timestamp()
        self.floor = floor.timestamp()
        self.spans: dict[str, list[Span]] = {}
        self.pending: dict[str, _Pending] = {}
        self.on_record: Callable[[str, _Job, dict[str, Any]], None] | None = None
        self.seen_account = ""
        self.interrupted = False

    # -- checkpoints

    def covered(self, region: str, attribute: tuple[str, str] | None) -> list[Span]:
        key = _checkpoint_key(self.account, region, attribute)
        if key not in self.spans:
            self.spans[key] = _load_spans(self.store, key, self.floor)
        return self.spans[key]

    def plan(self, region: str, attribute: tuple[str, str] | None, start: float, end: float) -> list[_Job]:
        """Jobs for the parts of ``[start, end]`` no earlier run has stored."""
        gaps = _gaps(start, end, self.covered(region, attribute))
        self.regions[region].resumed += (end - start) - sum(hi - lo for lo, hi in gaps)
        return [_Job(region, attribute, lo, hi) for lo, hi in gaps]

    # -- a phase

    def run_phase(self, jobs: dict[str, list[_Job]]) -> None:
        """Run each region's jobs, regions in parallel; return when all are done."""
        jobs = {region: todo for region, todo in jobs.items() if todo and not self.regions[region].error}
        if not jobs:
            return
        out: queue.Queue = queue.Queue()
        self.clients.status = out
        for region, todo in jobs.items():
            state = self.regions[region]
            state.phase_pages, state.phase_span, state.phase_done_span = 0, sum(j.span for j in todo), 0.0
            state.current_oldest.clear()
            state.finished = False
        threads = [
            threading.Thread(
                target=_read_region,
                args=(self.clients, region, todo, out, self.stop),
                name=f"lookup-{region}",
                daemon=True,
            )
            for region, todo in jobs.items()
        ]
        for thread in threads:
            thread.start()
        running = set(jobs)
        crash: BaseException | None = None
        try:
            while running and crash is None:
                try:
                    message = out.get(timeout=0.1)
                except queue.Empty:
                    continue
                crash = self._handle(message, running)
        except KeyboardInterrupt:
            self.interrupted = True
        except BaseException:
            self.stop.set()  # the store failed us: stop reading, keep what is committed
            raise
        if crash is not None or self.interrupted:
            # Let the threads finish their call in flight, and store what they fetched.
            self.stop.set()
            deadline = time.monotonic() + 10.0
            while running and time.monotonic() < deadline:
                try:
                    message = out.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._handle(message, running, report=False)
        for region in jobs:
            self._flush(region)
        if crash is not None:
            raise crash
        if self.interrupted:
            raise KeyboardInterrupt

    def _handle(
        self, message: _Page | _RegionDone | _Status, running: set[str], report: bool = True
    ) -> BaseException | None:
        if isinstance(message, _Status):
            if report and self.progress is not None:
                state = self.regions[message.region]
                self.progress(f"{self.label} {state.name}: {message.text}", state.pages, None)
            return None
        if isinstance(message, _RegionDone):
            running.discard(message.region)
            state = self.regions[message.region]
            state.calls += message.attempts
            state.retried += max(message.attempts - 1, 0)
            if message.error:
                state.error = message.error
            state.finished = not (message.error or message.stopped or message.crash)
            self._flush(message.region)
            return message.crash
        self._take(message)
        if report and self.progress is not None:
            state = self.regions[message.job.region]
            self.progress(f"{self.label} {state.name}", state.pages, self._estimate(state, message))
        return None

    def _take(self, page: _Page) -> None:
        job = page.job
        state = self.regions[job.region]
        state.pages += 1
        state.phase_pages += 1
        state.calls += page.attempts
        state.retried += page.attempts - 1
        pending = self.pending.setdefault(job.region, _Pending())
        oldest, _ = pending.jobs.get(job, (None, False))
        start, end = self.window.start, self.window.end
        for event in page.events:
            moment = event["EventTime"]
            epoch = moment.timestamp()
            oldest = epoch if oldest is None else min(oldest, epoch)
            text = event.get("CloudTrailEvent")
            if not text:
                continue
            if self.on_record is not None or not self.seen_account:
                # The text is what the caller's request made of it: not always a record.
                record = _parse_record(text)
                if record is not None:
                    account = record.get("recipientAccountId")
                    self.seen_account = self.seen_account or (account if isinstance(account, str) else "")
                    if self.on_record is not None:
                        self.on_record(job.region, job, record)
            if start <= moment < end or (job.before and moment < end):
                pending.documents.append(text)
                pending.names.append(f"{SOURCE}:{job.region}:{event.get('EventId', '')}")
        pending.jobs[job] = (oldest, page.last)
        pending.pages += 1
        if page.last:
            state.phase_done_span += job.span
            state.current_oldest.pop(job, None)
        elif oldest is not None:
            state.current_oldest[job] = oldest
        if pending.pages >= PAGES_PER_BATCH:
            self._flush(job.region)

    def _estimate(self, state: _Region, page: _Page) -> int | None:
        """Total pages, estimated from the share of the phase's time span read so far (events
        come newest first, so each page's oldest event says how far down the window it is)."""
        done = state.phase_done_span + sum(job.end - oldest for job, oldest in state.current_oldest.items())
        before = state.pages - state.phase_pages
        if state.phase_span <= 0 or done >= state.phase_span:
            return state.pages if page.last else None
        if done <= 0:
            return None
        return before + max(state.phase_pages + 1, round(state.phase_pages * state.phase_span / done))

    def _flush(self, region: str) -> None:
        """Store the region's pending pages in one transaction, then checkpoint what they complete."""
        pending = self.pending.pop(region, None)
        if pending is None or not pending.pages:
            return
        if pending.documents:
            self.regions[region].result.add(
                self.store.ingest_documents(pending.documents, origin=SOURCE, names=pending.names)
            )
        for job, (oldest, finished) in pending.jobs.items():
            if not job.checkpoint:
                continue
            # A finished job covers its whole span; an unfinished one everything above its
            # oldest event (events of that very second may continue on the next page, and
            # LookupEvents' inclusive EndTime asks for them again).
            low = job.start if finished else oldest
            high = min(job.end, self.lag_limit)
            if low is None or high <= low:
                continue
            key = _checkpoint_key(self.account, region, job.attribute)
            spans = self.covered(region, job.attribute)
            spans[:] = _merge([*spans, (low, high)])
            _save_spans(self.store, key, spans)


# -- quick mode: the sessions web identity and Pod Identity minted ---------------------------------


@dataclass(frozen=True)
class _Session:
    access_key_id: str | None
    session_name: str | None
    minted: float
    expires: float

    @property
    def attribute(self) -> tuple[str, str]:
        if self.access_key_id:
            return ("AccessKeyId", self.access_key_id)
        return ("Username", self.session_name or "")


def minted_session(record: dict[str, Any]) -> _Session | None:
    """The session a successful ``AssumeRoleWithWebIdentity``, or Pod Identity's ``AssumeRole``
    (made by ``pods.eks.amazonaws.com``), minted: its access key id (CloudTrail keeps it in
    ``responseElements.credentials``; only the session token is redacted), its session name,
    and its lifetime.  None for refused calls and other events.

    ``AssumeRoleForPodIdentity`` itself mints nothing visible: its ``responseElements`` are null
    and its caller is the node role; the session is in EKS's ``AssumeRole``.
    """
    if record.get("errorCode"):
        return None
    name = record.get("eventName")
    identity = _mapping(record.get("userIdentity"))
    if name == "AssumeRole":
        if identity.get("invokedBy") != POD_IDENTITY_SERVICE:
            return None
    elif name != "AssumeRoleWithWebIdentity":
        return None
    response = _mapping(record.get("responseElements"))
    request = _mapping(record.get("requestParameters"))
    key = _text_or_none(_mapping(response.get("credentials")).get("accessKeyId"))
    role_user = _text_or_none(_mapping(response.get("assumedRoleUser")).get("arn")) or ""
    session_name = role_user.rsplit("/", 1)[1] if "/" in role_user else _text_or_none(request.get("roleSessionName"))
    if not key and not session_name:
        return None
    try:
        minted = _parse_iso(record["eventTime"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None
    return _Session(key, session_name, minted, _expiry(response, request, minted))


def _expiry(response: dict[str, Any], request: dict[str, Any], minted: float) -> float:
    raw = _mapping(response.get("credentials")).get("expiration")
    if isinstance(raw, str):
        # STS writes "Apr 16, 2024, 3:20:04 PM" (UTC) here; tolerate ISO too.
        for parse in (lambda s: datetime.strptime(s, "%b %d, %Y, %I:%M:%S %p"), _parse_iso):
            try:
                moment = parse(raw)
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    duration = request.get("durationSeconds")
    if isinstance(duration, int) and duration > 0:
        return minted + duration
    return minted + MAX_SESSION.total_seconds()


def _quick_detail(state: _Region, lookback: tuple[datetime, datetime]) -> str:
    found = state.found
    parts = [
        f"quick mode (targeted lookups): {found.get('web', 0)} AssumeRoleWithWebIdentity "
        f"({found.get('web_refused', 0)} refused) and {found.get('pod', 0)} AssumeRoleForPodIdentity "
        f"({found.get('pod_refused', 0)} refused) events"
    ]
    if found.get("pod_assume"):
        parts.append(f"{found['pod_assume']} AssumeRole calls by EKS Pod Identity")
    if found.get("changes_unread"):
        parts.append(f"IAM and Organizations changes NOT read: they are recorded in {GLOBAL_REGION}, not among the "
                     "regions read")
    else:
        parts.append(f"{found.get('changes', 0)} change events (IAM and Organizations ones in {GLOBAL_REGION}) from "
                     "24 hours before the window")
    parts.append(
        f"the calls of {found.get('by_key', 0) + found.get('by_name', 0)} sessions minted in the window "
        f"({found.get('by_key', 0)} by access key, {found.get('by_name', 0)} by session name)"
    )
    parts.append(
        "NOT visible in quick mode: calls by principals that minted no web-identity or Pod Identity "
        "session in the window (pods that fell back to the node's instance role, IAM users, other "
        "roles and services), calls of web-identity sessions minted before "
        f"{_text(lookback[0])} or Pod Identity sessions minted before {_text(lookback[1])}, "
        "and every other event of the window; run without --quick for the complete window"
    )
    return "; ".join(parts)


# -- the entry point -----------------------------------------------------------------------------


def ingest_lookup(
    store: Store,
    session: boto3.Session | None = None,
    *,
    window: Window,
    regions: Sequence[str] | None = None,
    quick: bool = False,
    progress: ProgressFn | None = None,
    rate: float = RATE,
    account: str | None = None,
    change_lookback: bool = True,
) -> tuple[BatchResult, list[Coverage]]:
    """Read the window's CloudTrail events from ``LookupEvents`` into ``store``, region by region
    in parallel, and record one coverage per region.

    The change events of the 24 hours before the window are looked up by name too (one lookup
    per event name and region; ``change_lookback=False`` skips them in full mode): a refusal
    often began after a change made before the window.

    ``session`` defaults to ``boto3.Session()`` (standard AWS configuration: ``AWS_PROFILE``,
    ``AWS_REGION``, ``AWS_ENDPOINT_URL_CLOUDTRAIL`` …).  ``regions`` defaults to
    :func:`default_regions`.  ``rate`` is the requests per second per region (the API allows 2).
    ``account`` labels coverage and checkpoints; by default ``sts:GetCallerIdentity`` says.

    The result's ``files`` counts pages read.  Coverage is ``complete`` only when every event of
    the window in that region was read; ``partial`` when quick, clamped to 90 days, interrupted,
    or stopped by an error after reading some of it; ``failed`` when nothing could be read.
    A ``KeyboardInterrupt`` (from the progress callback too) stops the threads, stores the pages
    already fetched, records partial coverage, and is raised again: run again to continue.
    """
    if rate <= 0:
        raise UsageError(f"rate {rate} must be positive")
    try:
        session = session or default_session()
        credentials = session.get_credentials()
    except BotoCoreError as error:  # a missing profile, an unreadable config file …
        raise SourceError(f"cannot load the AWS configuration: {error}") from None
    if credentials is None:
        raise SourceError(
            "no AWS credentials found for LookupEvents",
            "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role is at hand",
        )
    names = _unique(list(regions)) if regions else default_regions(session)
    if not names:
        raise UsageError("no region to read", "pass --regions")
    if account is None:
        account = _caller_account(session)

    started = utc_now()
    floor = started - RETENTION + FLOOR_MARGIN
    notes: list[str] = []
    if window.end <= floor:
        coverages = [
            Coverage(
                source=SOURCE,
                account=account,
                region=region,
                window_start=window.start,
                window_end=window.end,
                status=FAILED,
                detail=f"the window ends before {_text(floor)}: LookupEvents keeps only the last 90 days; "
                f"{DATA_EVENTS_NOTE}",
            )
            for region in names
        ]
        for coverage in coverages:
            store.record_coverage(coverage)
        return BatchResult(), coverages
    clamped = window
    if window.start < floor:
        clamped = Window(floor, window.end)
        notes.append(
            f"window clamped to LookupEvents' 90 days: events before {_text(floor)} are not visible "
            f"(asked from {_text(window.start)})"
        )

    stop = threading.Event()
    run = _Run(
        store,
        _Clients(session, rate, stop),
        stop,
        account=account,
        window=clamped,
        regions=names,
        progress=progress,
        label=f"{SOURCE} (quick)" if quick else SOURCE,
        started=started,
        floor=floor,
    )
    lookback = (
        max(floor, clamped.start - WEB_IDENTITY_LOOKBACK),
        max(floor, clamped.start - POD_IDENTITY_LOOKBACK),
    )
    try:
        if quick:
            _run_quick(run, clamped, floor)
        else:
            start, end = clamped.start.timestamp(), clamped.end.timestamp()
            run.run_phase({region: run.plan(region, None, start, end) for region in names})
            if change_lookback:  # the window's changes are among its events; the day before's by name
                _read_changes(run, clamped, floor, start)
    except KeyboardInterrupt:
        _finish(run, clamped, quick, notes, lookback, interrupted=True)
        raise
    return _finish(run, clamped, quick, notes, lookback, interrupted=False)


def _read_changes(run: _Run, window: Window, floor: datetime, until: float) -> None:
    """The change events from 24 hours before the window to ``until``, one EventName at a time
    (LookupEvents takes one attribute a call): IAM's and Organizations' where CloudTrail records
    them (us-east-1), the regional services' in every region read.  The explainer names the
    change a refusal began after, which may precede the window."""
    since = max(floor, window.start - CHANGE_LOOKBACK).timestamp()
    run.on_record = lambda region, job, record: run.regions[region].count("changes")
    run.run_phase({
        region: [
            _Job(region, ("EventName", name), since, until, checkpoint=False, before=True)
            for source, name in change_event_names()
            if source not in GLOBAL_SOURCES or region == GLOBAL_REGION
        ]
        for region in run.regions
    })
    if GLOBAL_REGION not in run.regions:
        for state in run.regions.values():
            state.count("changes_unread")
    run.on_record = None


def _run_quick(run: _Run, window: Window, floor: datetime) -> None:
    start, end = window.start.timestamp(), window.end.timestamp()
    web_from = max(floor, window.start - WEB_IDENTITY_LOOKBACK).timestamp()
    pod_from = max(floor, window.start - POD_IDENTITY_LOOKBACK).timestamp()
    sessions: dict[tuple[str, str], _Session] = {}

    def inspect(region: str, job: _Job, record: dict[str, Any]) -> None:
        state = run.regions[region]
        name = record.get("eventName")
        in_window = start <= _record_epoch(record) < end
        refused = bool(record.get("errorCode"))
        if in_window and name == "AssumeRoleWithWebIdentity":
            state.count("web")
            state.count("web_refused", refused)
        elif in_window and name == "AssumeRoleForPodIdentity":
            state.count("pod")
            state.count("pod_refused", refused)
        elif (
            in_window
            and name == "AssumeRole"
            and _mapping(record.get("userIdentity")).get("invokedBy") == POD_IDENTITY_SERVICE
        ):
            state.count("pod_assume")
        minted = minted_session(record)
        if minted is not None and minted.expires >= start and minted.minted < end:
            sessions.setdefault(minted.attribute, minted)

    run.on_record = inspect
    # The lookups that find the sessions are cheap: read them whole every time (no checkpoint),
    # since the sessions they mint are what the next phase needs.
    first = {
        region: [
            _Job(region, ("EventName", "AssumeRoleWithWebIdentity"), web_from, end, checkpoint=False),
            _Job(region, ("EventName", "AssumeRoleForPodIdentity"), start, end, checkpoint=False),
        ]
        for region in run.regions
    }
    run.run_phase(first)
    # Pod Identity: the node's agent calls AssumeRoleForPodIdentity (no key in its event); EKS
    # then calls AssumeRole for the pod, and that event holds the session's access key.
    pod_regions = [r for r, state in run.regions.items() if state.found.get("pod")]
    run.run_phase(
        {
            region: [_Job(region, ("EventName", "AssumeRole"), pod_from, end, checkpoint=False)]
            for region in pod_regions
        }
    )
    _read_changes(run, window, floor, end)
    second: dict[str, list[_Job]] = {}
    for region, state in run.regions.items():
        jobs: list[_Job] = []
        if state.error:
            continue
        for session in sessions.values():
            state.count("by_key" if session.access_key_id else "by_name")
            lo, hi = max(session.minted, start), min(session.expires, end)
            if hi >= lo:
                jobs.extend(run.plan(region, session.attribute, lo, hi))
        second[region] = jobs
    run.run_phase(second)


def _finish(
    run: _Run,
    window: Window,
    quick: bool,
    notes: list[str],
    lookback: tuple[datetime, datetime],
    *,
    interrupted: bool,
) -> tuple[BatchResult, list[Coverage]]:
    total = BatchResult()
    coverages = []
    for state in run.regions.values():
        total.add(state.result)
        parts = [f"{_plural(state.pages, 'page')} in {_plural(state.calls, 'call')}"]
        if state.retried:
            parts[0] += f" ({state.retried} retried after throttling or a transient error)"
        if state.resumed > 0 and not quick:
            parts.append(
                f"{_duration(state.resumed)} of the window already stored by an earlier run, not read again"
            )
        if quick:
            parts.append(_quick_detail(state, lookback))
        elif GLOBAL_REGION not in run.regions:
            parts.append(f"IAM and Organizations changes NOT read: they are recorded in {GLOBAL_REGION}, not among "
                         "the regions read")
        elif state.found.get("changes"):
            parts.append(f"and {_plural(state.found['changes'], 'change event')} of the 24 hours before the window")
        parts.extend(notes)
        interrupted_here = interrupted and (quick or not state.finished)
        if interrupted_here:
            parts.append("interrupted: run the same command again to continue where it stopped")
        if state.error:
            parts.insert(0, f"stopped by {state.error}")
        unreadable = state.result.problems
        if unreadable:
            parts.append(
                f"{_plural(len(unreadable), 'event')} not stored, their CloudTrailEvent not being a CloudTrail "
                f"record (the first: {unreadable[0]})"
            )
        read_something = state.pages > 0 or state.resumed > 0
        if state.error and not read_something:
            status = FAILED
        elif state.error or interrupted_here or quick or notes or unreadable:
            status = PARTIAL
        else:
            status = COMPLETE
        parts.append(DATA_EVENTS_NOTE)
        coverage = Coverage(
            source=SOURCE,
            account=run.account or run.seen_account,
            region=state.name,
            window_start=window.start,
            window_end=window.end,
            events=state.result.records,
            skipped=state.result.skipped,
            status=status,
            detail="; ".join(parts),
        )
        run.store.record_coverage(coverage)
        coverages.append(coverage)
    total.files = sum(state.pages for state in run.regions.values())
    return total, coverages


# -- small helpers --------------------------------------------------------------------------------


def _parse_record(text: str) -> dict[str, Any] | None:
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError:  # invalid JSON, or a lone surrogate orjson will not take
        return None
    return record if isinstance(record, dict) else None


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else empty: a record's fields may hold any type."""
    return value if isinstance(value, dict) else {}


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)  # "…Z" too, since Python 3.11
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _record_epoch(record: dict[str, Any]) -> float:
    try:
        return _parse_iso(record["eventTime"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return float("nan")


def _from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _epoch_iso(epoch: float) -> str:
    return _from_epoch(epoch).isoformat()


def _text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class LookupSource:
    """``lookup``: the LookupEvents API (management events of the last 90 days)."""

    name = "lookup"
    remote = True
    #: sts:GetCallerIdentity labels the coverage and checkpoints with the account.
    asks_caller_identity = True

    def ingest(self, store: Store, request, *, window: Window | None, session, progress=None):
        if window is None:
            raise UsageError("LookupEvents needs a time window", "pass --since, e.g. 24h")
        return ingest_lookup(
            store, session, window=window, regions=list(request.regions) or None, quick=request.quick, progress=progress
        )

    def required_statements(self, request, notes: list[str]) -> list[dict]:
        from trailscan.iam_policy import statement

        if request.bucket or request.prefix or request.org_id or request.accounts or request.kms_keys:
            raise UsageError("--bucket, --prefix, --org-id, --accounts and --kms-key apply to --source s3")
        notes.append(
            "cloudtrail:LookupEvents allows no resource-level scoping: it reads every management event of the account"
        )
        return [statement("LookupManagementEvents", ["cloudtrail:LookupEvents"], "*")]
