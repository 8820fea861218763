"""The DuckDB store: every CloudTrail record from every source lands in table ``event_rows``,
which SQL reads through the view ``events``.

DuckDB does the heavy lifting.  A batch of inputs (local files, or JSON texts held in
memory) is read by ``read_json_objects``; a gzip file only once :func:`inflate` has read it
through within its limit, and anything but a regular file never.  Each top-level JSON
value is unwrapped from whatever shape it came in (SPEC §4: ``{"Records": […]}``, a JSON
array, a bare record, NDJSON, LookupEvents output, EventBridge envelopes), secrets are
redacted, the columns of SPEC §6 are extracted with one parse per record, and the batch is
inserted in one transaction — so an interrupted ingest leaves every earlier batch intact
and the store usable.  Uniqueness by ``event_id`` is kept by looking up the batch's ids rather than with
a primary key: measured on 200k events, DuckDB's ART index made the insert ~45% slower and
its memory grows with the store.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import duckdb
import orjson

from trailscan.errors import InputError, NewerStoreError, QueryError, StoreError
from trailscan.fs import DIR_MODE, FILE_MODE, make_dir
from trailscan.model import BatchResult, Coverage, FileProblem, Window, positive_setting

DEFAULT_DB_ENV = "TRAILSCAN_DB"


def default_db_path() -> Path:
    """``$TRAILSCAN_DB``, else ``$XDG_DATA_HOME/trailscan/trailscan.duckdb``
    (``~/.local/share/trailscan/trailscan.duckdb``)."""
    if os.environ.get(DEFAULT_DB_ENV):
        return Path(os.environ[DEFAULT_DB_ENV]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "trailscan" / "trailscan.duckdb"


#: Keys whose string values are credentials; removed before anything is stored.
SECRET_KEYS = (
    "sessionToken",
    "secretAccessKey",
    "webIdentityToken",
    "token",
    "SAMLAssertion",
    "samlResponse",
    "password",
    "oldPassword",
    "newPassword",
    "privateKey",
    "secretString",
    "secretBinary",
    "accessToken",
    "refreshToken",
    "idToken",
    "clientSecret",
)
REDACTED = "REDACTED"
#: DuckDB's memory limit (the buffer pool; spilled beyond).  A batch of files is 256 MB of
#: JSON (sources.files.BATCH_BYTES) and staging it takes about 450 MB: measured on 200k and
#: 1M generated events, a 640 MB limit spilled and made ingests 20-30% slower.
MEMORY_LIMIT = "1GB"
#: Largest single JSON value read (a whole delivery file is one value); DuckDB
#: allocates twice this per reader thread.  A file beyond it is read in pieces.
MAX_OBJECT_BYTES = 64 * 1024 * 1024
#: JSON text per statement when a file is read in pieces (see ``Store._stage_in_pieces``).
PIECE_BYTES = 8 * 1024 * 1024
#: The most JSON one input (a file, an S3 object) may hold, decompressed.  CloudTrail writes
#: delivery files of at most tens of MB of gzip (the 50 MB file of the tests holds ~800 MB
#: of JSON); a gzip bomb inflates a few MB into gigabytes, which would fill the store's
#: memory and spill space and fail the whole batch.  Beyond it an input is named and skipped.
MAX_INPUT_BYTES = 1 << 30
MAX_INPUT_BYTES_ENV = "TRAILSCAN_MAX_INPUT_BYTES"
_SECRET_PATTERN = (
    r'(?i)"(' + "|".join(SECRET_KEYS) + r')"\s*:\s*"(?:[^"\\]|\\.)*"'
)
# A cheap pre-filter: only records holding a secret key, in any case (SESSIONTOKEN), as a
# key (followed by `":`) or inside JSON text held in a string (followed by `\\"`), go
# through the regexes.  Every text either regex matches also matches this one; it starts
# with a quote, which RE2 looks for first: measured on 200k records, a third of the cost
# of matching the key fragments alone ("oken", "ecret" …), which also matched the 17%
# of records that name GetAuthorizationToken or secretsmanager.
_SECRET_HINT_PATTERN = r'(?i)"(?:' + "|".join(SECRET_KEYS) + r')(?:"\s*:|\\")'
# What the string-only regex cannot redact: a secret key holding a number, an object or an
# array, or a secret inside JSON text held in a string ({"policy": "{\"token\": …}"}).
_NESTED_SECRET_PATTERN = (
    r'(?i)"(?:' + "|".join(SECRET_KEYS) + r')"\s*:\s*[\[{0-9tf-]|\\"(?:' + "|".join(SECRET_KEYS) + r')\\"'
)

#: Columns of ``event_rows``, in the order of the ``events`` view (which adds the JSON
#: columns computed from ``raw``).
SCHEMA = """
CREATE TABLE IF NOT EXISTS event_rows (
    event_id VARCHAR NOT NULL,
    event_time TIMESTAMPTZ,
    event_version VARCHAR,
    event_source VARCHAR,
    event_name VARCHAR,
    aws_region VARCHAR,
    account_id VARCHAR,
    source_ip VARCHAR,
    user_agent VARCHAR,
    error_code VARCHAR,
    error_message VARCHAR,
    read_only BOOLEAN,
    event_category VARCHAR,
    event_type VARCHAR,
    identity_type VARCHAR,
    identity_arn VARCHAR,
    principal_id VARCHAR,
    user_name VARCHAR,
    access_key_id VARCHAR,
    session_issuer_arn VARCHAR,
    identity_provider VARCHAR,
    tls_host VARCHAR,
    -- zstd rather than DuckDB's default string compression: measured on 200k generated
    -- records, written 3.2x faster, 7x smaller, and scanned faster too.
    raw JSON USING COMPRESSION zstd,
    origin VARCHAR,
    ingested_at TIMESTAMPTZ
);
-- What SQL sees.  request_parameters, response_elements and resources are read out of raw
-- when queried: stored again they would double the bytes written per event, for columns
-- only the analysis of failed events reads; and as VIRTUAL columns of the table DuckDB
-- evaluates them on every insert (to check they can be), a third of the ingest's time.
CREATE VIEW IF NOT EXISTS events AS
SELECT event_id, event_time, event_version, event_source, event_name, aws_region, account_id,
       source_ip, user_agent, error_code, error_message, read_only, event_category, event_type,
       identity_type, identity_arn, principal_id, user_name, access_key_id, session_issuer_arn,
       identity_provider,
       nullif(json_extract(raw, '$.requestParameters'), 'null'::JSON) AS request_parameters,
       nullif(json_extract(raw, '$.responseElements'), 'null'::JSON) AS response_elements,
       nullif(json_extract(raw, '$.resources'), 'null'::JSON) AS resources,
       tls_host, raw, origin, ingested_at
FROM event_rows;
CREATE TABLE IF NOT EXISTS coverage (
    recorded_at TIMESTAMPTZ NOT NULL,
    source VARCHAR NOT NULL,
    account VARCHAR,
    region VARCHAR,
    window_start TIMESTAMPTZ,
    window_end TIMESTAMPTZ,
    events BIGINT,
    skipped BIGINT,
    status VARCHAR NOT NULL,
    detail VARCHAR
);
CREATE TABLE IF NOT EXISTS ingested_objects (
    source VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    etag VARCHAR,
    events BIGINT,
    ingested_at TIMESTAMPTZ,
    PRIMARY KEY (source, name)
);
CREATE TABLE IF NOT EXISTS state (
    key VARCHAR PRIMARY KEY,
    value JSON,
    updated_at TIMESTAMPTZ
);
-- schema_version: the layout of this store (SCHEMA_VERSION).
CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR
);
"""

# Columns pulled out of each record with one json_extract_string call (one parse).
_FIELDS = (
    ("event_id", "$.eventID"),
    ("event_time", "$.eventTime"),
    ("event_version", "$.eventVersion"),
    ("event_source", "$.eventSource"),
    ("event_name", "$.eventName"),
    ("aws_region", "$.awsRegion"),
    ("recipient_account", "$.recipientAccountId"),
    ("source_ip", "$.sourceIPAddress"),
    ("user_agent", "$.userAgent"),
    ("error_code", "$.errorCode"),
    ("error_message", "$.errorMessage"),
    ("read_only", "$.readOnly"),
    ("event_category", "$.eventCategory"),
    ("event_type", "$.eventType"),
    ("identity_type", "$.userIdentity.type"),
    ("identity_arn", "$.userIdentity.arn"),
    ("principal_id", "$.userIdentity.principalId"),
    ("user_name", "$.userIdentity.userName"),
    ("access_key_id", "$.userIdentity.accessKeyId"),
    ("identity_account", "$.userIdentity.accountId"),
    ("session_issuer_arn", "$.userIdentity.sessionContext.sessionIssuer.arn"),
    ("identity_provider", "$.userIdentity.identityProvider"),
    ("federated_provider", "$.userIdentity.sessionContext.webIdFederationData.federatedProvider"),
    ("tls_host", "$.tlsDetails.clientProvidedHostHeader"),
)
_EVENT_ID_INDEX = 1 + [name for name, _ in _FIELDS].index("event_id")  # in v, a 1-based list
_EVENT_TIME_INDEX = 1 + [name for name, _ in _FIELDS].index("event_time")
#: The paths of _FIELDS as a SQL list's items, for json_extract_string.
_FIELD_PATHS = ", ".join(f"'{path}'" for _, path in _FIELDS)
# Top-level keys looked at to recognise the shape of one JSON object (one parse).
_UNIT_SCHEMA = orjson.dumps(
    {
        "Records": ["JSON"],
        "Events": ["JSON"],
        "detail": "JSON",
        "detail-type": "VARCHAR",
        "eventVersion": "JSON",
        "eventName": "JSON",
        "eventSource": "JSON",
        "eventID": "JSON",
        "CloudTrailEvent": "JSON",
        "digestStartTime": "JSON",
        "logFiles": "JSON",
    }
).decode()


_DOCUMENTS_SQL = "SELECT filename, doc::JSON AS doc FROM docs_input"

# eventTime as CloudTrail writes it, 2026-11-27T10:00:00Z, with fractional seconds or a UTC
# offset allowed (after upper(): a lower-case t or z is still ISO 8601).  A time without
# an offset is not taken as UTC: nothing says it is.
_EVENT_TIME_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})"
#: Event times outside [EARLIEST_EVENT_TIME, LATEST_EVENT_TIME) are not usable: before the
#: widest window trailscan reads (``findings --until`` starts at 1970), or so late that no
#: window could end after them (Python's datetimes end with year 9999).
EARLIEST_EVENT_TIME = "1970-01-01 00:00:00+00"
LATEST_EVENT_TIME = "9999-01-01 00:00:00+00"


def _parse_time_sql(text: str) -> str:
    """SQL for the instant an ``eventTime`` text (a VARCHAR expression) names, or NULL.

    A leap second (``23:59:60``, which CloudTrail may write and DuckDB does not read) is
    clamped to ``23:59:59.999999``: the event keeps its day and sorts before the next
    second.  A day that does not exist (February 30th) is NULL."""
    upper = f"upper({text})"
    leap = f"regexp_replace({upper}, ':60(\\.\\d+)?', ':59.999999')"
    return (
        f"CASE WHEN regexp_full_match({upper}, '{_EVENT_TIME_PATTERN}') "
        f"THEN try_cast(CASE WHEN substr({text}, 18, 2) = '60' THEN {leap} ELSE {upper} END AS TIMESTAMPTZ) END"
    )


def _usable_time_sql(parsed: str) -> str:
    """``parsed`` (a TIMESTAMPTZ expression) when inside the usable range, else NULL."""
    return (
        f"CASE WHEN {parsed} >= TIMESTAMPTZ '{EARLIEST_EVENT_TIME}' "
        f"AND {parsed} < TIMESTAMPTZ '{LATEST_EVENT_TIME}' THEN {parsed} END"
    )


def _normalize_sql(docs_sql: str) -> str:
    """SQL turning ``docs(filename, doc JSON)`` into staged rows
    ``(filename, kind, r, v, event_id, deep, event_time)``: one row per record (kind
    ``record``, ``v`` the list of extracted :data:`_FIELDS`, ``deep`` when a secret is left
    for Python to redact, ``event_time`` NULL unless usable), plus one marker row
    (``r`` NULL) for every digest file, every JSON value that is not CloudTrail, and
    every container that held no records."""
    secret_hint = f"regexp_matches(r::VARCHAR, '{_SECRET_HINT_PATTERN}')"
    return f"""
WITH docs AS ({docs_sql}),
-- A top-level array is a list of units (records, or wrappers around them); an empty
-- one is a container without records (u NULL).  One pass over docs: reading it twice
-- would hold every document of the batch in memory at once.
units AS (
    SELECT filename,
           unnest(CASE WHEN NOT regexp_matches(doc, '^\\s*\\[') THEN [doc]
                       WHEN json_array_length(doc) = 0 THEN [NULL::JSON]
                       ELSE from_json(doc, '["JSON"]') END) AS u
    FROM docs
),
-- A unit is valid JSON: it is an object when it starts with a brace (json_type would
-- parse all of it, a third of the cost of reading it).
shaped AS (
    SELECT filename, u,
           CASE WHEN regexp_matches(u, '^\\s*\\{{')
                THEN from_json(u, '{_UNIT_SCHEMA}') END AS s
    FROM units
),
classified AS (
    SELECT filename,
        CASE
            WHEN u IS NULL THEN 'container'
            WHEN s."Records" IS NOT NULL THEN 'records'
            WHEN s."Events" IS NOT NULL THEN 'events'
            WHEN s."detail" IS NOT NULL AND s."detail-type" IS NOT NULL THEN 'envelope'
            WHEN json_type(s."CloudTrailEvent") = 'VARCHAR' THEN 'lookup_entry'
            WHEN s."digestStartTime" IS NOT NULL OR s."logFiles" IS NOT NULL THEN 'digest'
            WHEN s."eventVersion" IS NOT NULL
                 OR (s."eventName" IS NOT NULL AND s."eventSource" IS NOT NULL) THEN 'record'
            ELSE 'unknown'
        END AS shape,
        CASE
            WHEN s."Records" IS NOT NULL THEN s."Records"
            -- LookupEvents output: the record is a JSON *string* in CloudTrailEvent;
            -- CloudTrail Insights lookups put the record inline.
            WHEN s."Events" IS NOT NULL THEN list_transform(s."Events", lambda e:
                CASE WHEN json_type(e -> 'CloudTrailEvent') = 'VARCHAR'
                     THEN _as_json(e ->> 'CloudTrailEvent')
                     ELSE e END)
            WHEN s."detail" IS NOT NULL AND s."detail-type" IS NOT NULL THEN [json(s."detail")]
            -- One LookupEvents entry, as `lookup-events --query 'Events[]'` prints them.
            WHEN json_type(s."CloudTrailEvent") = 'VARCHAR' THEN [_as_json(s."CloudTrailEvent" ->> '$')]
            WHEN s."digestStartTime" IS NOT NULL OR s."logFiles" IS NOT NULL THEN []
            WHEN s."eventVersion" IS NOT NULL
                 OR (s."eventName" IS NOT NULL AND s."eventSource" IS NOT NULL) THEN [json(u)]
            ELSE []
        END AS recs
    FROM shaped
),
unnested AS (
    SELECT filename,
           CASE WHEN len(recs) > 0 THEN 'record'
                WHEN shape IN ('digest', 'unknown') THEN shape
                ELSE 'container' END AS kind,
           unnest(CASE WHEN len(recs) > 0 THEN recs ELSE [NULL::JSON] END) AS r
    FROM classified
),
-- Values are minified JSON here, so the first character tells an object; a string,
-- number or null where a record should be is skipped and counted.
staged AS (
    SELECT filename,
           CASE WHEN kind <> 'record' THEN kind
                WHEN r IS NOT NULL AND starts_with(r::VARCHAR, '{{') THEN 'record'
                ELSE 'unknown' END AS kind,
           CASE WHEN kind = 'record' AND starts_with(r::VARCHAR, '{{') THEN r END AS r
    FROM unnested
),
redacted AS (
    SELECT filename, kind, hinted,
           CASE WHEN hinted
                THEN regexp_replace(r::VARCHAR, '{_SECRET_PATTERN}', '"\\1":"{REDACTED}"', 'g')::JSON
                ELSE r END AS r
    FROM (SELECT *, {secret_hint} AS hinted FROM staged)
),
-- Every column is pulled out of a record with one json_extract_string call (one parse).
extracted AS (
    SELECT filename, kind, r, hinted,
           CASE WHEN kind = 'record' THEN json_extract_string(r, [{_FIELD_PATHS}]) END AS v
    FROM redacted
),
-- A record without eventID is keyed by a stable hash of its (redacted) text.  `deep`: a
-- secret the regex cannot redact is left (see Store._redact_deep).
timed AS (
    SELECT *, CASE WHEN kind = 'record' THEN {_parse_time_sql(f"v[{_EVENT_TIME_INDEX}]")} END AS parsed
    FROM extracted
)
SELECT filename, kind, r, v,
       CASE WHEN kind = 'record' THEN coalesce(v[{_EVENT_ID_INDEX}], md5(r::VARCHAR)) END AS event_id,
       CASE WHEN hinted THEN regexp_matches(r::VARCHAR, '{_NESTED_SECRET_PATTERN}') END AS deep,
       {_usable_time_sql("parsed")} AS event_time
FROM timed
"""


def _insert_sql(*, windowed: bool, sliced: bool = False) -> str:
    """INSERT of the staged records into ``event_rows``.

    ``windowed`` keeps only records whose ``eventTime`` lies in ``[$start, $end)``;
    ``sliced`` only the staged rows whose rowid lies in ``[$low, $high)``.  Records that
    repeat a stored event or another of the batch are no longer of kind ``record`` (see
    :func:`_repeats_sql`).
    """
    v = {name: f"v[{i}]" for i, (name, _) in enumerate(_FIELDS, start=1)}
    columns = {
        "event_id": "event_id",
        "event_time": "event_time",
        "event_version": v["event_version"],
        "event_source": v["event_source"],
        "event_name": v["event_name"],
        "aws_region": v["aws_region"],
        "account_id": f"coalesce({v['recipient_account']}, {v['identity_account']})",
        "source_ip": v["source_ip"],
        "user_agent": v["user_agent"],
        "error_code": v["error_code"],
        "error_message": v["error_message"],
        "read_only": f"try_cast({v['read_only']} AS BOOLEAN)",
        "event_category": v["event_category"],
        "event_type": v["event_type"],
        "identity_type": v["identity_type"],
        "identity_arn": v["identity_arn"],
        "principal_id": v["principal_id"],
        "user_name": v["user_name"],
        "access_key_id": v["access_key_id"],
        "session_issuer_arn": v["session_issuer_arn"],
        "identity_provider": f"coalesce({v['identity_provider']}, {v['federated_provider']})",
        "tls_host": v["tls_host"],
        "raw": "r",
        "origin": "filename",
        "ingested_at": "now()",
    }
    where = "kind = 'record'" + (_IN_WINDOW if windowed else "")
    if sliced:
        where += " AND staging.rowid >= $low AND staging.rowid < $high"
    return f"""
INSERT INTO event_rows ({", ".join(columns)})
SELECT {", ".join(columns.values())}
FROM staging WHERE {where}
"""


_IN_WINDOW = " AND event_time >= $start AND event_time < $end"


def _repeats_sql(*, windowed: bool) -> str:
    """The staged records not to store, as ``(id, filename, conflict)``: those whose
    ``event_id`` is stored already, and all but the first of those the batch holds more than
    once (the same records delivered as .json and .json.gz, an event in two exports).  The
    first is the one from the input whose name sorts first, then the one whose text does:
    the same whatever order DuckDB staged them in.  ``conflict``: its content differs from
    the record kept — two different records under one eventID, which must not pass unseen,
    since the one dropped may be the refused call.

    Run only when :data:`_BATCH_DUPLICATES_SQL` or :data:`_STORED_REPEATS_SQL` finds any:
    it hashes and sorts the batch's repeated ids."""
    in_window = _IN_WINDOW if windowed else ""
    return f"""
WITH keyed AS (
    SELECT rowid AS id, filename, event_id, r::VARCHAR AS text FROM staging WHERE kind = 'record' {in_window}
),
stored AS (
    SELECT event_id, min(raw::VARCHAR) AS text FROM event_rows
    WHERE event_id IN (SELECT event_id FROM keyed) GROUP BY event_id
),
repeated AS (SELECT event_id FROM keyed GROUP BY event_id HAVING count(*) > 1),
candidates AS (
    SELECT keyed.*, stored.text AS stored_text
    FROM keyed LEFT JOIN stored USING (event_id)
    WHERE stored.text IS NOT NULL OR keyed.event_id IN (SELECT event_id FROM repeated)
),
ranked AS (
    SELECT *, row_number() OVER first AS n, first_value(text) OVER first AS first_text
    FROM candidates
    WINDOW first AS (PARTITION BY event_id ORDER BY filename, text)
)
SELECT id, filename, coalesce(text <> stored_text, text <> first_text) AS conflict
FROM ranked WHERE stored_text IS NOT NULL OR n > 1
"""


#: JSON bytes one INSERT may take in: DuckDB works on vectors of 2,048 rows and copies a
#: vector's strings several times over, so 2,048 records near CloudTrail's 256 KB would
#: need gigabytes at once.  Batches of ordinary records are inserted in one statement.
INSERT_SLICE_BYTES = 16 * 1024 * 1024
#: Row ranges of the staged records, each holding at most about INSERT_SLICE_BYTES of JSON;
#: one range when no vector of 2,048 records does.
_SLICES_SQL = f"""
WITH sized AS (SELECT rowid AS id, strlen(r::VARCHAR) AS bytes FROM staging WHERE kind = 'record'),
dense AS (SELECT max(total) > {INSERT_SLICE_BYTES} AS big FROM (SELECT sum(bytes) AS total FROM sized GROUP BY id // 2048))
SELECT min(id), max(id) + 1 FROM (
    SELECT id, CASE WHEN (SELECT big FROM dense)
                    THEN sum(bytes) OVER (ORDER BY id) // {INSERT_SLICE_BYTES} ELSE 0 END AS slice
    FROM sized
) GROUP BY slice ORDER BY 1
"""

#: The stored events the staged records repeat: a semi-join that hashes the batch's ids and
#: scans the stored ones, so memory follows the batch, not the store (an anti-join against
#: event_rows hashed every stored id, every batch).
_STORED_REPEATS_SQL = (
    "SELECT event_id FROM event_rows WHERE event_id IN (SELECT event_id FROM staging WHERE kind = 'record')"
)
#: How many staged records repeat an event_id of the same batch.
_BATCH_DUPLICATES_SQL = (
    "SELECT count(*) - count(DISTINCT event_id) FROM staging WHERE kind = 'record'"
)


#: Rows :meth:`Store.query_rows` keeps at most (``trailscan sql``): a result is held in
#: Python and rendered whole, so millions of rows would exhaust the machine's memory.
QUERY_MAX_ROWS = 100_000
QUERY_MAX_ROWS_ENV = "TRAILSCAN_SQL_MAX_ROWS"
#: Rows fetched from DuckDB at a time.
FETCH_ROWS = 10_000


def query_max_rows() -> int:
    """``$TRAILSCAN_SQL_MAX_ROWS`` if set, else :data:`QUERY_MAX_ROWS`."""
    return positive_setting(QUERY_MAX_ROWS_ENV, QUERY_MAX_ROWS, "rows")


@dataclass(frozen=True)
class Rows:
    """A query's result: ``columns``, the ``rows`` kept, and whether more were left out
    (``note`` then says how many were kept and how to see more)."""

    columns: list[str]
    rows: list[tuple]
    truncated: bool = False
    note: str = ""


@dataclass(frozen=True)
class IngestedObject:
    """A remote object to remember once its batch commits (S3 key + ETag, …)."""

    source: str
    name: str
    etag: str
    events: int = 0


@dataclass
class _Staged:
    """The batch being staged: what it has read so far, and the names of its inputs."""

    result: BatchResult = field(default_factory=BatchResult)
    names: list[str] = field(default_factory=list)


@contextmanager
def _threads(con: duckdb.DuckDBPyConnection, threads: int | None) -> Iterator[None]:
    """DuckDB's threads capped at ``threads`` for the statements of the block (None: all)."""
    if not threads:
        yield
        return
    con.execute(f"SET threads = {int(threads)}")
    try:
        yield
    finally:
        try:
            con.execute("RESET threads")
        except duckdb.Error:
            pass


class Store:
    """A DuckDB database holding ``events``, ``coverage``, ``ingested_objects`` and ``state``.

    Open one with :meth:`open`; use it as a context manager to close it.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: str) -> None:
        self.con = connection
        self.path = path
        self._staged: _Staged | None = None

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        *,
        read_only: bool = False,
        wait: float | None = None,
        memory_limit: str = MEMORY_LIMIT,
    ) -> "Store":
        """Open (creating if needed) the store at ``path``; ``":memory:"`` for a
        throw-away one, ``None`` for :func:`default_db_path`.

        Another process holding the database is waited for up to ``wait`` seconds
        (default ``$TRAILSCAN_LOCK_WAIT`` or 10), then :class:`StoreError` names it.
        """
        if wait is None:
            wait = float(os.environ.get("TRAILSCAN_LOCK_WAIT", "10"))
        target = str(default_db_path() if path is None else path)
        created = False
        if target != ":memory:":
            parent = Path(target).expanduser().parent
            try:
                if not parent.exists():  # an account's activity: only its owner may read it
                    make_dir(parent, DIR_MODE)
            except (OSError, InputError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else exc.message
                raise StoreError(f"cannot create the folder for the store {target}: {reason}") from None
            created = not Path(target).expanduser().exists()
            if read_only and not Path(target).exists():
                raise StoreError(f"no store at {target}", "ingest something first, or pass --db")
            for path in (target, f"{target}.wal"):
                kind = not_regular(path)
                if kind:  # DuckDB would wait forever on a FIFO
                    raise StoreError(f"the store {path} is {kind}, not a DuckDB file", "pass another --db")
        config = {"memory_limit": memory_limit}
        if target != ":memory:":
            config["temp_directory"] = f"{target}.tmp"  # where DuckDB spills, as for its own files
        deadline = time.monotonic() + wait
        while True:
            try:
                con = _connect(target, read_only=read_only, config=config)
                break
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" in text.lower() and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if "lock" in text.lower():
                    raise StoreError(
                        f"the store {target} is in use by another process",
                        "wait for it to finish (a notebook's trailscan session holds it only while a call runs; "
                        "ts.close() ends the session), or pass another --db",
                    ) from None
                raise StoreError(f"cannot open the store {target}: {_first_line(text)}") from None
            except duckdb.Error as exc:
                raise StoreError(f"cannot open the store {target}: {_first_line(str(exc))}") from None
        if created:
            os.chmod(Path(target).expanduser(), FILE_MODE)
        store = cls(con, target)
        # A JSON text that may be invalid (LookupEvents' CloudTrailEvent): NULL if so.
        con.execute("CREATE OR REPLACE TEMP MACRO _as_json(t) AS CASE WHEN json_valid(t) THEN json(t) END")
        if not read_only:
            try:
                _prepare(con, target)
            except BaseException:
                con.close()
                raise
        return store

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Another connection to the store, for another thread or settings of its own."""
        cursor = self.con.cursor()
        cursor.execute(f"USE {CATALOG}")
        return cursor

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingesting -----------------------------------------------------------------

    def ingest_files(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        origin: str = "files",
        objects: Sequence[IngestedObject] = (),
        names: Sequence[str] | None = None,
        window: Window | None = None,
    ) -> BatchResult:
        """Store every record of the local ``paths`` in one transaction.

        ``names`` gives the name to report, and to record as each event's ``origin``,
        for each path (an ``s3://`` URL for a downloaded object); ``objects`` are
        remembered as ingested in the same transaction.  With ``window``, only records
        whose ``eventTime`` lies inside it are stored (a source that reads a margin
        around its window drops the rest here).  Unreadable files are returned as
        problems, never raised: the readable ones are still stored.

        The same as :meth:`stage_files` then :meth:`commit_staged` (with whatever was
        staged before).
        """
        try:
            self.stage_files(paths, names=names)
        except BaseException:
            self.discard_staged()
            raise
        return self.commit_staged(objects=objects, window=window)

    def stage_files(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        names: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        """Read the local ``paths`` into the batch being staged, which
        :meth:`commit_staged` stores in one transaction (``names`` as for
        :meth:`ingest_files`; ``threads`` caps DuckDB's threads, default every core).  Records are read, checked and redacted here: a source can
        stage files as they arrive, and its commit only inserts.  Once staged, the files
        are no longer read.  Unreadable files become problems of the batch.
        """
        paths = list(dict.fromkeys(str(p) for p in paths))
        display = dict(zip(paths, names)) if names is not None else {p: p for p in paths}
        limit = max_input_bytes()

        # Files are first read as one JSON value a line, as CloudTrail writes them: DuckDB
        # then parses each value once to read it, where finding the end of a value that
        # may span lines costs another pass (measured on 200k records on one thread:
        # staging took a fifth less CPU).  A file that is not (pretty-printed JSON, two
        # values on a line) fails that read; its group, and the rest of this call, are
        # read value by value, which also words the errors of files that are not JSON.
        by_line = True

        def stage(group: list[str]) -> None:
            nonlocal by_line
            by_compression: dict[str, list[str]] = {}
            for path in group:
                by_compression.setdefault(compression_of[path], []).append(path)
            for compression, members in by_compression.items():
                try:
                    if by_line:
                        try:
                            self._stage_read(members, compression, by_line=True)
                            continue
                        except duckdb.Error:
                            by_line = False
                    self._stage_read(members, compression, by_line=False)
                except duckdb.Error as exc:
                    if len(group) > 1 or not (_too_big_for_one_read(exc) or _lone_surrogate(exc)):
                        raise
                    self._stage_in_pieces(members[0], compression, limit)

        def describe(path: str, error: str) -> FileProblem:
            return FileProblem(display[path], _describe_read_error(path, error))

        # Before DuckDB reads a gzip file, inflate() reads it through, counting what it
        # inflates: a file past the limit (a bomb), whose trailer lies about its size, or
        # that is not whole gzip, is refused and named.  DuckDB's own reader would inflate
        # a bomb whole, and batches are sized by the trailer.  Measured on the 50k-event
        # benchmark tree: the count costs 0.08-0.17 CPU-s, ~6-10% of the ingest (handing
        # DuckDB the inflated text instead, through Arrow or scratch files, cost more:
        # importing pyarrow and scanning Arrow took 0.45 s and 120 MiB at every start,
        # creating a file per input 0.1-0.2 ms each).
        compression_of: dict[str, str] = {}
        refused: list[FileProblem] = []
        for path in paths:
            try:
                compression_of[path] = _checked_input(path, limit)
            except _Unreadable as exc:
                refused.append(FileProblem(display[path], str(exc)))
        self._stage(list(compression_of), stage, describe, display, threads, refused=refused)

    def ingest_documents(
        self,
        documents: Sequence[str | bytes],
        *,
        origin: str,
        names: Sequence[str] | None = None,
        objects: Sequence[IngestedObject] = (),
    ) -> BatchResult:
        """Store records held in memory: each document is one JSON text in any shape
        of SPEC §4 (a bare record, ``{"Records": …}``, a LookupEvents page …)."""
        names = list(names) if names is not None else [f"{origin}#{i}" for i in range(len(documents))]
        if len(set(names)) != len(names):
            # Names key the documents below: a repeated name must not hide a document.
            names = [f"{name}#{i}" for i, name in enumerate(names)]
        texts = dict(zip(names, (_utf8_text(d) for d in documents)))
        blank = [name for name, text in texts.items() if not text.strip()]
        try:
            self._stage_named_texts({name: text for name, text in texts.items() if name not in set(blank)}, None)
        except BaseException:
            self.discard_staged()
            raise
        staged = self._staged
        assert staged is not None
        staged.result.files += len(blank)
        staged.result.problems.extend(FileProblem(name, "empty") for name in blank)
        return self.commit_staged(objects=objects)

    def _stage_named_texts(self, texts: dict[str, str], threads: int | None) -> None:
        """Stage JSON texts held in memory, each one value, keyed by the name reported."""

        def stage(group: list[str]) -> None:
            try:
                self._stage_texts(group, [texts[name] for name in group])
            except duckdb.Error as exc:
                if len(group) > 1 or not _lone_surrogate(exc):
                    raise
                self._stage_texts(group, [_without_lone_surrogates(texts[group[0]])])

        def describe(name: str, error: str) -> FileProblem:
            # DuckDB quotes the start of the document; it may hold what redaction removes.
            reason = _strip_error_class(error).split("  Input: ", 1)[0].strip()
            return FileProblem(name, f"invalid JSON ({reason})")

        self._stage(list(texts), stage, describe, {name: name for name in texts}, threads)

    def _stage(
        self,
        inputs: list[str],
        stage: Callable[[list[str]], None],
        describe: Callable[[str, str], FileProblem],
        display: dict[str, str],
        threads: int | None,
        *,
        refused: Sequence[FileProblem] = (),
    ) -> None:
        """Stage ``inputs`` into the temporary table of the batch (created if need be);
        ``refused`` inputs, not read, are problems of the batch.

        Staging the whole group is one DuckDB statement; only when it fails is the
        group halved until each bad input is isolated (k·log n statements for k bad
        inputs), so one corrupt file never costs the others.  Staging runs outside
        the transaction because a failed statement aborts a DuckDB transaction.
        """
        con = self.con
        staged = self._staged
        if staged is None:
            # Rows land in any order (event_rows has no order; readers sort): statements
            # then run on every core and hold less in memory (measured on 200k events:
            # staging 25% faster, peak RSS 90 MiB lower).
            con.execute("SET preserve_insertion_order = false")
            con.execute(
                "CREATE OR REPLACE TEMP TABLE staging "
                "(filename VARCHAR, kind VARCHAR, r JSON, v VARCHAR[], event_id VARCHAR, deep BOOLEAN, "
                "event_time TIMESTAMPTZ)"
            )
            staged = self._staged = _Staged()
        result = staged.result
        result.files += len(inputs) + len(refused)
        staged.names.extend(display.get(name, name) for name in inputs)
        staged.names.extend(problem.name for problem in refused)
        result.problems.extend(refused)

        def walk(group: list[str]) -> None:
            if not group:
                return
            try:
                stage(group)
                return
            except (duckdb.Error, UnicodeDecodeError) as exc:
                # A group may be staged by several statements (one per compression):
                # what the successful ones staged would be staged again by the retries.
                con.execute("DELETE FROM staging WHERE filename IN (SELECT unnest($names))", {"names": group})
                if len(group) == 1:
                    # DuckDB quotes the start of an invalid document in its error; cut
                    # inside a character, the quote cannot even become a Python string.
                    error = str(exc) if isinstance(exc, duckdb.Error) else "Malformed JSON"
                    result.problems.append(describe(group[0], _first_line(error)))
                    return
            # Nothing of a failed statement was inserted: retry the halves.
            middle = len(group) // 2
            walk(group[:middle])
            walk(group[middle:])

        try:
            with _threads(con, threads):
                walk(inputs)
                self._redact_deep(display)
                renamed = {path: name for path, name in display.items() if path != name}
                if renamed:
                    # Events name where they came from (an s3:// URL), not a temporary download.
                    con.execute(
                        "UPDATE staging SET filename = n.name "
                        "FROM (SELECT unnest($paths) AS path, unnest($names) AS name) AS n "
                        "WHERE staging.filename = n.path",
                        {"paths": list(renamed), "names": list(renamed.values())},
                    )
        except duckdb.Error as exc:
            raise StoreError(f"cannot write to the store {self.path}: {_first_line(str(exc))}") from None

    def _redact_deep(self, display: dict[str, str]) -> None:
        """Redact, in Python, the staged records whose secrets the regex could not: a secret
        key holding a number, an object or an array, or JSON text holding one.  They are
        rare; a file holding one that cannot be redacted is dropped and named."""
        con = self.con
        rows = con.execute("SELECT rowid, filename, r FROM staging WHERE deep").fetchall()
        if not rows:
            return
        ids, texts, unsafe = [], [], {}
        for rowid, filename, text in rows:
            try:
                texts.append(redact_record(text))
                ids.append(rowid)
            except (ValueError, RecursionError) as exc:
                unsafe.setdefault(filename, f"cannot redact a record: {exc}")
        # As the staging SQL computes them, from the redacted text.
        con.execute(
            "UPDATE staging SET r = f.r::JSON, "
            f"v = json_extract_string(f.r, [{_FIELD_PATHS}]), "
            f"event_id = coalesce(json_extract_string(f.r, '{dict(_FIELDS)['event_id']}'), md5(f.r)), "
            "deep = false "
            "FROM (SELECT unnest($ids) AS id, unnest($texts) AS r) AS f WHERE staging.rowid = f.id",
            {"ids": ids, "texts": texts},
        )
        if unsafe:
            con.execute("DELETE FROM staging WHERE filename IN (SELECT unnest($names))", {"names": list(unsafe)})
            problems = self._staged.result.problems
            problems.extend(FileProblem(display.get(name, name), why) for name, why in unsafe.items())

    def commit_staged(
        self,
        *,
        objects: Sequence[IngestedObject] = (),
        window: Window | None = None,
        threads: int | None = None,
    ) -> BatchResult:
        """Insert the staged records into ``event_rows`` in one transaction, dropping those
        already stored, with ``objects`` remembered as ingested (``window`` as for
        :meth:`ingest_files`, ``threads`` as for :meth:`stage_files`); what the batch read,
        stored and could not read, and per input the records without a usable eventTime
        and those dropped for an eventID kept with other content."""
        staged, self._staged = self._staged, None
        if staged is None:
            return BatchResult()
        con = self.con
        result = staged.result
        conflicts: list[tuple[str, int]] = []
        try:
            with _threads(con, threads):
                failed = {problem.name for problem in result.problems}
                stats = con.execute(
                    """SELECT filename,
                              count(*) FILTER (WHERE kind = 'record') AS records,
                              count(*) FILTER (WHERE kind = 'digest') AS digests,
                              count(*) FILTER (WHERE kind = 'unknown') AS unknown,
                              count(*) FILTER (WHERE kind = 'record' AND event_time IS NULL) AS untimed
                       FROM staging GROUP BY filename"""
                ).fetchall()
                con.execute("BEGIN TRANSACTION")
                before = con.execute("SELECT count(*) FROM event_rows").fetchone()[0]
                repeats = con.execute(_BATCH_DUPLICATES_SQL).fetchone()[0]
                stored = con.execute(f"SELECT EXISTS ({_STORED_REPEATS_SQL})").fetchone()[0]
                bounds = {} if window is None else {"start": window.start, "end": window.end}
                if repeats or stored:
                    conflicts = self._drop_repeats(bounds)
                slices = con.execute(_SLICES_SQL).fetchall()
                if len(slices) <= 1:
                    con.execute(_insert_sql(windowed=window is not None), bounds)
                else:  # large records: a few MiB per statement, still one transaction
                    insert = _insert_sql(windowed=window is not None, sliced=True)
                    for low, high in slices:
                        con.execute(insert, {**bounds, "low": low, "high": high})
                after = con.execute("SELECT count(*) FROM event_rows").fetchone()[0]
                remembered = list({(o.source, o.name): o for o in objects if o.name not in failed}.values())
                if remembered:
                    # One statement: executemany costs ~4 ms of CPU a row (4 s for 1,000 objects).
                    con.execute(
                        "INSERT OR REPLACE INTO ingested_objects "
                        "SELECT unnest($sources), unnest($names), unnest($etags), unnest($events), now()",
                        {
                            "sources": [o.source for o in remembered],
                            "names": [o.name for o in remembered],
                            "etags": [o.etag for o in remembered],
                            "events": [o.events for o in remembered],
                        },
                    )
                con.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # the failure came before BEGIN: nothing to roll back
            raise StoreError(f"cannot write to the store {self.path}: {_first_line(str(exc))}") from None
        except BaseException:
            # Ctrl-C or a bug mid-batch: leave no transaction open on the connection.
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise
        finally:
            self._drop_staging()
        result.new_events += after - before
        for name, count in conflicts:
            result.conflicts[name] = result.conflicts.get(name, 0) + count
        counted = set()
        for name, records, digests, unknown, untimed in stats:
            counted.add(name)
            result.records += records
            if untimed:
                result.untimed[name] = result.untimed.get(name, 0) + untimed
            if digests:
                result.digests += 1
            elif records == 0 and unknown:
                result.problems.append(FileProblem(name, "JSON, but not CloudTrail records"))
            elif unknown:
                result.skipped += unknown
        reported = {problem.name for problem in result.problems} | counted
        result.problems.extend(FileProblem(name, "empty") for name in staged.names if name not in reported)
        return result

    def _drop_repeats(self, bounds: dict) -> list[tuple[str, int]]:
        """Mark the staged records not to store (:func:`_repeats_sql`) as kind ``repeat``;
        ``(input, count)`` of those that conflict with the record kept."""
        con = self.con
        con.execute(f"CREATE OR REPLACE TEMP TABLE repeats AS {_repeats_sql(windowed=bool(bounds))}", bounds)
        try:
            con.execute("UPDATE staging SET kind = 'repeat' WHERE rowid IN (SELECT id FROM repeats)")
            return con.execute(
                "SELECT filename, count(*) FROM repeats WHERE conflict GROUP BY filename ORDER BY filename"
            ).fetchall()
        finally:
            con.execute("DROP TABLE repeats")

    def discard_staged(self) -> None:
        """Forget the batch being staged, if any (nothing of it is stored)."""
        if self._staged is not None:
            self._staged = None
            self._drop_staging()

    def _drop_staging(self) -> None:
        try:
            self.con.execute("DROP TABLE IF EXISTS staging")
            self.con.execute("RESET preserve_insertion_order")
        except duckdb.Error:
            pass

    def _stage_read(self, files: list[str], compression: str, *, by_line: bool) -> None:
        docs = _files_docs_sql(compression, by_line=by_line)
        self.con.execute(f"INSERT INTO staging {_normalize_sql(docs)}", {"files": files})

    def _stage_in_pieces(self, path: str, compression: str, limit: int) -> None:
        """Stage one file a few MiB of records at a time, parsed by Python: for the files
        DuckDB cannot read whole — one JSON value over :data:`MAX_OBJECT_BYTES` (a busy
        account's delivery file: 50 MB of gzip is ~800 MB of JSON), or records so large
        (CloudTrail allows 256 KB each) that DuckDB's vectors of 2,048 of them outgrow the
        memory limit — and for those holding a lone surrogate escape, which DuckDB refuses
        (:func:`_without_lone_surrogates`).  Memory is bounded by :data:`PIECE_BYTES`, not by
        the file; gzip is inflated by :func:`inflate`, bounded by ``limit``.

        A file that fails here fails whole: the caller removes what was staged of it.
        """
        piece: list[str] = []
        size = 0
        try:
            with open(path, "rb") as raw:
                handle = _Inflating(raw, limit) if compression == "gzip" else raw
                for text in _json_values(handle):
                    text = _without_lone_surrogates(text)
                    piece.append(text)
                    size += len(text)
                    if size >= PIECE_BYTES:
                        self._stage_texts(path, piece)
                        piece, size = [], 0
            if piece:
                self._stage_texts(path, piece)
        except (OSError, ValueError, _Unreadable) as exc:  # UnicodeDecodeError is a ValueError
            raise duckdb.InvalidInputException(f'Malformed JSON in file "{path}": {exc}') from None

    def _stage_texts(self, filenames: str | list[str], texts: list[str]) -> None:
        """Stage JSON texts (each one value), named ``filenames`` (one name for all, or one each)."""
        if isinstance(filenames, str):
            filenames = [filenames] * len(texts)
        self.con.register("docs_input", _arrow_table(filenames, texts))
        try:
            self.con.execute(f"INSERT INTO staging {_normalize_sql(_DOCUMENTS_SQL)}")
        finally:
            self.con.unregister("docs_input")

    # -- coverage, objects and state -----------------------------------------------

    def record_coverage(self, coverage: Coverage) -> None:
        self.con.execute(
            "INSERT INTO coverage VALUES (now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                coverage.source,
                coverage.account,
                coverage.region,
                coverage.window_start,
                coverage.window_end,
                coverage.events,
                coverage.skipped,
                coverage.status,
                coverage.detail,
            ],
        )

    def ingested_objects(self, source: str, prefix: str = "") -> dict[str, str]:
        """``name -> etag`` of the objects of ``source`` already stored."""
        rows = self.con.execute(
            "SELECT name, etag FROM ingested_objects WHERE source = ? AND starts_with(name, ?)",
            [source, prefix],
        ).fetchall()
        return dict(rows)

    def get_state(self, key: str) -> dict | None:
        row = self.con.execute("SELECT value FROM state WHERE key = ?", [key]).fetchone()
        return orjson.loads(row[0]) if row else None

    def set_state(self, key: str, value: dict | None) -> None:
        if value is None:
            self.con.execute("DELETE FROM state WHERE key = ?", [key])
        else:
            self.con.execute(
                "INSERT OR REPLACE INTO state VALUES (?, ?, now())", [key, orjson.dumps(value).decode()]
            )

    # -- reading ---------------------------------------------------------------------

    def confine(self) -> None:
        """Let SQL run on this connection see the store and nothing else: no files read
        or written (``COPY … TO``, ``EXPORT DATABASE``, ``read_text``, ``read_csv`` …), no
        other database attached, no extension installed or loaded, and no setting changed
        to undo it.  For ``trailscan sql`` without ``--write``: read-only means read-only
        for the machine too, not only for the store file — nor does a query spill to disk:
        past the memory limit it fails with DuckDB's out-of-memory error."""
        self.con.execute("SET temp_directory = ''")
        self.con.execute("SET max_temp_directory_size = '0B'")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")

    def count_events(self) -> int:
        return self.con.execute("SELECT count(*) FROM events").fetchone()[0]

    def query(self, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
        """Run ``sql`` with named ``params`` (bound by DuckDB, never formatted in);
        returns ``(columns, rows)``, every row."""
        try:
            cursor = self.con.execute(sql, params or {})
            columns = [d[0] for d in cursor.description] if cursor.description else []
            return columns, cursor.fetchall()
        except duckdb.Error as exc:
            raise QueryError(_first_line(str(exc))) from None

    def query_rows(self, sql: str, params: dict | None = None, *, max_rows: int | None = None) -> "Rows":
        """Run ``sql`` as :meth:`query` does, keeping at most ``max_rows`` rows (default
        :func:`query_max_rows`): DuckDB streams the result, and rows are fetched a few
        thousand at a time, so a query returning millions holds only what is kept."""
        if max_rows is None:
            max_rows = query_max_rows()
        try:
            cursor = self.con.execute(sql, params or {})
            columns = [d[0] for d in cursor.description] if cursor.description else []
            rows: list[tuple] = []
            while len(rows) <= max_rows:
                chunk = cursor.fetchmany(min(FETCH_ROWS, max_rows + 1 - len(rows)))
                if not chunk:
                    break
                rows.extend(chunk)
        except duckdb.OutOfMemoryException as exc:
            raise QueryError(
                _first_line(str(exc)), "narrow the query (WHERE, LIMIT, fewer columns) or aggregate"
            ) from None
        except duckdb.Error as exc:
            raise QueryError(_first_line(str(exc))) from None
        if len(rows) <= max_rows:
            return Rows(columns, rows)
        note = (
            f"only the first {max_rows} rows are shown; set {QUERY_MAX_ROWS_ENV} to show more, "
            "or add a LIMIT or an aggregate"
        )
        return Rows(columns, rows[:max_rows], truncated=True, note=note)


_SECRET_NAMES = frozenset(key.lower() for key in SECRET_KEYS)
_SECRET_TEXT = re.compile(_SECRET_PATTERN[len("(?i)") :], re.IGNORECASE)
_SECRET_HINT = re.compile(_SECRET_HINT_PATTERN[len("(?i)") :], re.IGNORECASE)


def redact_record(text: str) -> str:
    """The record (JSON text) with every value of a :data:`SECRET_KEYS` key, in any case,
    whatever its type, replaced by ``"REDACTED"`` — in nested objects and arrays, and in
    JSON text held in a string.  ``null`` stays ``null``."""
    return json.dumps(_redact_value(json.loads(text)), ensure_ascii=False, separators=(",", ":"))


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if key.lower() in _SECRET_NAMES and item is not None else _redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redact_value(item) for item in value]
    if isinstance(value, str) and _SECRET_HINT.search(value):
        try:
            inner = json.loads(value)
        except ValueError:  # not JSON: its quoted "key": "value" pairs at least
            return _SECRET_TEXT.sub(f'"\\1":"{REDACTED}"', value)
        if isinstance(inner, (dict, list)):
            return json.dumps(_redact_value(inner), ensure_ascii=False, separators=(",", ":"))
    return value


#: Rows per row group of the store (DuckDB's default: 122,880).  DuckDB writes a batch's
#: full row groups while inserting, one per thread, and the rest when it commits, on one:
#: measured on 200k events, an insert took 0.7 s instead of 1.1 s, and four batches of 50k
#: 1.0 s instead of 1.7 s.  Scans are as fast; zone maps (min/max per row group) get finer.
ROW_GROUP_ROWS = 32_768
#: The name the store is attached under (and made the default database).
CATALOG = "trailscan"


def _connect(target: str, *, read_only: bool, config: dict[str, str]) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the store at ``target``: attached rather than
    opened, because only ATTACH sets the row group size."""
    con = duckdb.connect(":memory:", config=config)
    try:
        options = ("READ_ONLY, " if read_only else "") + f"ROW_GROUP_SIZE {ROW_GROUP_ROWS}"
        quoted = "'" + target.replace("'", "''") + "'"
        con.execute(f"ATTACH {quoted} AS {CATALOG} ({options})")
        con.execute(f"USE {CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


#: The layout of the store, recorded in its ``meta`` table: 1, ``events`` a table with
#: VIRTUAL JSON columns (unrecorded); 2, ``event_rows`` under the view ``events`` (recorded
#: since ``meta`` exists).  Raise it with every change a trailscan reading or writing the
#: store by the previous layout would get wrong, and migrate in :func:`_prepare`.
SCHEMA_VERSION = 2


def _schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The layout of the store ``con`` uses (0: an empty database)."""
    tables = dict(
        con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = 'main'"
        ).fetchall()
    )
    if tables.get("meta") == "BASE TABLE":
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            return int(row[0]) if row else 0
        except ValueError:
            return 0
    if tables.get("events") == "BASE TABLE":
        return 1
    return 2 if "event_rows" in tables else 0


def _prepare(con: duckdb.DuckDBPyConnection, target: str) -> None:
    """Bring the store to :data:`SCHEMA_VERSION`, in one transaction: a store that cannot
    be brought forward is left as it was, with no new table.  A store written by a newer
    trailscan is never changed (:class:`NewerStoreError`): its layout may hold what this
    one would drop."""
    try:
        version = _schema_version(con)
    except duckdb.Error as exc:
        raise StoreError(f"cannot read the store {target}: {_first_line(str(exc))}") from None
    if version > SCHEMA_VERSION:
        raise NewerStoreError(
            f"the store {target} was written by a newer trailscan (schema {version}); upgrade trailscan",
            f"this one writes schema {SCHEMA_VERSION}",
        )
    try:
        con.execute("BEGIN TRANSACTION")
        if version == 1:
            # ``events`` was a table (with VIRTUAL JSON columns); its rows become
            # ``event_rows``, under the view.
            for column in ("request_parameters", "response_elements", "resources"):
                con.execute(f"ALTER TABLE events DROP COLUMN IF EXISTS {column}")
            con.execute("ALTER TABLE events RENAME TO event_rows")
        con.execute(SCHEMA)
        if version != SCHEMA_VERSION:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        if isinstance(exc, duckdb.Error):
            raise StoreError(f"cannot prepare the store {target}: {_first_line(str(exc))}") from None
        raise


def iter_batches(paths: Iterable[Path], limit_bytes: int) -> Iterator[list[Path]]:
    """Group paths so each group's decompressed size (:func:`decompressed_size`) stays under
    ``limit_bytes``; a file larger than that is a group of its own."""
    group: list[Path] = []
    size = 0
    for path in paths:
        weight = decompressed_size(path)
        if group and size + weight > limit_bytes:
            yield group
            group, size = [], 0
        group.append(path)
        size += weight
    if group:
        yield group


#: Decompressed bytes per compressed byte assumed where a gzip file does not say.
GZIP_RATIO = 14


def decompressed_size(path: str | os.PathLike) -> int:
    """The bytes of JSON a file holds once decompressed: for gzip, the size its trailer
    records (exact for one member under 4 GiB, as CloudTrail writes them; measured ratios
    run from 10x to 15x, so no fixed ratio bounds a batch); else the file's size; 0 when
    it cannot be read (reading it will say why)."""
    if not_regular(str(path)):
        return 0  # never opened: see not_regular()
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"\x1f\x8b":
                return os.fstat(handle.fileno()).st_size
            compressed = handle.seek(0, os.SEEK_END)
            if compressed < 20:
                return 0
            handle.seek(-4, os.SEEK_END)
            recorded = int.from_bytes(handle.read(4), "little")
    except OSError:
        return 0
    # Several members, or more than 4 GiB: the trailer holds only part of it.
    return recorded if recorded >= compressed else compressed * GZIP_RATIO


def _files_docs_sql(compression: str, *, by_line: bool = False) -> str:
    """``docs(filename, doc)`` of the files ``$files``: with ``by_line``, each line one
    JSON value (blank lines skipped); without, values however laid out.  A gzip file is
    read only once :func:`inflate` has read it through."""
    layout = "newline_delimited" if by_line else "unstructured"
    return (
        f"SELECT filename, json AS doc FROM read_json_objects($files, format='{layout}', "
        f"filename=true, compression='{compression}', maximum_object_size={MAX_OBJECT_BYTES})"
    )


def _too_big_for_one_read(error: duckdb.Error) -> bool:
    return isinstance(error, duckdb.OutOfMemoryException) or "maximum_object_size" in str(error)


def _lone_surrogate(error: duckdb.Error) -> bool:
    """DuckDB refused a ``\\ud800`` escape without its pair (or the reverse)."""
    return "surrogate" in str(error)


_ESCAPE = re.compile(
    r"\\(?:(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)


def _without_lone_surrogates(text: str) -> str:
    """JSON text with each ``\\uD800``-``\\uDFFF`` escape that is not half of a pair made
    ``\\ufffd``, as :func:`_utf8_text` does with such characters: DuckDB refuses the whole
    value otherwise, and one bad user agent would cost a delivery file.  Escapes are read
    left to right, so an escaped backslash followed by ``ud800`` is left alone."""
    if "\\u" not in text:
        return text
    return _ESCAPE.sub(lambda m: "\\ufffd" if m.group(2) else m.group(0), text)


_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_RECORDS_HEAD = re.compile(r'\{[ \t\n\r]*"Records"[ \t\n\r]*:[ \t\n\r]*(?=\[)')


def _json_values(handle: IO[bytes], *, read_size: int = 4 << 20) -> Iterator[str]:
    """The text of each record-level JSON value of a UTF-8 byte stream, one at a time:
    the elements of a ``{"Records": [...]}`` document (``Records`` first, as CloudTrail
    writes it) or of a top-level array, else every top-level value (NDJSON).  Raises
    ValueError for anything else, including more after the array, or a value larger
    than :data:`MAX_OBJECT_BYTES`."""
    stream = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="strict")
    buffer, pos, ended = "", 0, False

    def read_more(size: int = read_size) -> bool:
        nonlocal buffer, pos, ended
        chunk = stream.read(size)
        if not chunk:
            ended = True
            return False
        buffer, pos = buffer[pos:] + chunk, 0
        return True

    def skip_space() -> bool:
        """Move to the next non-space character; False at the end of the stream."""
        nonlocal pos
        while True:
            pos = _WHITESPACE.match(buffer, pos).end()
            if pos < len(buffer):
                return True
            if ended or not read_more():
                return False

    def value() -> str:
        nonlocal pos
        while True:
            try:
                _, end = _DECODER.raw_decode(buffer, pos)
            except json.JSONDecodeError as exc:
                if len(buffer) - pos > MAX_OBJECT_BYTES:
                    raise ValueError(f"a JSON value larger than {MAX_OBJECT_BYTES >> 20} MiB") from None
                # The value goes on: read as much again, so a large one is parsed a few
                # times over, not once per chunk.
                if ended or not read_more(max(read_size, len(buffer) - pos)):
                    raise ValueError(exc.msg) from None
                continue
            if end == len(buffer) and not ended and read_more():
                continue  # a number may go on in the next chunk
            if end - pos > MAX_OBJECT_BYTES:
                raise ValueError(f"a JSON value larger than {MAX_OBJECT_BYTES >> 20} MiB")
            text, pos = buffer[pos:end], end
            return text

    def expect(char: str) -> None:
        nonlocal pos
        if not skip_space() or buffer[pos] != char:
            raise ValueError(f"expected {char!r}")
        pos += 1

    while len(buffer) < 4096 and read_more():
        pass
    if not skip_space():
        return
    head = _RECORDS_HEAD.match(buffer, pos)
    if head:
        pos = head.end()
    if buffer[pos] != "[":
        while skip_space():
            yield value()
        return
    pos += 1
    if skip_space() and buffer[pos] == "]":
        pos += 1
    else:
        while True:
            if not skip_space():
                raise ValueError("the array is not closed")
            yield value()
            if skip_space() and buffer[pos] == ",":
                pos += 1
                continue
            expect("]")
            break
    if head:
        expect("}")
    if skip_space():
        raise ValueError("more after the records")


#: Documents per Arrow record batch: DuckDB reads the batches of a table on several threads
#: (measured on 50k events in 1,152 documents: one batch, 0.6 s; 16, 0.3-0.5 s).
ARROW_BATCH_DOCUMENTS = 64


def _arrow_table(filenames: list[str], docs: list[str]):
    """Documents held in memory, as DuckDB reads them without copying.  pyarrow is imported
    here: reading local files never needs it, and it is a tenth of a second of every start."""
    import pyarrow as pa

    step = ARROW_BATCH_DOCUMENTS
    batches = [
        pa.record_batch({"filename": filenames[i : i + step], "doc": docs[i : i + step]})
        for i in range(0, len(docs), step)
    ]
    if not batches:
        return pa.table({"filename": pa.array([], pa.string()), "doc": pa.array([], pa.string())})
    return pa.Table.from_batches(batches)


def _utf8_text(document: str | bytes) -> str:
    """A document as text UTF-8 can carry: invalid bytes and lone surrogates (which a
    JSON parser makes of ``"\\ud800"``) become U+FFFD."""
    if isinstance(document, bytes):
        return document.decode("utf-8", "replace")
    try:
        document.encode("utf-8")
    except UnicodeEncodeError:
        return document.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return document


def _compression_of(path: str) -> str:
    """By name, as DuckDB does, except gzip under another name (renamed downloads)."""
    if path.endswith(".gz"):
        return "gzip"
    return "gzip" if _is_gzip(path) else "none"


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == _GZIP_MAGIC
    except OSError:
        return False


_GZIP_MAGIC = b"\x1f\x8b"


def max_input_bytes() -> int:
    """``$TRAILSCAN_MAX_INPUT_BYTES`` if set, else :data:`MAX_INPUT_BYTES`."""
    return positive_setting(MAX_INPUT_BYTES_ENV, MAX_INPUT_BYTES, "bytes")


class _Unreadable(Exception):
    """An input refused before DuckDB reads it; the message says why, in one line."""


def _too_large(limit: int) -> str:
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
    return f"more than {size} of JSON once decompressed: not read (the limit is {MAX_INPUT_BYTES_ENV})"


def _inflated(source: IO[bytes], limit: int) -> Iterator[bytes]:
    """The bytes the gzip stream ``source`` inflates to, a few MiB at a time.

    The one decompressor of trailscan: bounded by the bytes it actually inflates, never by
    the size a gzip trailer claims (a bomb's can say anything).  Every member of the stream
    is read and checked by zlib (CRC and length), so a trailer that lies fails the file.
    Raises :class:`_Unreadable` past ``limit`` bytes, or for anything but whole gzip."""
    head = source.read(2)
    if head != _GZIP_MAGIC:
        raise _Unreadable("named .gz but not gzip-compressed" if head else "empty")
    inflater = zlib.decompressobj(31)
    pending, inflated = head, 0
    try:
        while True:
            if not pending:
                pending = source.read(1 << 20)
                if not pending:
                    break
            if inflater.eof:  # another member, or what follows the last one
                if not pending.strip(b"\x00"):  # zero padding, as gzip allows
                    pending = b""
                    continue
                if not pending.startswith(_GZIP_MAGIC[: len(pending)]):
                    raise _Unreadable("corrupt gzip (data after the end of the compressed stream)")
                inflater = zlib.decompressobj(31)
            data = inflater.decompress(pending, 4 << 20)
            pending = inflater.unconsumed_tail or inflater.unused_data
            inflated += len(data)
            if inflated > limit:
                raise _Unreadable(_too_large(limit))
            if data:
                yield data
    except zlib.error as exc:
        raise _Unreadable(f"corrupt gzip ({exc})") from None
    if not inflater.eof:
        raise _Unreadable("corrupt gzip (Compressed file ended before the end-of-stream marker was reached)")


def inflate(source: IO[bytes], target: IO[bytes] | None, limit: int) -> int:
    """Inflate the gzip stream ``source`` into ``target`` (or only count, with None)
    through :func:`_inflated`; the bytes inflated."""
    inflated = 0
    for data in _inflated(source, limit):
        inflated += len(data)
        if target is not None:
            target.write(data)
    return inflated


class _Inflating(io.RawIOBase):
    """A gzip stream read inflated, through :func:`_inflated` (for files read in pieces)."""

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self.chunks = _inflated(source, limit)
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, into) -> int:
        if not self.buffer:
            self.buffer = next(self.chunks, b"")
        size = min(len(into), len(self.buffer))
        into[:size] = self.buffer[:size]
        self.buffer = self.buffer[size:]
        return size


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def not_regular(path: str) -> str | None:
    """What ``path`` is when it exists and is not a regular file (``"a FIFO"`` …): reading
    a FIFO waits for a writer forever, a device may never end."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")


def _checked_input(path: str, limit: int) -> str:
    """How DuckDB is to read the input ``path`` (``gzip`` or ``none``), once checked: a
    regular file, holding at most ``limit`` bytes of JSON, whole gzip if gzip (read through
    by :func:`inflate`).  Raises :class:`_Unreadable` otherwise."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _Unreadable(f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _Unreadable(f"{not_regular(path)}, not a regular file: not read")
    if info.st_size == 0:
        return "none"  # read as empty
    if _compression_of(path) != "gzip":
        if info.st_size > limit:
            raise _Unreadable(_too_large(limit))
        return "none"
    try:
        with open(path, "rb") as source:
            inflate(source, None, limit)
    except OSError as exc:
        raise _Unreadable(f"cannot be read: {exc.strerror}") from None
    return "gzip"


def _describe_read_error(path: str, error: str) -> str:
    """One plain line for why DuckDB could not read the plain file ``path``."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if size == 0:
        return "empty"
    return _describe_json_error(error)


def _describe_json_error(error: str) -> str:
    """One plain line for DuckDB's ``error`` reading JSON."""
    lowered = error.lower()
    if "malformed json" in lowered or "json" in lowered:
        return "not JSON" if "byte 0" in lowered else f"invalid JSON ({_strip_error_class(error)})"
    if "utf" in lowered or "unicode" in lowered:
        return "not UTF-8 text"
    return _strip_error_class(error)


def _strip_error_class(text: str) -> str:
    head, sep, tail = text.partition(": ")
    return tail if sep and head.endswith("Error") else text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text

