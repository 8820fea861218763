"""``--engine athena``: the window's detections pushed down to Athena, the findings made here.

The plan, for a window and a CloudTrail table (:mod:`.table`):

1. One query per account and region the table holds (narrowed by ``--accounts`` and
   ``--regions``), so that each coverage row says exactly what Athena scanned for it:
   the delivery days of the window with the delivery-lag margin (partitions), the
   window's events (``eventtime``), and of those only the records a detection selects
   (:func:`~trailscan.athena.sql.detections`: every query of ``queries/`` shaped like
   one), with the count of all of them.
2. The records come back into the store (``origin`` ``athena://DB.TABLE/QUERY_ID``), where
   they are redacted and deduplicated as any ingest's.
3. The sessions behind the access keys those failures used (``minted_sessions``, from up to
   12 hours before the window, as the explainer reads them) are fetched by a second round
   of queries, in the accounts the keys belong to and the regions they were used in (and
   us-east-1, where the global STS endpoint records).

A query that fails, is cancelled, or cannot be started makes its account and region
``failed``; a failed second round makes them ``partial``.  Never "no findings".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

from trailscan.athena.client import DEFAULT_CONCURRENCY, SUCCEEDED, Job, Outcome, Runner
from trailscan.athena.records import read_rows
from trailscan.athena.sql import Scope, detections, pushdown_sql
from trailscan.athena.table import AthenaTable, check_account, check_region, parse_table_name
from trailscan.errors import SourceError, UsageError
from trailscan.explain.collect import MINT_LOOKBACK
from trailscan.model import COMPLETE, FAILED, PARTIAL, BatchResult, Coverage, ProgressFn, Window
from trailscan.queries import QueryBook, load_queries
from trailscan.store import Store

__all__ = ["AthenaRequest", "PRICE_PER_TB", "SOURCE", "describe_table", "ingest_athena", "run_plan", "scan_cost"]

SOURCE = "athena"
#: Athena's published price for SQL queries: $5.00 per TB scanned, each query billed at
#: least 10 MB, rounded up to the megabyte (aws.amazon.com/athena/pricing).
PRICE_PER_TB = 5.00
MINIMUM_BILLED = 10 * 1024 * 1024
#: Where STS's global endpoint records (old SDKs' default).
GLOBAL_REGION = "us-east-1"
#: The query whose rows attribute a failure's access key to the session it came from.
SESSIONS_QUERY = "minted_sessions"
#: Records per store transaction.
RECORDS_PER_BATCH = 5000
_ACCESS_KEY = re.compile(r"^[A-Z0-9]{16,128}$")


@dataclass(frozen=True)
class AthenaRequest:
    """How to reach Athena: the CloudTrail table (``DB.TABLE``), the workgroup, where results
    go (``output``; default: the workgroup's), and the accounts and regions to read
    (default: every one the table holds)."""

    table: str
    workgroup: str = "primary"
    output: str | None = None
    accounts: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY


def scan_cost(scanned_bytes: int) -> float:
    """What a query costs at :data:`PRICE_PER_TB` (billed by the megabyte, 10 MB at least)."""
    billed = max(-(-scanned_bytes // (1024 * 1024)) * 1024 * 1024, MINIMUM_BILLED)
    return billed / 1024**4 * PRICE_PER_TB


def describe_table(session: Any, name: str) -> AthenaTable:
    """The CloudTrail table ``DB.TABLE`` as Glue describes it (``glue:GetTable``)."""
    from botocore.exceptions import BotoCoreError, ClientError

    database, table = parse_table_name(name)
    try:
        found = session.client("glue").get_table(DatabaseName=database, Name=table)["Table"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "EntityNotFoundException":
            raise SourceError(f"no table {database}.{table} in the Glue catalog",
                              "create it with `trailscan athena setup`") from None
        raise SourceError(f"cannot read the table {database}.{table}: {exc}") from None
    except BotoCoreError as exc:
        raise SourceError(f"cannot reach Glue: {exc}") from None
    return AthenaTable.from_glue(database, found)


def ingest_athena(
    store: Store,
    request: AthenaRequest,
    *,
    window: Window | None,
    session: Any,
    progress: ProgressFn | None = None,
) -> tuple[BatchResult, list[Coverage]]:
    """Push the window's detections down to Athena and store what comes back (see the
    module's docstring); returns what was stored and the coverage, also recorded."""
    from trailscan.athena.client import AthenaRunner

    if window is None:
        raise UsageError("the Athena engine needs a time window", "pass --since, e.g. 24h")
    table = describe_table(session, request.table)
    runner = AthenaRunner(session, workgroup=request.workgroup, output=request.output, database=table.database,
                          concurrency=request.concurrency)
    runner.check()
    return run_plan(store, table, runner, window=window, accounts=request.accounts, regions=request.regions,
                    progress=progress)


@dataclass
class _Unit:
    account: str
    region: str
    coverage: Coverage


def run_plan(
    store: Store,
    table: AthenaTable,
    runner: Runner,
    *,
    window: Window,
    accounts: Sequence[str] = (),
    regions: Sequence[str] = (),
    book: QueryBook | None = None,
    progress: ProgressFn | None = None,
) -> tuple[BatchResult, list[Coverage]]:
    """The engine without AWS: plan the queries for *table*, run them with *runner*, store
    the records and the coverage.  (Tests run it with DuckDB standing in for Athena.)"""
    from trailscan.sources.s3 import DELIVERY_LAG, delivery_days

    book = book or load_queries()
    units, refused = _units(table, window, accounts, regions)
    total = BatchResult()
    days = tuple(delivery_days(window, DELIVERY_LAG))
    selections = [(query, {"since": window.start, "until": window.end}) for query in detections(book)]
    jobs = [
        Job(unit, pushdown_sql(table, Scope(days, window, (unit.account,), (unit.region,)), selections).sql)
        for unit in units
    ]
    leaves = pushdown_sql(table, Scope(days, window), selections).leaves
    origins: list[str] = []
    finished: set[int] = set()
    try:
        with closing(runner.run(jobs, progress)) as outcomes:
            for outcome in outcomes:
                unit: _Unit = outcome.job.key
                finished.add(id(unit))
                origin, events = _store(store, table, outcome, leaves, total)
                unit.coverage = _covered(unit.coverage, outcome, events)
                if origin:
                    origins.append(origin)
        if SESSIONS_QUERY in book.queries and origins:
            _sessions(store, table, runner, book, window, units, origins, total, progress)
    except BaseException:
        # Interrupted: what did not finish is failed, never "no findings".
        for unit in units:
            if id(unit) not in finished:
                unit.coverage = replace(unit.coverage, status=FAILED, detail="cancelled: the run was interrupted")
        _record(store, [u.coverage for u in units] + refused)
        raise
    coverages = [u.coverage for u in units] + refused
    _record(store, coverages)
    return total, coverages


def _units(table: AthenaTable, window: Window, accounts: Sequence[str], regions: Sequence[str]) -> tuple[list[_Unit], list[Coverage]]:
    """One unit per account and region: those the table holds (its projection's values),
    narrowed to the ones asked for; one asked for that the table lacks is ``failed``."""
    where = f"{table.database}.{table.name}"
    for account in accounts:
        check_account(account)
    for region in regions:
        check_region(region)

    def chosen(known: tuple[str, ...], asked: Sequence[str], what: str, option: str) -> tuple[list[str], list[str]]:
        if not known and not asked:
            raise UsageError(f"{where} does not list its {what} (no enum projection)", f"pass {option}")
        if not asked:
            return list(known), []
        if not known:
            return list(asked), []
        return [v for v in asked if v in known], [v for v in asked if v not in known]

    account_list, missing_accounts = chosen(table.accounts, accounts, "accounts", "--accounts")
    region_list, missing_regions = chosen(table.regions, regions, "regions", "--regions")
    hint = "run `trailscan athena setup` again to add it to the table's projection"
    refused = [Coverage(SOURCE, a, r, window.start, window.end, status=FAILED,
                        detail=f"not in {where}'s projection; {hint}")
               for a in missing_accounts for r in (region_list or list(regions) or [""])]
    refused += [Coverage(SOURCE, a, r, window.start, window.end, status=FAILED,
                         detail=f"not in {where}'s projection; {hint}")
                for r in missing_regions for a in account_list]
    units = [_Unit(a, r, Coverage(SOURCE, a, r, window.start, window.end, status=FAILED, detail="not run"))
             for a in account_list for r in region_list]
    return units, refused


def _store(store: Store, table: AthenaTable, outcome: Outcome, leaves, total: BatchResult) -> tuple[str | None, int]:
    """Store a finished query's records: their origin (None when it did not succeed) and
    the count of the window's events the query saw."""
    if outcome.state != SUCCEEDED:
        return None, 0
    result = read_rows(leaves, outcome.columns, outcome.rows)
    origin = f"athena://{table.database}.{table.name}/{outcome.query_id or 'query'}"
    for start in range(0, len(result.records), RECORDS_PER_BATCH):
        batch = result.records[start : start + RECORDS_PER_BATCH]
        total.add(store.ingest_documents([json.dumps({"Records": batch})], origin=origin, names=[origin]))
    return origin, result.events


def _scanned(outcome: Outcome) -> str:
    return (f"{_size(outcome.scanned_bytes)} scanned in {outcome.seconds:.1f} s, "
            f"${scan_cost(outcome.scanned_bytes):.4f} at ${PRICE_PER_TB:.2f}/TB")


def _covered(coverage: Coverage, outcome: Outcome, events: int) -> Coverage:
    query = f"query {outcome.query_id}" if outcome.query_id else "query"
    if outcome.state != SUCCEEDED:
        what = "cancelled" if outcome.state == "CANCELLED" else "failed"
        detail = f"Athena {query} {what}: {outcome.reason}"
        if outcome.query_id:
            detail += f" ({_scanned(outcome)})"
        return replace(coverage, status=FAILED, events=0, detail=detail)
    return replace(coverage, status=COMPLETE, events=events, detail=f"Athena {query}: {_scanned(outcome)}")


def _sessions(store, table, runner, book, window, units, origins, total, progress) -> None:
    """The second round: the sessions behind the failures' access keys."""
    from trailscan.sources.s3 import DELIVERY_LAG, delivery_days

    _, rows = store.query(
        "SELECT DISTINCT access_key_id, coalesce(json_extract_string(raw, '$.userIdentity.accountId'), account_id), "
        "aws_region FROM events WHERE origin IN (SELECT unnest($origins)) AND access_key_id IS NOT NULL",
        {"origins": origins},
    )
    keys = sorted({key for key, _, _ in rows if _ACCESS_KEY.match(key or "")})
    if not keys:
        return
    wanted_accounts = {account for key, account, _ in rows if key in keys and account}
    wanted_regions = {region for key, _, region in rows if key in keys and region} | {GLOBAL_REGION}
    chosen = [u for u in units if u.account in wanted_accounts and u.region in wanted_regions and u.coverage.status == COMPLETE]
    if not chosen:
        return
    earlier = Window(window.start - MINT_LOOKBACK, window.end)
    days = tuple(delivery_days(earlier, DELIVERY_LAG))
    selections = [(book[SESSIONS_QUERY], {"since": earlier.start, "until": earlier.end, "access_keys": keys})]
    jobs = [Job(u, pushdown_sql(table, Scope(days, earlier, (u.account,), (u.region,)), selections).sql) for u in chosen]
    leaves = pushdown_sql(table, Scope(days, earlier), selections).leaves
    with closing(runner.run(jobs, progress)) as outcomes:
        for outcome in outcomes:
            unit: _Unit = outcome.job.key
            _store(store, table, outcome, leaves, total)
            coverage = unit.coverage
            if outcome.state == SUCCEEDED:
                detail = f"{coverage.detail}; sessions of {len(keys)} access keys: {_scanned(outcome)}"
                unit.coverage = replace(coverage, detail=detail)
            else:
                detail = (f"{coverage.detail}; the sessions behind {len(keys)} access keys could not be read "
                          f"(Athena query {outcome.query_id or ''} {outcome.state.lower()}: {outcome.reason})")
                unit.coverage = replace(coverage, status=PARTIAL, detail=detail)


def _record(store: Store, coverages: Sequence[Coverage]) -> None:
    for coverage in coverages:
        store.record_coverage(coverage)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"

