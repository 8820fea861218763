"""Running SQL on Athena: start, poll with backoff, page through results, cancel.

:class:`AthenaRunner` keeps at most ``concurrency`` queries running (Athena's quota of
active queries is per account and region; a start refused with
``TooManyRequestsException`` waits and is tried again), polls each with
``GetQueryExecution`` at a delay that doubles from a quarter of a second to five seconds,
and reads a finished query's rows with ``GetQueryResults``, a page of up to 1,000 rows at
a time.  Outcomes are yielded as queries finish.  When the caller stops early — Ctrl-C
while waiting, an error while storing an outcome, or the generator closed — every query
still queued or running is stopped with ``StopQueryExecution`` before it goes on.

A query that fails or is cancelled is an :class:`Outcome` with its reason, never an
exception and never an empty result: the engine makes the coverage of what it covered
``failed``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from trailscan.errors import SourceError, UsageError
from trailscan.model import ProgressFn

__all__ = ["AthenaRunner", "Job", "Outcome", "Runner", "SUCCEEDED"]

SUCCEEDED, FAILED, CANCELLED = "SUCCEEDED", "FAILED", "CANCELLED"
#: Active queries at once, under Athena's quota of active DML queries (queued ones count; it
#: varies by Region and AWS's own example is 25); a start beyond it is refused and retried.
DEFAULT_CONCURRENCY = 20
FIRST_POLL, LAST_POLL = 0.25, 5.0
#: Rows a GetQueryResults page holds at most.
PAGE_ROWS = 1000


@dataclass(frozen=True)
class Job:
    """One query to run; ``key`` is the caller's handle on it."""

    key: Any
    sql: str


@dataclass
class Outcome:
    """How a job ended: ``state`` SUCCEEDED (``columns`` and ``rows``, every value text or
    None), FAILED or CANCELLED (``reason``); what Athena scanned and how long it took."""

    job: Job
    state: str
    reason: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    scanned_bytes: int = 0
    seconds: float = 0.0
    query_id: str = ""


class Runner(Protocol):
    """What the engine runs SQL with: Athena (:class:`AthenaRunner`), or in tests DuckDB."""

    def run(self, jobs: Sequence[Job], progress: ProgressFn | None = None) -> Iterator[Outcome]: ...


@dataclass
class _Running:
    job: Job
    query_id: str
    started: float
    next_poll: float
    delay: float


class AthenaRunner:
    """Athena in one workgroup, results written to ``output`` (default: the workgroup's)."""

    def __init__(
        self,
        session: Any,
        *,
        workgroup: str = "primary",
        output: str | None = None,
        database: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        polls: tuple[float, float] = (FIRST_POLL, LAST_POLL),
        page_rows: int = PAGE_ROWS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from botocore.config import Config

        if concurrency < 1:
            raise UsageError("Athena concurrency must be at least 1")
        if output is not None and not output.startswith("s3://"):
            raise UsageError(f"--output {output!r}: expected s3://BUCKET/PREFIX/")
        self.client = session.client("athena", config=Config(retries={"mode": "standard", "max_attempts": 8}))
        self.workgroup = workgroup
        self.output = output
        self.database = database
        self.concurrency = concurrency
        self.first_poll, self.last_poll = polls
        self.page_rows = page_rows
        self.sleep = sleep
        self.clock = clock

    def check(self) -> None:
        """Fail early, in one line, when the workgroup is missing or disabled, or when no
        result location is set (neither ``--output`` nor the workgroup's)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            group = self.client.get_work_group(WorkGroup=self.workgroup).get("WorkGroup")
        except ClientError as exc:
            raise SourceError(f"Athena workgroup {self.workgroup}: {_aws_error(exc)}", "pass --workgroup") from None
        except BotoCoreError as exc:
            raise SourceError(f"cannot reach Athena: {exc}") from None
        if not group:
            raise SourceError(f"Athena workgroup {self.workgroup} not found", "pass --workgroup")
        if group.get("State", "ENABLED") != "ENABLED":
            raise SourceError(f"Athena workgroup {self.workgroup} is disabled")
        configuration = group.get("Configuration") or {}
        location = (configuration.get("ResultConfiguration") or {}).get("OutputLocation")
        if not self.output and not location:
            raise UsageError(f"Athena workgroup {self.workgroup} has no query result location",
                             "pass --output s3://BUCKET/PREFIX/")

    def _start(self, job: Job) -> str:
        arguments: dict[str, Any] = {"QueryString": job.sql, "WorkGroup": self.workgroup}
        if self.output:
            arguments["ResultConfiguration"] = {"OutputLocation": self.output}
        if self.database:
            arguments["QueryExecutionContext"] = {"Database": self.database}
        return self.client.start_query_execution(**arguments)["QueryExecutionId"]

    def _results(self, query_id: str) -> tuple[list[str], list[list[str | None]]]:
        columns: list[str] = []
        rows: list[list[str | None]] = []
        token = None
        first = True
        while True:
            arguments: dict[str, Any] = {"QueryExecutionId": query_id, "MaxResults": self.page_rows}
            if token:
                arguments["NextToken"] = token
            page = self.client.get_query_results(**arguments)
            result = page.get("ResultSet", {})
            if first:
                columns = [c.get("Name", "") for c in result.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
            values = [[datum.get("VarCharValue") for datum in row.get("Data", [])] for row in result.get("Rows", [])]
            # A SELECT's first row is its header.
            if first and values and columns and values[0] == columns:
                values = values[1:]
            rows.extend(values)
            first = False
            token = page.get("NextToken")
            if not token:
                return columns, rows

    def run(self, jobs: Sequence[Job], progress: ProgressFn | None = None) -> Iterator[Outcome]:
        """Run *jobs*, yielding each :class:`Outcome` as its query ends."""
        from botocore.exceptions import BotoCoreError, ClientError

        pending = deque(jobs)
        running: dict[str, _Running] = {}
        hold_until, hold = 0.0, self.first_poll
        done, total = 0, len(pending)
        try:
            while pending or running:
                now = self.clock()
                while pending and len(running) < self.concurrency and now >= hold_until:
                    job = pending[0]
                    try:
                        query_id = self._start(job)
                    except ClientError as exc:
                        if _error_code(exc) in ("TooManyRequestsException", "ThrottlingException"):
                            # Over the quota of active queries: wait for one to end, or a while.
                            hold_until, hold = now + hold, min(hold * 2, self.last_poll)
                            break
                        pending.popleft()
                        done += 1
                        yield Outcome(job, FAILED, f"could not start: {_aws_error(exc)}")
                        continue
                    except BotoCoreError as exc:
                        pending.popleft()
                        done += 1
                        yield Outcome(job, FAILED, f"could not start: {exc}")
                        continue
                    pending.popleft()
                    hold = self.first_poll
                    running[query_id] = _Running(job, query_id, now, now + self.first_poll, self.first_poll)
                if progress:
                    progress("Athena queries", done, total)
                if not running:
                    if pending:
                        self.sleep(max(0.0, hold_until - self.clock()))
                    continue
                due = min(r.next_poll for r in running.values())
                if due > self.clock():
                    wake = min(due, hold_until) if pending and hold_until > self.clock() else due
                    self.sleep(max(0.0, wake - self.clock()))
                for query_id in [q for q, r in running.items() if r.next_poll <= self.clock()]:
                    entry = running[query_id]
                    try:
                        execution = self.client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
                    except (ClientError, BotoCoreError) as exc:
                        del running[query_id]
                        done += 1
                        yield Outcome(entry.job, FAILED, f"lost track of the query: {_aws_error(exc)}", query_id=query_id)
                        continue
                    status = execution.get("Status", {})
                    state = status.get("State", "")
                    if state in ("QUEUED", "RUNNING"):
                        entry.delay = min(entry.delay * 2, self.last_poll)
                        entry.next_poll = self.clock() + entry.delay
                        continue
                    del running[query_id]
                    done += 1
                    hold_until = 0.0  # a slot is free
                    statistics = execution.get("Statistics", {})
                    outcome = Outcome(
                        entry.job,
                        state,
                        query_id=query_id,
                        scanned_bytes=int(statistics.get("DataScannedInBytes") or 0),
                        seconds=(statistics.get("TotalExecutionTimeInMillis") or 0) / 1000
                        or self.clock() - entry.started,
                    )
                    if state == SUCCEEDED:
                        try:
                            outcome.columns, outcome.rows = self._results(query_id)
                        except (ClientError, BotoCoreError) as exc:
                            outcome.state, outcome.reason = FAILED, f"could not read its results: {_aws_error(exc)}"
                    else:
                        reason = status.get("StateChangeReason") or (status.get("AthenaError") or {}).get("ErrorMessage")
                        outcome.state = CANCELLED if state == CANCELLED else FAILED
                        outcome.reason = reason or state.lower()
                    yield outcome
            if progress:
                progress("Athena queries", done, total)
        except BaseException:
            # Ctrl-C, a failure of the caller, or the generator closed early: stop what runs.
            self.cancel(list(running))
            raise

    def cancel(self, query_ids: Sequence[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for query_id in query_ids:
            try:
                self.client.stop_query_execution(QueryExecutionId=query_id)
            except (ClientError, BotoCoreError):
                pass  # it ended meanwhile, or cannot be reached: nothing more to do


def _error_code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _aws_error(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        return f"{code}: {message}" if message and message != code else str(code or exc)
    return str(exc)
