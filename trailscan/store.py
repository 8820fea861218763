"""The DuckDB store: every CloudTrail record from every source lands in table ``events``.

DuckDB does the heavy lifting.  A batch of inputs (local files, or JSON texts held in
memory) is read by ``read_json_objects``; each top-level JSON value is unwrapped from
whatever shape it came in (SPEC §4: ``{"Records": […]}``, a JSON array, a bare record,
NDJSON, LookupEvents output, EventBridge envelopes), secrets are redacted, the columns of
SPEC §6 are extracted with one parse per record, and the batch is inserted in one
transaction — so an interrupted ingest leaves every earlier batch intact and the store
usable.  Uniqueness by ``event_id`` is kept with an anti-join rather than a primary key:
measured on 200k events, DuckDB's ART index made the insert ~45% slower and its memory
grows with the store.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from trailscan.errors import QueryError, StoreError
from trailscan.model import BatchResult, Coverage, FileProblem, Window

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
#: Largest single JSON value read (a whole delivery file is one value); DuckDB
#: allocates twice this per reader thread.
MAX_OBJECT_BYTES = 64 * 1024 * 1024
_SECRET_PATTERN = (
    r'(?i)"(' + "|".join(SECRET_KEYS) + r')"\s*:\s*"(?:[^"\\]|\\.)*"'
)
# A cheap pre-filter: only records containing one of these substrings go through the regex.
_SECRET_HINTS = ("oken", "ecret", "assword", "AMLAssertion", "amlResponse", "rivateKey")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
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
    request_parameters JSON,
    response_elements JSON,
    resources JSON,
    tls_host VARCHAR,
    raw JSON,
    origin VARCHAR,
    ingested_at TIMESTAMPTZ
);
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
_JSON_FIELDS = (
    ("request_parameters", "$.requestParameters"),
    ("response_elements", "$.responseElements"),
    ("resources", "$.resources"),
)

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


def _normalize_sql(docs_sql: str) -> str:
    """SQL turning ``docs(filename, doc JSON)`` into staged rows
    ``(filename, kind, r)``: one row per record (kind ``record``), plus one marker row
    (``r`` NULL) for every digest file, every JSON value that is not CloudTrail, and
    every container that held no records."""
    secret_hint = " OR ".join(f"contains(r, '{hint}')" for hint in _SECRET_HINTS)
    return f"""
WITH docs AS ({docs_sql}),
-- A top-level array is a list of units (records, or wrappers around them).
units AS (
    SELECT filename, unnest(from_json(doc, '["JSON"]')) AS u
    FROM docs WHERE starts_with(ltrim(doc::VARCHAR), '[')
    UNION ALL
    SELECT filename, doc AS u
    FROM docs WHERE NOT starts_with(ltrim(doc::VARCHAR), '[')
),
shaped AS (
    SELECT filename, u,
           CASE WHEN json_type(u) = 'OBJECT'
                THEN from_json(u, '{_UNIT_SCHEMA}') END AS s
    FROM units
),
classified AS (
    SELECT filename,
        CASE
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
                     THEN json(e ->> 'CloudTrailEvent')
                     ELSE e END)
            WHEN s."detail" IS NOT NULL AND s."detail-type" IS NOT NULL THEN [json(s."detail")]
            -- One LookupEvents entry, as `lookup-events --query 'Events[]'` prints them.
            WHEN json_type(s."CloudTrailEvent") = 'VARCHAR' THEN [json(s."CloudTrailEvent" ->> '$')]
            WHEN s."digestStartTime" IS NOT NULL OR s."logFiles" IS NOT NULL THEN []
            WHEN s."eventVersion" IS NOT NULL
                 OR (s."eventName" IS NOT NULL AND s."eventSource" IS NOT NULL) THEN [json(u)]
            ELSE []
        END AS recs
    FROM shaped
),
staged AS (
    SELECT filename,
           CASE WHEN len(recs) > 0 THEN 'record'
                WHEN shape IN ('digest', 'unknown') THEN shape
                ELSE 'container' END AS kind,
           unnest(CASE WHEN len(recs) > 0 THEN recs ELSE [NULL::JSON] END) AS r
    FROM classified
)
SELECT filename, kind,
       CASE WHEN r IS NULL THEN NULL
            WHEN {secret_hint}
            THEN regexp_replace(r::VARCHAR, '{_SECRET_PATTERN}', '"\\1":"{REDACTED}"', 'g')::JSON
            ELSE r END AS r
FROM staged
"""


def _insert_sql(windowed: bool = False) -> str:
    """INSERT of the staged records into ``events``: one ``json_extract_string`` call per
    record pulls every column out in one parse; duplicates within the batch and against
    the store are dropped.  ``windowed`` keeps only records whose ``eventTime`` lies in
    ``[$start, $end)``."""
    v = {name: f"v[{i}]" for i, (name, _) in enumerate(_FIELDS, start=1)}
    j = {name: f"nullif(j[{i}], 'null'::JSON)" for i, (name, _) in enumerate(_JSON_FIELDS, start=1)}
    columns = {
        "event_id": "event_id",
        "event_time": f"try_cast({v['event_time']} AS TIMESTAMPTZ)",
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
        "request_parameters": j["request_parameters"],
        "response_elements": j["response_elements"],
        "resources": j["resources"],
        "tls_host": v["tls_host"],
        "raw": "r",
        "origin": "filename",
        "ingested_at": "now()",
    }
    paths = ", ".join(f"'{path}'" for _, path in _FIELDS)
    event_time = f"try_cast({v['event_time']} AS TIMESTAMPTZ)"
    in_window = f"\n  AND {event_time} >= $start AND {event_time} < $end" if windowed else ""
    json_paths = ", ".join(f"'{path}'" for _, path in _JSON_FIELDS)
    return f"""
INSERT INTO events ({", ".join(columns)})
WITH fresh AS (
    SELECT filename, r,
           json_extract_string(r, [{paths}]) AS v,
           json_extract(r, [{json_paths}]) AS j
    FROM staging WHERE kind = 'record' AND json_type(r) = 'OBJECT'
),
keyed AS (
    -- A record without eventID is keyed by a stable hash of its (redacted) text.
    SELECT coalesce({v['event_id']}, md5(r::VARCHAR)) AS event_id, * FROM fresh
),
unique_in_batch AS (
    SELECT * FROM keyed
    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY filename) = 1
)
SELECT {", ".join(columns.values())}
FROM unique_in_batch
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = unique_in_batch.event_id){in_window}
"""


_INSERT_SQL = _insert_sql()
_INSERT_WINDOW_SQL = _insert_sql(windowed=True)


@dataclass(frozen=True)
class IngestedObject:
    """A remote object to remember once its batch commits (S3 key + ETag, …)."""

    source: str
    name: str
    etag: str
    events: int = 0


class Store:
    """A DuckDB database holding ``events``, ``coverage``, ``ingested_objects`` and ``state``.

    Open one with :meth:`open`; use it as a context manager to close it.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: str) -> None:
        self.con = connection
        self.path = path

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        *,
        read_only: bool = False,
        wait: float | None = None,
        memory_limit: str = "1GB",
    ) -> "Store":
        """Open (creating if needed) the store at ``path``; ``":memory:"`` for a
        throw-away one, ``None`` for :func:`default_db_path`.

        Another process holding the database is waited for up to ``wait`` seconds
        (default ``$TRAILSCAN_LOCK_WAIT`` or 10), then :class:`StoreError` names it.
        """
        if wait is None:
            wait = float(os.environ.get("TRAILSCAN_LOCK_WAIT", "10"))
        target = str(default_db_path() if path is None else path)
        if target != ":memory:":
            parent = Path(target).expanduser().parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for the store {target}: {exc.strerror}") from None
            if read_only and not Path(target).exists():
                raise StoreError(f"no store at {target}", "ingest something first, or pass --db")
        config = {"memory_limit": memory_limit}
        deadline = time.monotonic() + wait
        while True:
            try:
                con = duckdb.connect(target, read_only=read_only, config=config)
                break
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" in text.lower() and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if "lock" in text.lower():
                    raise StoreError(
                        f"the store {target} is in use by another process",
                        "wait for it to finish, or pass another --db",
                    ) from None
                raise StoreError(f"cannot open the store {target}: {_first_line(text)}") from None
            except duckdb.Error as exc:
                raise StoreError(f"cannot open the store {target}: {_first_line(str(exc))}") from None
        store = cls(con, target)
        if not read_only:
            con.execute(SCHEMA)
        return store

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

        ``names`` gives the name to report and to record as each event's ``origin``
        (an ``s3://`` URL for a downloaded object); ``objects`` are remembered as
        ingested in the same transaction, except those whose file could not be read,
        so that the next run retries them.  With ``window``, only records whose
        ``eventTime`` lies inside it are stored (a source that reads a margin around
        its window drops the rest here).  Unreadable files are returned as problems,
        never raised: the readable ones are still stored.
        """
        paths = [str(p) for p in paths]
        names = list(names) if names is not None else paths
        display = dict(zip(paths, names))
        result = BatchResult(files=len(paths))
        readable, problems = self._bisect_readable(paths)
        result.problems.extend(FileProblem(display[p], msg) for p, msg in problems)
        unreadable = {display[p] for p, _ in problems}
        objects = [o for o in objects if o.name not in unreadable]
        self._stage_and_insert(readable, result, display, objects, window=window)
        return result

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
        texts = [d.decode("utf-8", "replace") if isinstance(d, bytes) else d for d in documents]
        result = BatchResult(files=len(texts))
        good: list[tuple[str, str]] = []
        for name, text in zip(names, texts):
            if not text.strip():
                result.problems.append(FileProblem(name, "empty"))
                continue
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                result.problems.append(FileProblem(name, f"invalid JSON ({exc})"))
                continue
            good.append((name, text))
        table = pa.table({"filename": [n for n, _ in good], "doc": [t for _, t in good]})
        self._stage_and_insert(
            table, result, {n: n for n, _ in good}, objects, docs_sql="SELECT filename, doc::JSON AS doc FROM docs_input"
        )
        return result

    def _docs_sql_for_files(self, compression: str = "auto") -> str:
        return (
            "SELECT filename, json AS doc FROM read_json_objects($files, format='unstructured', "
            f"filename=true, compression='{compression}', maximum_object_size={MAX_OBJECT_BYTES})"
        )

    def _bisect_readable(self, paths: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Split ``paths`` into readable ``(path, compression)`` and ``(path, problem)``.

        Reading a whole batch is one cheap parse-only pass; only when it fails is the
        batch halved until each bad file is isolated (k·log n probes for k bad files).
        """
        readable: list[tuple[str, str]] = []
        problems: list[tuple[str, str]] = []

        def probe(group: list[str], compression: str = "auto") -> str | None:
            try:
                self.con.execute(
                    f"SELECT count(*) FROM ({self._docs_sql_for_files(compression)})", {"files": group}
                ).fetchone()
                return None
            except duckdb.Error as exc:
                return _first_line(str(exc))

        def walk(group: list[str]) -> None:
            if not group:
                return
            error = probe(group)
            if error is None:
                readable.extend((p, "auto") for p in group)
                return
            if len(group) > 1:
                middle = len(group) // 2
                walk(group[:middle])
                walk(group[middle:])
                return
            path = group[0]
            # gzip under a name without .gz (as people rename downloads).
            if _is_gzip(path) and not path.endswith(".gz") and probe(group, "gzip") is None:
                readable.append((path, "gzip"))
                return
            problems.append((path, _describe_read_error(path, error)))

        walk(paths)
        return readable, problems

    def _stage_and_insert(
        self,
        inputs: list[tuple[str, str]] | pa.Table,
        result: BatchResult,
        display: dict[str, str],
        objects: Sequence[IngestedObject],
        docs_sql: str | None = None,
        window: Window | None = None,
    ) -> None:
        con = self.con
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute("DROP TABLE IF EXISTS staging")
            if isinstance(inputs, pa.Table):
                con.register("docs_input", inputs)
                con.execute(f"CREATE TEMP TABLE staging AS {_normalize_sql(docs_sql)}")
                con.unregister("docs_input")
                seen = set(inputs.column("filename").to_pylist())
            else:
                by_compression: dict[str, list[str]] = {}
                for path, compression in inputs:
                    by_compression.setdefault(compression, []).append(path)
                first = True
                for compression, group in by_compression.items():
                    verb = "CREATE TEMP TABLE staging AS" if first else "INSERT INTO staging"
                    con.execute(f"{verb} {_normalize_sql(self._docs_sql_for_files(compression))}", {"files": group})
                    first = False
                if first:
                    con.execute("CREATE TEMP TABLE staging (filename VARCHAR, kind VARCHAR, r JSON)")
                seen = {p for p, _ in inputs}
            stats = con.execute(
                """SELECT filename,
                          count(*) FILTER (WHERE kind = 'record') AS records,
                          count(*) FILTER (WHERE kind = 'digest') AS digests,
                          count(*) FILTER (WHERE kind = 'unknown') AS unknown
                   FROM staging GROUP BY filename"""
            ).fetchall()
            renamed = {path: name for path, name in display.items() if path != name}
            if renamed:
                # Events name where they came from (an s3:// URL), not a temporary download.
                con.register("origin_names", pa.table({"path": list(renamed), "name": list(renamed.values())}))
                con.execute(
                    "UPDATE staging SET filename = origin_names.name FROM origin_names "
                    "WHERE staging.filename = origin_names.path"
                )
                con.unregister("origin_names")
            before = con.execute("SELECT count(*) FROM events").fetchone()[0]
            if window is None:
                con.execute(_INSERT_SQL)
            else:
                con.execute(_INSERT_WINDOW_SQL, {"start": window.start, "end": window.end})
            after = con.execute("SELECT count(*) FROM events").fetchone()[0]
            if objects:
                con.executemany(
                    "INSERT OR REPLACE INTO ingested_objects VALUES (?, ?, ?, ?, now())",
                    [(o.source, o.name, o.etag, o.events) for o in objects],
                )
            con.execute("DROP TABLE staging")
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"cannot write to the store {self.path}: {_first_line(str(exc))}") from None
        result.new_events += after - before
        counted = set()
        for filename, records, digests, unknown in stats:
            counted.add(filename)
            result.records += records
            if digests:
                result.digests += 1
            elif records == 0 and unknown:
                result.problems.append(
                    FileProblem(display.get(filename, filename), "JSON, but not CloudTrail records")
                )
            if records and unknown:
                result.skipped += unknown
        for filename in sorted(seen - counted):
            result.problems.append(FileProblem(display.get(filename, filename), "empty"))

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

    def count_events(self) -> int:
        return self.con.execute("SELECT count(*) FROM events").fetchone()[0]

    def query(self, sql: str, params: dict | None = None) -> tuple[list[str], list[tuple]]:
        """Run ``sql`` with named ``params`` (bound by DuckDB, never formatted in);
        returns ``(columns, rows)``."""
        try:
            cursor = self.con.execute(sql, params or {})
        except duckdb.Error as exc:
            raise QueryError(_first_line(str(exc))) from None
        columns = [d[0] for d in cursor.description] if cursor.description else []
        return columns, cursor.fetchall()


def iter_batches(paths: Iterable[Path], limit_bytes: int) -> Iterator[list[Path]]:
    """Group paths so each group's estimated decompressed size stays under ``limit_bytes``
    (compressed files are counted at 10× their size)."""
    group: list[Path] = []
    size = 0
    for path in paths:
        try:
            weight = path.stat().st_size * (10 if path.suffix == ".gz" else 1)
        except OSError:
            weight = 0
        if group and size + weight > limit_bytes:
            yield group
            group, size = [], 0
        group.append(path)
        size += weight
    if group:
        yield group


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _describe_read_error(path: str, error: str) -> str:
    """One plain line for why DuckDB could not read ``path``."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if size == 0:
        return "empty"
    if _is_gzip(path):
        try:
            with gzip.open(path, "rb") as handle:
                while handle.read(1 << 20):
                    pass
        except (OSError, EOFError) as exc:
            return f"corrupt gzip ({exc})"
    elif path.endswith(".gz"):
        return "named .gz but not gzip-compressed"
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

