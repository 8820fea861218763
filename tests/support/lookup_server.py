"""A loopback CloudTrail ``LookupEvents`` server for tests (moto does not implement the call).

It speaks the CloudTrail JSON 1.1 protocol the way botocore sends it and answers the way AWS does,
so the lookup source is tested through real boto3 clients, paginators and retry handlers::

    with LookupServer() as server:
        server.add_events("eu-west-1", records)
        client = boto3.client("cloudtrail", region_name="eu-west-1",
                              endpoint_url=server.endpoint_url,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.get_paginator("lookup_events").paginate(...)

(or set ``AWS_ENDPOINT_URL_CLOUDTRAIL=server.endpoint_url`` and build clients as usual).

Wire format, as botocore sends it:

- ``POST /``, ``X-Amz-Target: com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents``,
  ``Content-Type: application/x-amz-json-1.1``, a JSON body whose ``StartTime``/``EndTime`` are
  epoch seconds (numbers); ``EventTime`` goes back the same way.
- The region is read from the SigV4 credential scope in ``Authorization``
  (``Credential=AKID/20261128/eu-west-1/cloudtrail/aws4_request``); the signature is not checked.
  The account is ``accounts[AKID]``, else ``default_account`` (``None`` rejects unknown keys with
  ``UnrecognizedClientException``, HTTP 403).
- Errors are HTTP 400 (403 for authentication) with ``{"__type": CODE, "message": TEXT}`` and
  ``x-amzn-ErrorType``:
  botocore's JSON parser takes the code from ``__type`` (the part after ``#`` if any) and the
  message from ``message``/``Message``, and raises ``client.exceptions.<CODE>``.

Semantics, as the real API:

- per account and region; newest first (ties broken by ``eventID``, descending);
- ``MaxResults`` 1..50, default 50 (above 50: ``InvalidMaxResultsException``; botocore itself
  refuses values below 1 before sending);
- ``NextToken`` is opaque, signed, and only valid with the same ``LookupAttributes``, ``StartTime``,
  ``EndTime`` and ``EventCategory`` (and the same account and region) — anything else is
  ``InvalidNextTokenException``.  ``MaxResults`` may change between pages.  The token is a cursor
  (the last event returned), so events added while paging never produce duplicates;
- at most one ``LookupAttributes`` entry, with a known key (else
  ``InvalidLookupAttributesException``); values compare exactly.  ``Username`` matches the
  response's ``Username`` field (see :func:`lookup_username`): an assumed role's session name, not
  its role name;
- ``StartTime``/``EndTime`` omitted mean the 90-day floor and "now";
- ``StartTime``/``EndTime`` are inclusive; ``StartTime`` after ``EndTime`` is
  ``InvalidTimeRangeException``;
- only the last 90 days relative to ``clock()`` are visible: older events are never returned and a
  ``StartTime`` before the floor is clamped to it.  Events after ``clock()`` have not happened yet
  and are not returned either;
- management events only: records with ``managementEvent: false`` or an ``eventCategory`` other
  than ``Management`` (``Data``, ``NetworkActivity``) are never returned;
- ``EventCategory: "insight"`` returns only records whose ``eventCategory`` is ``Insight`` (with the
  usual fixtures: an empty list, as for an account without Insights); any other value is
  ``InvalidEventCategoryException``;
- 2 requests/s per account per region: a token bucket (burst 2) per (account, region), checked
  before the parameters are; a request beyond it gets HTTP 400 ``ThrottlingException`` "Rate exceeded".

``Resources`` in the response come from the record's ``resources`` (``type`` → ``ResourceType``,
``ARN`` → ``ResourceName``); AWS derives more from request parameters, this server does not.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TARGET_PREFIX = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
CONTENT_TYPE = "application/x-amz-json-1.1"
DEFAULT_ACCOUNT = "123456789012"  # moto's account, so STS and LookupEvents agree in tests
LOOKUP_KEYS = frozenset(
    {
        "EventId",
        "EventName",
        "ReadOnly",
        "Username",
        "ResourceType",
        "ResourceName",
        "EventSource",
        "AccessKeyId",
    }
)
MAX_RESULTS = 50
RETENTION = timedelta(days=90)

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request")


class ApiError(Exception):
    """An error answered to the client as ``{"__type": code, "message": message}``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class LookupCall:
    """One request the server received, for assertions."""

    at: float  # time.monotonic() when it arrived
    account: str | None
    region: str | None
    operation: str | None
    params: dict[str, Any]
    error: str | None = None  # the error code answered, None when it succeeded
    returned: int = 0  # events in the answer


@dataclass(frozen=True)
class _StoredEvent:
    epoch: float
    event_id: str
    record: dict[str, Any]
    lookup: dict[str, Any]  # the response entry, built once

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.epoch, self.event_id)


@dataclass
class _TokenBucket:
    rate: float
    capacity: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def lookup_username(identity: Mapping[str, Any] | None) -> str | None:
    """The LookupEvents ``Username`` of a record's ``userIdentity``.

    Assumed roles show their session name (``…:assumed-role/ROLE/SESSION`` → ``SESSION``; the
    principal id's part after ``:`` when the ARN is missing); other identities their ``userName``
    (IAM users, ``WebIdentityUser`` ``system:serviceaccount:NS:SA``, SAML users); the root user
    ``root``; service principals none.
    """
    if not identity:
        return None
    if identity.get("type") == "AssumedRole":
        arn = identity.get("arn") or ""
        if ":assumed-role/" in arn:
            return arn.rsplit("/", 1)[1]
        principal = identity.get("principalId") or ""
        if ":" in principal:
            return principal.split(":", 1)[1]
    if identity.get("userName"):
        return str(identity["userName"])
    if identity.get("type") == "Root":
        return "root"
    return None


def _epoch(value: Any, name: str) -> float:
    """Epoch seconds from a request timestamp (botocore sends numbers; ISO strings accepted)."""
    if isinstance(value, bool):
        raise ApiError("SerializationException", f"{name} is not a timestamp")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ApiError("SerializationException", f"{name} is not a timestamp") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    raise ApiError("SerializationException", f"{name} is not a timestamp")


def _record_epoch(record: Mapping[str, Any], index: int) -> float:
    raw = record.get("eventTime")
    if not isinstance(raw, str):
        raise ValueError(f"record {index} has no eventTime string")
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _is_management(record: Mapping[str, Any]) -> bool:
    if record.get("managementEvent") is False:
        return False
    return record.get("eventCategory", "Management") == "Management"


def _read_only(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _lookup_entry(record: Mapping[str, Any], epoch: float) -> dict[str, Any]:
    identity = record.get("userIdentity") or {}
    entry: dict[str, Any] = {
        "EventId": record["eventID"],
        "EventName": record.get("eventName"),
        "ReadOnly": _read_only(record.get("readOnly")),
        "AccessKeyId": identity.get("accessKeyId") or None,
        "EventTime": int(epoch) if epoch == int(epoch) else epoch,
        "EventSource": record.get("eventSource"),
        "Username": lookup_username(identity),
        "Resources": [
            {"ResourceType": r.get("type"), "ResourceName": r.get("ARN")}
            for r in record.get("resources") or []
        ],
        "CloudTrailEvent": json.dumps(record, separators=(",", ":")),
    }
    return {k: v for k, v in entry.items() if v is not None}


def _matches(event: _StoredEvent, key: str, value: str) -> bool:
    entry = event.lookup
    if key == "ResourceType":
        return any(r.get("ResourceType") == value for r in entry["Resources"])
    if key == "ResourceName":
        return any(r.get("ResourceName") == value for r in entry["Resources"])
    if key == "ReadOnly":
        return entry.get("ReadOnly") == value.lower()
    return entry.get(key) == value


@dataclass
class _SlidingWindow:
    """At most ``rate`` requests accepted in any ``window`` seconds (a strict limiter)."""

    rate: float
    window: float = 1.0
    accepted: deque = field(default_factory=deque)

    def take(self) -> bool:
        now = time.monotonic()
        while self.accepted and now - self.accepted[0] >= self.window:
            self.accepted.popleft()
        if len(self.accepted) >= int(self.rate * self.window):
            return False
        self.accepted.append(now)
        return True


class LookupServer:
    """CloudTrail ``LookupEvents`` on 127.0.0.1, an ephemeral port, in a background thread.

    ``accounts`` maps access key ids to accounts; keys not in it belong to ``default_account``
    (``None``: refused).  ``rate`` is requests per second per (account, region) and ``burst`` the
    bucket's capacity (AWS: 2 and 2); ``sliding_window`` enforces ``rate`` instead as a strict
    one-second sliding window (a request a hair under a second after the one ``rate`` places
    before it is throttled).  ``clock`` returns "now" (timezone-aware) for the 90-day
    floor; it may be replaced on a running server.

    Counters (reset with :meth:`reset_counters`): ``calls`` (every request, throttled ones too),
    ``calls_by_region`` (a ``Counter``), ``throttled``, and ``requests`` (a list of
    :class:`LookupCall` with the decoded request body as ``params``).
    """

    def __init__(
        self,
        *,
        accounts: Mapping[str, str] | None = None,
        default_account: str | None = DEFAULT_ACCOUNT,
        rate: float = 2.0,
        burst: float = 2.0,
        clock: Callable[[], datetime] | None = None,
        sliding_window: bool = False,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.accounts = dict(accounts or {})
        self.default_account = default_account
        self.rate = rate
        self.burst = burst
        self.sliding_window = sliding_window
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(timezone.utc))
        self.calls = 0
        self.calls_by_region: Counter[str] = Counter()
        self.throttled = 0
        self.requests: list[LookupCall] = []
        self._events: dict[tuple[str, str], dict[str, _StoredEvent]] = {}
        self._sorted: dict[tuple[str, str], list[_StoredEvent]] = {}
        self._buckets: dict[tuple[str, str], _TokenBucket] = {}
        self._secret = secrets.token_bytes(16)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LookupServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"lookup_server": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # so stop() does not wait half a second
            name="lookup-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LookupServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LookupServer is not running: use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- data and counters -------------------------------------------------------------------

    def add_events(
        self, region: str, records: Iterable[Mapping[str, Any]], *, account: str | None = None
    ) -> int:
        """Store CloudTrail records (as AWS writes them) in ``region`` of ``account``.

        ``account`` defaults to ``default_account``; the records' ``recipientAccountId`` is not
        consulted.  Records are copied; one with an ``eventID`` already stored replaces it.
        Data events are stored too (and never returned), as CloudTrail records them elsewhere.
        Returns the number of records given.
        """
        account = account or self.default_account
        if account is None:
            raise ValueError("add_events needs an account when there is no default_account")
        stored: list[_StoredEvent] = []
        for index, record in enumerate(records):
            if not record.get("eventID"):
                raise ValueError(f"record {index} has no eventID")
            epoch = _record_epoch(record, index)
            record = copy.deepcopy(dict(record))
            stored.append(
                _StoredEvent(epoch, record["eventID"], record, _lookup_entry(record, epoch))
            )
        with self._lock:
            events = self._events.setdefault((account, region), {})
            for event in stored:
                events[event.event_id] = event
            self._sorted[(account, region)] = sorted(
                events.values(), key=lambda e: e.sort_key, reverse=True
            )
        return len(stored)

    def paging_calls(self, region: str | None = None) -> list[LookupCall]:
        """The requests that paged every management event (no ``LookupAttributes``): a full
        read's window, not its lookups of change events by name."""
        return [c for c in self.requests if "LookupAttributes" not in c.params and region in (None, c.region)]

    def reset_counters(self) -> None:
        with self._lock:
            self.calls = 0
            self.calls_by_region.clear()
            self.throttled = 0
            self.requests.clear()
            self._buckets.clear()

    # -- the API -----------------------------------------------------------------------------

    def _handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one request: (HTTP status, JSON body).  Called from handler threads."""
        match = _CREDENTIAL.search(headers.get("Authorization") or "")
        access_key = match.group(1) if match else None
        region = match.group(3) if match else None
        account = self.accounts.get(access_key or "", self.default_account)
        target = headers.get("X-Amz-Target") or ""
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else None
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = None
        call = dict(account=account, region=region, operation=operation, params=params or {})

        with self._lock:
            self.calls += 1
            if region:
                self.calls_by_region[region] += 1
            try:
                result = self._answer(headers, match, account, region, operation, params)
            except ApiError as error:
                if error.code == "ThrottlingException":
                    self.throttled += 1
                self.requests.append(LookupCall(time.monotonic(), error=error.code, **call))
                return error.status, {"__type": error.code, "message": error.message}
            self.requests.append(
                LookupCall(time.monotonic(), returned=len(result["Events"]), **call)
            )
            return 200, result

    def _answer(
        self,
        headers: Mapping[str, str],
        match: re.Match[str] | None,
        account: str | None,
        region: str | None,
        operation: str | None,
        params: Any,
    ) -> dict[str, Any]:
        if match is None:
            raise ApiError(
                "MissingAuthenticationTokenException", "Missing Authentication Token", 403
            )
        if match.group(4) != "cloudtrail":
            raise ApiError(
                "InvalidSignatureException",
                "Credential should be scoped to correct service: 'cloudtrail'.",
                403,
            )
        if account is None:
            raise ApiError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                403,
            )
        if operation is None:
            raise ApiError("UnknownOperationException", "")
        if (headers.get("Content-Type") or "").split(";")[0].strip() != CONTENT_TYPE:
            raise ApiError("UnknownOperationException", "")
        bucket = self._buckets.setdefault(
            (account, region),
            _SlidingWindow(self.rate) if self.sliding_window else _TokenBucket(rate=self.rate, capacity=self.burst),
        )
        if not bucket.take():
            raise ApiError("ThrottlingException", "Rate exceeded")
        if operation != "LookupEvents":
            raise ApiError("UnknownOperationException", f"{operation} is not served here")
        if not isinstance(params, dict):
            raise ApiError("SerializationException", "the request body is not a JSON object")
        return self._lookup_events(account, region, params)

    def _lookup_events(self, account: str, region: str, params: dict[str, Any]) -> dict[str, Any]:
        max_results = params.get("MaxResults", MAX_RESULTS)
        if not isinstance(max_results, int) or isinstance(max_results, bool):
            raise ApiError("SerializationException", "MaxResults is not an integer")
        if not 1 <= max_results <= MAX_RESULTS:
            raise ApiError(
                "InvalidMaxResultsException", f"MaxResults must be 1 to {MAX_RESULTS}."
            )

        attributes = params.get("LookupAttributes") or []
        if not isinstance(attributes, list) or len(attributes) > 1:
            raise ApiError(
                "InvalidLookupAttributesException",
                "You cannot specify more than one lookup attribute.",
            )
        attribute: tuple[str, str] | None = None
        if attributes:
            key = attributes[0].get("AttributeKey")
            value = attributes[0].get("AttributeValue")
            if key not in LOOKUP_KEYS or not isinstance(value, str) or not value:
                raise ApiError(
                    "InvalidLookupAttributesException", f"Invalid lookup attribute: {key}"
                )
            attribute = (key, value)

        category = params.get("EventCategory")
        if category is not None and category != "insight":
            raise ApiError(
                "InvalidEventCategoryException", f"Invalid event category: {category}"
            )

        now = self.clock().timestamp()
        floor = now - RETENTION.total_seconds()
        start = _epoch(params["StartTime"], "StartTime") if "StartTime" in params else floor
        end = _epoch(params["EndTime"], "EndTime") if "EndTime" in params else now
        if "StartTime" in params and "EndTime" in params and start > end:
            raise ApiError(
                "InvalidTimeRangeException", "Start time must be before or equal to end time."
            )
        start = max(start, floor)  # the 90-day limit of event history
        end = min(end, now)  # nothing has happened after "now"

        cursor: tuple[float, str] | None = None
        scope = self._scope(account, region, params)
        if params.get("NextToken") is not None:
            cursor = self._read_token(params["NextToken"], scope)

        category_of = "Insight" if category == "insight" else None
        page: list[_StoredEvent] = []
        more = False
        for event in self._sorted.get((account, region), ()):
            if cursor is not None and event.sort_key >= cursor:
                continue
            if not start <= event.epoch <= end:
                continue
            if category_of is None:
                if not _is_management(event.record):
                    continue
            elif event.record.get("eventCategory") != category_of:
                continue
            if attribute is not None and not _matches(event, *attribute):
                continue
            if len(page) == max_results:
                more = True
                break
            page.append(event)

        answer: dict[str, Any] = {"Events": [event.lookup for event in page]}
        if more:
            answer["NextToken"] = self._make_token(page[-1].sort_key, scope)
        return answer

    # -- NextToken: an opaque, signed cursor bound to the request's parameters ---------------

    @staticmethod
    def _scope(account: str, region: str, params: Mapping[str, Any]) -> str:
        bound = {
            key: params.get(key)
            for key in ("LookupAttributes", "StartTime", "EndTime", "EventCategory")
        }
        bound.update(account=account, region=region)
        digest = hashlib.sha256(json.dumps(bound, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:32]

    def _make_token(self, cursor: tuple[float, str], scope: str) -> str:
        payload = json.dumps([cursor[0], cursor[1], scope], separators=(",", ":")).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(mac + payload).decode()

    def _read_token(self, token: Any, scope: str) -> tuple[float, str]:
        invalid = ApiError("InvalidNextTokenException", "Invalid NextToken.")
        if not isinstance(token, str):
            raise invalid
        try:
            raw = base64.urlsafe_b64decode(token.encode())
        except ValueError:
            raise invalid from None
        mac, payload = raw[:16], raw[16:]
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise invalid
        epoch, event_id, token_scope = json.loads(payload)
        if token_scope != scope:
            raise invalid
        return (epoch, event_id)


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as urllib3's pooled connections expect."""

    protocol_version = "HTTP/1.1"
    lookup_server: LookupServer  # set on the subclass bound to one server

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path != "/":
            self._reply(404, {"__type": "UnknownOperationException", "message": ""})
            return
        status, answer = self.lookup_server._handle(self.headers, body)
        self._reply(status, answer)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(404, {"__type": "UnknownOperationException", "message": ""})

    def _reply(self, status: int, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status >= 400 and "__type" in answer:
            self.send_header("x-amzn-ErrorType", answer["__type"])
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: tests read the counters, not the access log."""
