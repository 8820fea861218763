"""The notebook face of trailscan: one :class:`Session` over a store.

``trailscan.open()`` opens the DuckDB store the CLI writes (or ``":memory:"``, or any
path) and hands back a session that speaks pandas and DuckDB::

    import trailscan

    ts = trailscan.open()                        # the default store, as `trailscan` uses it
    ts                                           # size, time span, accounts, coverage, causes
    ts.ingest_files(["trail/"])                  # or ts.ingest_s3("24h", bucket=…), ts.ingest_lookup("24h")
    found = ts.explain("24h", iam="iam.json", service_accounts="sa.json")
    found.to_frame()                             # one row per finding: workload, cause, fix
    found.events(0)                              # the events behind the first finding
    ts.events("2h", errors_only=True)            # any slice of the events, as a DataFrame
    ts.sql("SELECT error_code, count(*) FROM events GROUP BY ALL").df()
    ts.report(to="reports/", findings=found)     # report.html, report.md, findings.json, events.parquet

Everything here is a thin layer over the pipeline the CLI runs (``sources``, ``store``,
``explain``, ``report``): the same findings, the same coverage, the same fail-closed
rules.  Nothing prints; summaries are what Jupyter displays (``_repr_html_``), built from
cheap aggregates only (counts, min/max, groupings on small columns — never the JSON) so
that a store of millions of events shows at once.

A session on disk holds no connection between calls: DuckDB lets one process write a
file or many read it, so each call opens the store (read-only to read, read-write to
ingest) and closes it, and the CLI can read and write beside a notebook that keeps
``ts`` open.  Reads go through a cursor of their own, kept in UTC (DuckDB 2 refuses new
work on a connection while an ``execute()`` result is unfinished); :meth:`Session.sql`
hands out its result read into memory, so no relation holds the file.
"""

from __future__ import annotations

import html
import os
import re
from contextlib import contextmanager
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

import duckdb

from trailscan.arn import principal_name
from trailscan.errors import QueryError, UsageError
from trailscan.findings import CHANGE_FIELDS, READ_STATUSES, CoverageRow, Finding, FindingsReport, findings_document
from trailscan.model import BatchResult, Coverage, ProgressFn, Window, utc_now
from trailscan.sources import IngestRequest
from trailscan.store import Store, default_db_path
from trailscan.window import Moment, make_window

if TYPE_CHECKING:  # pragma: no cover
    import boto3
    import pandas as pd

    from trailscan.report import ReportLocation

__all__ = ["Explanation", "Ingested", "Session", "open"]

PathLike = str | os.PathLike[str]

#: Columns of :meth:`Session.events` (``raw`` only on request: it is the bulk of the bytes).
EVENT_COLUMNS = (
    "event_time",
    "event_id",
    "event_source",
    "event_name",
    "aws_region",
    "account_id",
    "error_code",
    "error_message",
    "identity_type",
    "identity_arn",
    "user_name",
    "principal_id",
    "access_key_id",
    "session_issuer_arn",
    "identity_provider",
    "source_ip",
    "user_agent",
    "read_only",
    "event_category",
    "event_type",
    "event_version",
    "request_parameters",
    "response_elements",
    "resources",
    "tls_host",
    "origin",
    "ingested_at",
)

#: Columns of :meth:`Session.coverage` (the SPEC §7 coverage rows).
_COVERAGE_COLUMNS = ("source", "account", "region", "status", "events", "detail")

#: Columns of the flattened findings (:meth:`Explanation.to_frame`), SPEC §7 first.
FINDING_COLUMNS = (
    "kind",
    "cause",
    "cluster",
    "namespace",
    "service_account",
    "resolution",
    "role_arn",
    "event_name",
    "error_code",
    "count",
    "first_seen",
    "last_seen",
    "explanation",
    "fix",
    "workload",
    "action",
    "event_source",
    "principal_arn",
    "error_message",
    "account",
    "regions",
    "candidates",
    "sample_event_ids",
    "status",
    "policy_as_of",
    "decisive_change",
)

#: Columns of :meth:`Session.changes` and :meth:`Explanation.changes`, as the CLI shows them.
CHANGE_COLUMNS = CHANGE_FIELDS

#: How many accounts or regions a summary names before it says "and N more".
_SHOWN = 8
_SA_SHORTHAND = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

_EVENTS_SQL = """
SELECT {columns}
FROM events
WHERE ($since IS NULL OR event_time >= CAST($since AS TIMESTAMPTZ))
  AND ($until IS NULL OR event_time < CAST($until AS TIMESTAMPTZ))
  AND (NOT $errors_only OR error_code IS NOT NULL)
  AND ($event_names IS NULL OR list_contains(CAST($event_names AS VARCHAR[]), event_name))
  AND ($principal IS NULL
       OR identity_arn = $principal OR session_issuer_arn = $principal OR user_name = $principal
       OR principal_id = $principal OR access_key_id = $principal)
ORDER BY event_time DESC, event_id
LIMIT $limit
"""

# One scan for the size, one for where the events come from: both cheap on millions of
# rows (DuckDB answers count/min/max from a columnar scan, the grouping is on two small
# columns), unlike anything that reads the raw JSON.
_SIZE_SQL = "SELECT count(*), min(event_time), max(event_time), count(error_code) FROM events"
_ERRORS_SQL = """
SELECT error_code, event_name, count(*) AS events
FROM events
WHERE error_code IS NOT NULL
GROUP BY ALL
ORDER BY events DESC, error_code, event_name
LIMIT $top
"""
_ORIGINS_SQL = """
SELECT account_id, aws_region, count(*) AS events
FROM events
GROUP BY GROUPING SETS ((account_id), (aws_region))
ORDER BY events DESC
"""


def open(db: PathLike | None = None, *, read_only: bool = False) -> Session:
    """Open the store at ``db`` and return a :class:`Session` over it.

    ``db`` is a path (created when missing, unless ``read_only``), ``":memory:"`` for a
    throw-away store, or None for the store the CLI uses (``$TRAILSCAN_DB``, else
    ``~/.local/share/trailscan/trailscan.duckdb``).  A session on disk holds no
    connection between calls: each call opens the store (read-only to read, read-write
    to ingest), runs and closes it, so ``trailscan findings`` or ``ingest`` works while a
    notebook keeps the session; a call waits (``$TRAILSCAN_LOCK_WAIT``, 10 s) for a CLI
    writer to finish, and a CLI writer for the call.  ``read_only`` sessions never write.
    """
    target = str(default_db_path() if db is None else os.fspath(db))
    if target == ":memory:":
        return Session(target, read_only=read_only, memory=Store.open(target))
    # Created and migrated once, here; then closed at once.
    Store.open(target, read_only=read_only).close()
    return Session(target, read_only=read_only)


def _required_window(since: Moment | None, until: Moment | None) -> Window:
    window = make_window(since, until)
    if window is None:
        raise UsageError("a remote ingest needs a window", "pass since, e.g. '24h' or '2026-11-27T00:00:00Z'")
    return window


def _paths(value: PathLike | Iterable[PathLike] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, os.PathLike)):
        return (os.fspath(value),)
    return tuple(os.fspath(item) for item in value)


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return tuple(value)


# --------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------


class Session:
    """A store, opened for investigation: SQL, events and findings as DataFrames, ingests,
    explanations and reports.  Made by :func:`trailscan.open`; close it when done (or use
    it as a context manager) so the CLI can write to the store again."""

    def __init__(self, path: str, *, read_only: bool = False, memory: Store | None = None) -> None:
        self._path = path
        self._read_only = read_only
        # Only a ":memory:" store is held: it lives in this process alone.
        self._memory = memory
        self._closed = False
        self._results: duckdb.DuckDBPyConnection | None = None
        self._last: Explanation | None = None

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The store's path, or ``":memory:"``."""
        return self._path

    @contextmanager
    def opened(self, *, write: bool = False) -> Iterator[Store]:
        """The store, open for one call: read-only unless ``write``, closed afterwards
        (a ``":memory:"`` store stays open), so other processes can use it between calls."""
        if self._closed:
            raise UsageError("this session is closed", "open another with trailscan.open()")
        if self._memory is not None:
            yield self._memory
            return
        if write and self._read_only:
            raise UsageError("this session is read-only", "open it with trailscan.open(path) to ingest")
        store = Store.open(self._path, read_only=not write)
        try:
            yield store
        finally:
            store.close()

    def _cursor(self, store: Store) -> duckdb.DuckDBPyConnection:
        # A cursor of its own (see the module docstring), in UTC so DataFrames are too.
        con = store.cursor()
        con.execute("SET TimeZone = 'UTC'")
        return con

    def close(self) -> None:
        """End the session (relations made by :meth:`sql` stop working)."""
        self._closed = True
        if self._results is not None:
            self._results.close()
        if self._memory is not None:
            self._memory.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def sql(self, query: str, **params: Any) -> duckdb.DuckDBPyRelation:
        """Run ``query`` over the store with named ``params`` (``$name`` in the SQL, bound by
        DuckDB, never formatted in) and return the DuckDB relation: ``.df()`` for pandas,
        ``.to_arrow_table()`` for Arrow (DuckDB 2's ``.arrow()`` is a batch reader),
        ``.show()``, or more relational operations.

        Tables: ``events``, ``coverage``, ``ingested_objects``, ``state`` (README, "The
        store").  A query runs each time its relation is read; a statement that changes
        something (``CREATE TEMP TABLE …``) runs at once.
        """
        try:
            with self.opened() as store:
                con = self._cursor(store)
                try:
                    table = con.sql(query, params=params or None).to_arrow_table()
                finally:
                    con.close()
        except duckdb.Error as exc:
            raise QueryError(str(exc).strip()) from None
        if self._results is None:
            self._results = duckdb.connect(":memory:")
            self._results.execute("SET TimeZone = 'UTC'")
        return self._results.from_arrow(table)

    def _frame(self, query: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        try:
            with self.opened() as store:
                con = self._cursor(store)
                try:
                    return con.sql(query, params=dict(params) if params else None).df()
                finally:
                    con.close()
        except duckdb.Error as exc:
            raise QueryError(str(exc).strip()) from None

    def _rows(self, query: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        # fetchall() finishes the result; fetchone() would leave it open (DuckDB 2).
        try:
            with self.opened() as store:
                con = self._cursor(store)
                try:
                    return con.execute(query, dict(params) if params else {}).fetchall()
                finally:
                    con.close()
        except duckdb.Error as exc:
            raise QueryError(str(exc).strip()) from None

    def events(
        self,
        since: Moment | None = None,
        until: Moment | None = None,
        *,
        errors_only: bool = False,
        event_name: str | Iterable[str] | None = None,
        principal: str | None = None,
        limit: int | None = None,
        raw: bool = False,
    ) -> pd.DataFrame:
        """Events of the window ``[since, until)`` as a DataFrame, latest first.

        ``since``/``until`` take ``"24h"``, ISO text or datetimes (None: everything).
        ``errors_only`` keeps the calls that failed; ``event_name`` one name or several;
        ``principal`` matches the caller by its ARN, its role's ARN (every session of the
        role), its user name (``system:serviceaccount:NS:SA``, or ``NS/SA`` for short),
        its principal id or its access key id.  ``raw=True`` adds the whole redacted
        record as JSON text.
        """
        window = make_window(since, until)
        names = _names(event_name) or None
        if principal is not None and _SA_SHORTHAND.match(principal):
            namespace, name = principal.split("/")
            principal = f"system:serviceaccount:{namespace}:{name}"
        if limit is not None and limit < 0:
            raise UsageError(f"limit {limit}: must be 0 or more")
        columns = ", ".join((*EVENT_COLUMNS, "raw") if raw else EVENT_COLUMNS)
        return self._frame(
            _EVENTS_SQL.format(columns=columns),
            {
                "since": window.start if window else None,
                "until": window.end if window else None,
                "errors_only": errors_only,
                "event_names": list(names) if names else None,
                "principal": principal,
                "limit": limit,
            },
        )

    def changes(self, since: Moment | None = None, until: Moment | None = None, *, role: str | None = None
                ) -> pd.DataFrame:
        """The successful change events of the window (``trailscan changes``), oldest first:
        who changed which role, trust or role policy, OIDC provider, Pod Identity association,
        cluster, SCP, bucket or key policy, when — with ``document``, the policy the call set
        (decoded; None when it sets none).  ``role`` keeps one role's changes, by name."""
        import pandas as pd

        from trailscan.explain.changes import change_event_rows

        with self.opened() as store:
            columns, rows = change_event_rows(store, make_window(since, until), role=role)
        frame = pd.DataFrame(rows, columns=columns)
        frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
        return frame[[*CHANGE_COLUMNS, *(c for c in frame.columns if c not in CHANGE_COLUMNS)]]

    def coverage(
        self, since: Moment | None = None, until: Moment | None = None, *, history: bool = False
    ) -> pd.DataFrame:
        """What was read, per source, account and region: every ingest that overlaps the
        window merged (what findings rest on), with its status (``complete``, ``empty`` —
        read, but no event in the window — ``partial``, ``failed``), the events the store
        holds in the window and why anything is missing.  ``history=True`` lists every
        ingest recorded instead, latest first."""
        import pandas as pd

        from trailscan.explain.coverage import window_coverage

        window = make_window(since, until)
        bounds = {"since": window.start if window else None, "until": window.end if window else None}
        if history:
            return self._frame(
                "SELECT recorded_at, source, coalesce(account, '') AS account, coalesce(region, '') AS region, "
                "status, events, skipped, coalesce(detail, '') AS detail, window_start, window_end FROM coverage "
                "WHERE ($until IS NULL OR window_start IS NULL OR window_start < CAST($until AS TIMESTAMPTZ)) "
                "AND ($since IS NULL OR window_end IS NULL OR window_end > CAST($since AS TIMESTAMPTZ)) "
                "ORDER BY recorded_at DESC",
                bounds,
            )
        with self.opened() as store:
            rows = window_coverage(store, window)
        return pd.DataFrame([row.as_json() for row in rows], columns=list(_COVERAGE_COLUMNS))

    # -- ingesting ------------------------------------------------------------------------------

    def ingest_files(self, paths: PathLike | Iterable[PathLike], *, progress: ProgressFn | None = None) -> Ingested:
        """Read every CloudTrail record under ``paths`` (files, folders recursively, globs;
        every shape of SPEC §4, gzip or not) into the store.  An unreadable file does not
        stop the rest: it is listed in the result's ``problems`` and makes the coverage
        partial."""
        return self._ingest(IngestRequest("files", paths=_paths(paths)), None, None, progress)

    def ingest_s3(
        self,
        since: Moment = "24h",
        until: Moment | None = None,
        *,
        bucket: str | None = None,
        prefix: str = "",
        org_id: str | None = None,
        accounts: str | Iterable[str] = (),
        regions: str | Iterable[str] = (),
        workers: int = 8,
        session: boto3.Session | None = None,
        progress: ProgressFn | None = None,
    ) -> Ingested:
        """Read the window's records from a trail's S3 bucket (``bucket`` a name or
        ``s3://bucket/prefix``; None: found with ``describe-trails``), listing only the day
        folders the window needs.  ``session`` is a ``boto3.Session`` (default: standard
        AWS configuration).  Objects already stored are not downloaded again."""
        request = IngestRequest("s3", bucket=bucket, prefix=prefix, org_id=org_id, accounts=_names(accounts),
                                regions=_names(regions), workers=workers)
        return self._ingest(request, _required_window(since, until), session, progress)

    def ingest_lookup(
        self,
        since: Moment = "24h",
        until: Moment | None = None,
        *,
        regions: str | Iterable[str] | None = None,
        quick: bool = False,
        session: boto3.Session | None = None,
        progress: ProgressFn | None = None,
    ) -> Ingested:
        """Read the window's management events through LookupEvents (last 90 days, 2
        requests/s per region, regions in parallel; default regions: us-east-1 and the
        session's).  ``quick`` pages only web-identity and Pod Identity calls and what
        their sessions did, and says in the coverage what it could not see.  An
        interrupted run, started again, continues where it stopped."""
        request = IngestRequest("lookup", regions=_names(regions), quick=quick)
        return self._ingest(request, _required_window(since, until), session, progress)

    def _ingest(self, request: IngestRequest, window: Window | None, session: Any, progress: ProgressFn | None) -> Ingested:
        from trailscan.pipeline import ingest_source

        with self.opened(write=True) as store:
            result, coverages = ingest_source(store, request, window=window, session=session, progress=progress)
            return self._ingested(request.chosen_source, result, coverages, store.count_events())

    def _ingested(self, source: str, result: BatchResult, coverages: Sequence[Coverage], total: int) -> Ingested:
        self._last = None
        return Ingested(
            source=source,
            files=result.files,
            records=result.records,
            new_events=result.new_events,
            digests=result.digests,
            skipped=result.skipped,
            problems=tuple(str(problem) for problem in result.problems),
            coverage=tuple(coverages),
            total_events=total,
        )

    # -- explaining -----------------------------------------------------------------------------

    def explain(
        self,
        since: Moment | None = None,
        until: Moment | None = None,
        *,
        service_accounts: PathLike | Iterable[PathLike] | None = None,
        iam: PathLike | Iterable[PathLike] | None = None,
        kube_context: str | None = None,
        clusters: str | Iterable[str] = (),
        regions: str | Iterable[str] = (),
        live_iam: bool | None = None,
        session: boto3.Session | None = None,
        all_principals: bool = False,
        policies: PathLike | Iterable[PathLike] | None = None,
    ) -> Explanation:
        """Explain the refused calls of the window (None: everything stored), as
        ``trailscan findings`` does: each failure traced to its workload, given the first
        cause of SPEC §7 that holds, and a fix.

        The inventory: ``service_accounts`` (files saved from ``kubectl get serviceaccounts
        -A -o json``) or ``kube_context`` (read live with your kubectl); ``iam`` (files
        saved from ``aws iam get-account-authorization-details``, with
        ``list-open-id-connect-providers``); ``clusters`` described live in ``regions``.
        ``live_iam`` reads the roles involved through boto3 — by default when no ``iam``
        file is given and AWS credentials are configured; ``False`` never asks AWS.
        ``policies``: the policy layers beyond the roles' own, as ``--policies
        [NAME=]FILE`` takes them (bucket, key, endpoint policies, SCPs …); read live
        for the refused calls' resources when IAM is.  Without an inventory the causes
        that need one stay ``UNEXPLAINED`` and the explanation says what was not checked.
        Callers shown to be no EKS workload (IAM users, root, AWS services, sessions they
        started: ``resolution`` ``not_eks``) are left out — a note counts them,
        ``.report.left_out`` holds them — unless ``all_principals``.
        """
        from trailscan.pipeline import InventoryRequest, investigate

        window = make_window(since, until)
        request = InventoryRequest(
            service_account_files=_paths(service_accounts),
            kube_context=kube_context,
            iam_files=_paths(iam),
            clusters=_names(clusters),
            regions=_names(regions),
            live_iam=live_iam,
            policy_files=_paths(policies),
        )
        with self.opened() as store:
            report = investigate(store, window=window, inventory=request, session=session,
                                 all_principals=all_principals)
        self._last = Explanation(self, report, window=window, generated_at=utc_now())
        return self._last

    def findings(
        self,
        since: Moment | None = None,
        until: Moment | None = None,
        *,
        service_accounts: PathLike | Iterable[PathLike] | None = None,
        iam: PathLike | Iterable[PathLike] | None = None,
        kube_context: str | None = None,
        clusters: str | Iterable[str] = (),
        regions: str | Iterable[str] = (),
        live_iam: bool | None = None,
        session: boto3.Session | None = None,
        all_principals: bool = False,
    ) -> pd.DataFrame:
        """:meth:`explain`, flattened: one row per finding (see :meth:`Explanation.to_frame`)."""
        return self.explain(
            since,
            until,
            service_accounts=service_accounts,
            iam=iam,
            kube_context=kube_context,
            clusters=clusters,
            regions=regions,
            live_iam=live_iam,
            session=session,
            all_principals=all_principals,
        ).to_frame()

    # -- reporting ------------------------------------------------------------------------------

    def report(
        self,
        to: str | os.PathLike[str],
        findings: Explanation | None = None,
        *,
        since: Moment | None = None,
        until: Moment | None = None,
        session: boto3.Session | None = None,
        now: datetime | None = None,
        kms_key: str | None = None,
        file_mode: int = 0o600,
        all_principals: bool = False,
    ) -> ReportLocation:
        """Publish the report of ``findings`` (default: the last :meth:`explain` of this
        session, else the window ``[since, until)`` explained from CloudTrail alone, with
        ``all_principals`` as :meth:`explain` takes it) to ``to``: a local folder (files
        ``file_mode``) or ``s3://BUCKET/PREFIX/`` (SSE-KMS with ``kms_key``).  Writes a dated folder holding
        ``report.html``, ``report.md``, ``findings.json`` and ``events.parquet``, plus a
        ``latest/`` copy; returns where (``.html`` is the page's path or URL)."""
        from trailscan.report import publish_findings

        if findings is None:
            if since is None and until is None and self._last is not None:
                findings = self._last
            else:
                findings = self.explain(since, until, live_iam=False, all_principals=all_principals)
        with self.opened() as store:
            return publish_findings(
                store, findings.report, window=findings.window, destination=os.fspath(to), session=session, now=now,
                kms_key=kms_key, file_mode=file_mode,
            )

    # -- summaries ------------------------------------------------------------------------------

    def summary(self) -> StoreSummary:
        """The store at a glance, from cheap aggregates only (what the notebook displays):
        size, time span, accounts and regions, the latest coverage, the failed calls by
        error code, and the findings by cause of this session's last :meth:`explain`.
        Explaining reads the failed events' JSON, so a summary never does it itself."""
        from trailscan.explain.coverage import window_coverage

        ((total, first, last, failed),) = self._rows(_SIZE_SQL)
        accounts: list[tuple[str, int]] = []
        regions: list[tuple[str, int]] = []
        errors: list[tuple[str, str, int]] = []
        if total:
            for account, region, count in self._rows(_ORIGINS_SQL):
                if region is None:
                    accounts.append((account or "(none)", count))
                else:
                    regions.append((region, count))
        if failed:
            errors = [(code, name or "", count) for code, name, count in self._rows(_ERRORS_SQL, {"top": _SHOWN})]
        with self.opened() as store:
            coverage = window_coverage(store, None)
        return StoreSummary(
            path=self.path,
            events=int(total),
            failed=int(failed),
            first=first,
            last=last,
            accounts=tuple(accounts),
            regions=tuple(regions),
            coverage=tuple(coverage),
            errors=tuple(errors),
            explanation=self._last,
        )

    def __repr__(self) -> str:
        (total, first, last, failed), = self._rows(_SIZE_SQL)
        span = f", {_when(first)} – {_when(last)}" if first is not None else ""
        return f"<trailscan.Session {self.path}: {total:,} events{span}, {failed:,} failed>"

    def _repr_html_(self) -> str:
        return self.summary().html()


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingested:
    """What one ingest did: inputs read (``files``: files, S3 objects or LookupEvents
    pages), records seen, new events stored, unreadable inputs, and the coverage recorded."""

    source: str
    files: int
    records: int
    new_events: int
    digests: int = 0
    skipped: int = 0
    problems: tuple[str, ...] = ()
    coverage: tuple[Coverage, ...] = ()
    total_events: int = 0

    @property
    def complete(self) -> bool:
        """Every input read and every coverage row complete."""
        return not self.problems and all(c.status == "complete" for c in self.coverage)

    def _line(self) -> str:
        noun = {"files": "files", "s3": "objects", "lookup": "pages"}.get(self.source, "inputs")
        text = (
            f"{self.source}: read {self.records:,} records from {self.files:,} {noun}: "
            f"{self.new_events:,} new events stored ({self.total_events:,} in the store)"
        )
        if self.digests:
            text += f"; {self.digests} digest files skipped"
        if self.skipped:
            text += f"; {self.skipped} JSON values that are not CloudTrail records skipped"
        if self.problems:
            text += f"; {len(self.problems)} could not be read"
        return text

    def __repr__(self) -> str:
        lines = [self._line(), *(f"  unreadable: {problem}" for problem in self.problems)]
        lines += [f"  coverage: {_coverage_text(c)}" for c in self.coverage if c.status != "complete"]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [f"<p>{_e(self._line())}</p>"]
        if self.problems:
            items = "".join(f"<li>{_e(problem)}</li>" for problem in self.problems)
            parts.append(f"<p><b>Could not be read</b> (the rest is stored):</p><ul>{items}</ul>")
        parts.append(
            _table(
                ("Source", "Account", "Region", "Status", "Events", "Detail"),
                [(c.source, c.account, c.region, _status(c.status), f"{c.events:,}", c.detail) for c in self.coverage],
                raw_columns={3},
            )
        )
        return _box("".join(parts))


@dataclass(frozen=True)
class StoreSummary:
    """The store at a glance: what :meth:`Session.summary` returns and the notebook shows."""

    path: str
    events: int
    failed: int
    first: datetime | None
    last: datetime | None
    accounts: tuple[tuple[str, int], ...]
    regions: tuple[tuple[str, int], ...]
    coverage: tuple[CoverageRow, ...]
    errors: tuple[tuple[str, str, int], ...] = ()
    explanation: Explanation | None = None

    def html(self) -> str:
        parts = [f"<h4 style='margin:0 0 .4em 0'>trailscan store <code>{_e(self.path)}</code></h4>"]
        if not self.events:
            parts.append("<p>No events yet: <code>ingest_files(…)</code>, <code>ingest_s3(…)</code> or "
                         "<code>ingest_lookup(…)</code>.</p>")
        else:
            span = self.last - self.first if self.first and self.last else None
            rows = [
                ("Events", f"{self.events:,} ({self.failed:,} failed calls)"),
                ("Time span", f"{_when(self.first)} – {_when(self.last)}" + (f" ({_span(span)})" if span else "")),
                (f"Accounts ({len(self.accounts)})", _top(self.accounts)),
                (f"Regions ({len(self.regions)})", _top(self.regions)),
            ]
            parts.append(_table(("", ""), rows, header=False))
        parts.append("<p style='margin:.6em 0 .2em 0'><b>Coverage</b> (every ingest merged per source, account and region)</p>")
        if self.coverage:
            parts.append(
                _table(
                    ("Source", "Account", "Region", "Status", "Events", "Detail"),
                    [(c.source, c.account, c.region, _status(c.status), f"{c.events:,}", c.detail) for c in self.coverage],
                    raw_columns={3},
                )
            )
        else:
            parts.append("<p>Nothing ingested yet: no result can be trusted as complete.</p>")
        if self.explanation is not None:
            parts.append(self.explanation._causes_html())
        elif self.errors:
            parts.append(
                "<p style='margin:.6em 0 .2em 0'><b>Failed calls</b> (most frequent; "
                "<code>explain()</code> finds the refused ones, their workloads and causes)</p>"
            )
            parts.append(
                _table(("Error code", "Event", "Events"), [(code, name, f"{n:,}") for code, name, n in self.errors])
            )
        return _box("".join(parts))


@dataclass
class Explanation:
    """Findings of a window, with the coverage they rest on: what :meth:`Session.explain`
    returns.  ``report`` is the :class:`~trailscan.findings.FindingsReport`;
    :meth:`document` is the SPEC §7 ``trailscan.findings/v1`` JSON document."""

    session: Session = field(repr=False)
    report: FindingsReport
    window: Window | None = None
    generated_at: datetime = field(default_factory=utc_now)

    @property
    def findings(self) -> list[Finding]:
        return self.report.findings

    @property
    def complete(self) -> bool:
        """Whether every source/account/region of the window was read completely."""
        return self.report.complete

    def __len__(self) -> int:
        return len(self.report.findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.report.findings)

    def __getitem__(self, index: int) -> Finding:
        return self.report.findings[index]

    def document(self, generated_at: datetime | None = None) -> dict[str, Any]:
        """The SPEC §7 findings document (what ``--format json`` prints)."""
        return findings_document(self.report, generated_at or self.generated_at)

    def to_frame(self) -> pd.DataFrame:
        """One row per finding: the SPEC §7 fields flattened (``cluster``, ``namespace``,
        ``service_account``, ``resolution`` from the workload; times as UTC timestamps),
        then ``workload`` (a label), ``action``, and the rest of the finding."""
        import pandas as pd

        rows = [
            {
                "kind": f.kind,
                "cause": f.cause,
                "cluster": f.workload.cluster,
                "namespace": f.workload.namespace,
                "service_account": f.workload.service_account,
                "resolution": f.workload.resolution,
                "role_arn": f.role_arn,
                "event_name": f.event_name,
                "error_code": f.error_code,
                "count": f.count,
                "first_seen": f.first_seen,
                "last_seen": f.last_seen,
                "explanation": f.explanation,
                "fix": f.fix,
                "workload": workload_label(f),
                "action": f.action,
                "event_source": f.event_source,
                "principal_arn": f.principal_arn,
                "error_message": f.error_message,
                "account": f.account,
                "regions": list(f.regions),
                "candidates": [str(c) for c in f.workload.candidates],
                "sample_event_ids": list(f.sample_event_ids),
                "status": f.status,
                "policy_as_of": f.policy_as_of,
                "decisive_change": f.decisive_change,
            }
            for f in self.report.findings
        ]
        frame = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
        frame["count"] = frame["count"].astype("int64")
        for column in ("first_seen", "last_seen", "policy_as_of"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    df = to_frame

    def coverage(self) -> pd.DataFrame:
        """The coverage these findings rest on (one row per source, account, region)."""
        import pandas as pd

        return pd.DataFrame(
            [row.as_json() for row in self.report.coverage],
            columns=["source", "account", "region", "status", "events", "detail"],
        )

    def events(self, which: int | Finding, *, raw: bool = False) -> pd.DataFrame:
        """Every event behind one finding (its index, or the :class:`Finding`), latest first."""
        finding = self.report.findings[which] if isinstance(which, int) else which
        columns = ", ".join((*EVENT_COLUMNS, "raw") if raw else EVENT_COLUMNS)
        return self.session._frame(
            f"SELECT {columns} FROM events WHERE event_id IN (SELECT unnest(CAST($ids AS VARCHAR[]))) "
            "ORDER BY event_time DESC, event_id",
            {"ids": list(finding.event_ids or finding.sample_event_ids)},
        )

    def changes(self, which: int | Finding) -> pd.DataFrame:
        """The recorded changes to what decides one finding (its index, or the
        :class:`Finding`), oldest first: what its failures began or stopped after."""
        import pandas as pd

        finding = self.report.findings[which] if isinstance(which, int) else which
        frame = pd.DataFrame([c.as_json() for c in finding.changes], columns=list(CHANGE_COLUMNS))
        frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
        return frame

    def timeline(self) -> pd.DataFrame:
        """One row per failed event of every finding: ``event_time``, the finding's index,
        ``workload`` label, ``kind`` and ``cause``, and the event's name, error and region —
        ready for ``groupby``/``resample`` and a plot of failures per workload."""
        import pandas as pd

        findings = self.report.findings
        pairs = [(index, event_id) for index, f in enumerate(findings) for event_id in (f.event_ids or f.sample_event_ids)]
        frame = self.session._frame(
            "SELECT f.finding, e.event_time, e.event_id, e.event_name, e.error_code, e.aws_region "
            "FROM (SELECT unnest(CAST($findings AS BIGINT[])) AS finding, unnest(CAST($ids AS VARCHAR[])) AS event_id) f "
            "JOIN events e USING (event_id) ORDER BY e.event_time, f.finding",
            {"findings": [p[0] for p in pairs], "ids": [p[1] for p in pairs]},
        )
        labels = pd.Series([workload_label(f) for f in findings], dtype="object")
        frame.insert(2, "workload", frame["finding"].map(labels))
        frame.insert(3, "kind", frame["finding"].map(pd.Series([f.kind for f in findings], dtype="object")))
        frame.insert(4, "cause", frame["finding"].map(pd.Series([f.cause for f in findings], dtype="object")))
        return frame

    # -- display ----------------------------------------------------------------------------------

    def _title(self) -> str:
        report = self.report
        window = f"{_when(report.window_start)} – {_when(report.window_end)}" if report.window_start else "everything stored"
        count = len(report.findings)
        return (
            f"{count} finding{'s' if count != 1 else ''} over {report.failed_events:,} failed "
            f"event{'s' if report.failed_events != 1 else ''}; window {window}"
        )

    def __repr__(self) -> str:
        lines = [self._title()]
        for f in self.report.findings:
            lines.append(f"  {f.cause:<26} {workload_label(f):<40} {f.action} ×{f.count}")
        incomplete = [row for row in self.report.coverage if row.status not in READ_STATUSES]
        if not self.report.coverage:
            lines.append("  coverage: nothing was ingested for this window")
        elif not self.report.window_events:
            lines.append(f"  {_no_events(self.report)}: nothing read can show a refused call, or its absence")
        for row in incomplete:
            lines.append(f"  coverage: {_coverage_text(row)}")
        lines += [f"  note: {note}" for note in self.report.notes]
        return "\n".join(lines)

    def _causes_html(self) -> str:
        counts = Counter(f.cause for f in self.report.findings)
        events: Counter[str] = Counter()
        for f in self.report.findings:
            events[f.cause] += f.count
        window = (
            f"{_when(self.window.start)} – {_when(self.window.end)}" if self.window else "everything stored"
        )
        head = (
            f"<p style='margin:.6em 0 .2em 0'><b>Findings by cause</b> (last <code>explain()</code>: "
            f"{_e(window)})</p>"
        )
        if not counts:
            if not self.report.window_events:
                return head + f"<p>{_e(_no_events(self.report))}: nothing read can show a refused call, or its absence.</p>"
            return head + "<p>No refused calls in the events read.</p>"
        rows = [(_badge(cause), str(n), f"{events[cause]:,}") for cause, n in counts.most_common()]
        return head + _table(("Cause", "Findings", "Failed events"), rows, raw_columns={0})

    def _repr_html_(self) -> str:
        report = self.report
        parts = [f"<p><b>{_e(self._title())}</b></p>"]
        if report.findings:
            rows = [
                (
                    str(index),
                    f.workload.cluster or "",
                    workload_label(f),
                    f"{f.action} ({f.error_code})" if f.error_code else f.action,
                    _badge(f.cause),
                    f"{f.count:,}",
                    _when(f.last_seen),
                    f.fix_summary,
                )
                for index, f in enumerate(report.findings)
            ]
            parts.append(
                _table(("#", "Cluster", "Workload", "What failed", "Cause", "Count", "Last seen", "Fix"), rows, raw_columns={4})
            )
            parts.append("<p style='color:#555'><code>.to_frame()</code> has each explanation and full fix; "
                         "<code>.events(i)</code> the events behind finding <i>i</i>.</p>")
        elif report.coverage and not report.window_events:
            parts.append(f"<p>{_e(_no_events(report))}: nothing read can show a refused call, or its absence.</p>")
        else:
            parts.append("<p>No refused calls in the events read.</p>")
        parts.append("<p style='margin:.6em 0 .2em 0'><b>Coverage</b></p>")
        if report.coverage:
            parts.append(
                _table(
                    ("Source", "Account", "Region", "Status", "Events", "Detail"),
                    [(c.source, c.account, c.region, _status(c.status), f"{c.events:,}", c.detail) for c in report.coverage],
                    raw_columns={3},
                )
            )
        else:
            parts.append("<p>" + _status("failed") + " nothing was ingested for this window: "
                         "no findings here means nothing was read, not nothing wrong.</p>")
        if report.notes or report.problems:
            items = "".join(f"<li>{_e(text)}</li>" for text in (*report.notes, *report.problems))
            parts.append(f"<ul style='color:#555'>{items}</ul>")
        return _box("".join(parts))


def workload_label(finding: Finding) -> str:
    """A short name for a finding's workload: ``cluster/namespace/service-account`` when
    known; else the node's role, the candidate service accounts, or the caller."""
    workload = finding.workload
    if workload.namespace and workload.service_account:
        label = f"{workload.namespace}/{workload.service_account}"
        return f"{workload.cluster}/{label}" if workload.cluster else label
    principal = principal_name(finding.role_arn or finding.principal_arn)
    if workload.resolution == "node":
        label = f"node role {principal.removeprefix('role ')}" if principal else "node role"
    elif workload.candidates:
        label = "one of " + ", ".join(str(c) for c in workload.candidates)
    else:
        label = principal or "unknown workload"
    return f"{workload.cluster}: {label}" if workload.cluster else label


# --------------------------------------------------------------------------------------
# HTML helpers: every value escaped (CloudTrail strings are attacker-controlled)
# --------------------------------------------------------------------------------------

_STATUS_COLOURS = {"complete": "#067647", "empty": "#5f6b7a", "partial": "#b54708", "failed": "#b42318"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _box(body: str) -> str:
    return f"<div class='trailscan' style='font-size:90%;line-height:1.35'>{body}</div>"


def _status(status: str) -> str:
    colour = _STATUS_COLOURS.get(status, "#555")
    return f"<b style='color:{colour}'>{_e(status)}</b>"


def _badge(cause: str) -> str:
    return f"<code style='color:#b42318'>{_e(cause)}</code>"


def _table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    raw_columns: AbstractSet[int] = frozenset(),
    header: bool = True,
) -> str:
    """An HTML table; cells are escaped except ``raw_columns`` (built here from escaped parts)."""
    head = "<tr>" + "".join(f"<th style='text-align:left'>{_e(h)}</th>" for h in headers) + "</tr>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(
            f"<td style='text-align:left;vertical-align:top'>{cell if i in raw_columns else _e(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>{head}{body}</table>"


def _top(items: Sequence[tuple[str, int]]) -> str:
    shown = ", ".join(f"{name} ({count:,})" for name, count in items[:_SHOWN])
    return shown + (f", and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(span: timedelta) -> str:
    seconds = span.total_seconds()
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} seconds"


def _no_events(report: FindingsReport) -> str:
    if report.window_start is None or report.window_end is None:
        return "No CloudTrail events in the store"
    return f"No CloudTrail events in the window {_when(report.window_start)} – {_when(report.window_end)}"


def _coverage_text(row: Coverage | CoverageRow) -> str:
    where = " ".join(filter(None, (row.source, row.account, row.region)))
    return f"{where}: {row.status}, {row.events:,} events" + (f" ({row.detail})" if row.detail else "")
