"""Publishing: the dated report folder and its ``latest/`` copy, local or in S3.

A dated folder (``PREFIX/2026-11-28T060000Z/``) holds ``report.html``, ``report.md``,
``findings.json`` and ``events.parquet``; ``latest/`` holds a copy of each.  The timeline
and the window's events come from the store.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from trailscan.errors import InputError, UsageError
from trailscan.fs import FILE_MODE, dir_mode_for, make_dir, private_temp_dir, replace_dir, write_file
from trailscan.model import Window, utc_now
from trailscan.report.chart import TimelinePoint
from trailscan.report.document import _iso, _utc, check_document, document_window, workload_label
from trailscan.report.html import render_html
from trailscan.report.markdown import render_markdown

if TYPE_CHECKING:  # pragma: no cover
    import boto3

    from trailscan.findings import FindingsReport
    from trailscan.store import Store

__all__ = [
    "ARTIFACTS",
    "CONTENT_TYPES",
    "LATEST",
    "ReportLocation",
    "failure_timeline",
    "publish_findings",
    "publish_report",
    "window_events",
    "write_report",
]

#: The artifacts of one report, in the order they are written: ``report.html`` last, so
#: that a folder whose HTML exists is complete.
ARTIFACTS = ("events.parquet", "findings.json", "report.md", "report.html")
CONTENT_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "report.md": "text/markdown; charset=utf-8",
    "findings.json": "application/json",
    "events.parquet": "application/vnd.apache.parquet",
}
LATEST = "latest"

#: Chart series when only the kind of each failed event is known (see :func:`failure_timeline`).
KIND_SERIES = {
    "irsa": "IRSA: AssumeRoleWithWebIdentity refused",
    "pod_identity": "Pod Identity refused",
    "denied_call": "API calls denied",
}
# The named detection queries (queries/*.sql) that find each kind's failed events; an
# event two queries return belongs to the first (a Pod Identity sts:AssumeRole is also
# an AccessDenied).
_KIND_QUERIES = (
    ("irsa", "failed_web_identity"),
    ("pod_identity", "failed_pod_identity"),
    ("denied_call", "denied_calls"),
)

@dataclass(frozen=True)
class ReportLocation:
    """Where a report was written: its dated folder and the ``latest/`` copy, each a
    local path or an ``s3://`` URL ending in ``/``."""

    folder: str
    latest: str
    files: tuple[str, ...] = ARTIFACTS

    def url(self, name: str = "report.html", *, latest: bool = False) -> str:
        """The path or URL of one artifact."""
        return (self.latest if latest else self.folder) + name

    @property
    def html(self) -> str:
        return self.url("report.html")



# -- the timeline --------------------------------------------------------------------------


def failure_timeline(
    store: Store,
    document: Mapping,
    *,
    event_ids: Mapping[int, Iterable[str]] | None = None,
) -> list[TimelinePoint]:
    """The failed events of the document's window as ``(series, time)`` points.

    Findings carry a few ``sample_event_ids``, not all their events, so the times come
    from the store in one of two ways:

    - ``event_ids`` given (finding index in ``document["findings"]`` → every event id of
      that finding, which the explainer knows): each point is labelled with its finding's
      :func:`workload_label`, and the chart shows which workload failed when.
    - otherwise, the failed events of the window are found by the same named detection
      queries the explainer reads (``failed_web_identity``, ``failed_pod_identity``,
      ``denied_calls``) and labelled by kind (IRSA, Pod Identity, denied call).  This
      needs nothing from the explainer and cannot disagree with the store; its total may
      exceed the findings' when the explainer set some failed events aside.
    """
    findings = document.get("findings") or []
    if event_ids is not None:
        pairs = [
            (index, str(event_id))
            for index, ids in event_ids.items()
            if 0 <= index < len(findings)
            for event_id in ids
        ]
        if not pairs:
            return []
        table = pa.table({"finding": [p[0] for p in pairs], "event_id": [p[1] for p in pairs]})
        store.con.register("report_event_ids", table)
        try:
            rows = store.con.execute(
                "SELECT DISTINCT r.finding, e.event_id, e.event_time FROM report_event_ids r "
                "JOIN events e USING (event_id) WHERE e.event_time IS NOT NULL"
            ).fetchall()
        finally:
            store.con.unregister("report_event_ids")
        labels = {index: workload_label(finding) for index, finding in enumerate(findings)}
        return sorted((labels[index], _utc(moment)) for index, _, moment in rows)

    from trailscan.queries import load_queries

    window = document_window(document)
    book = load_queries()
    bounds = {"since": _iso(window.start), "until": _iso(window.end)}
    seen: set[str] = set()
    points: list[TimelinePoint] = []
    for kind, name in _KIND_QUERIES:
        query = book[name]
        _, rows = store.query(
            f"SELECT event_id, event_time FROM ({query.typed_sql()}) WHERE event_time IS NOT NULL",
            query.bind(bounds),
        )
        for event_id, moment in rows:
            if event_id not in seen:
                seen.add(event_id)
                points.append((KIND_SERIES[kind], _utc(moment)))
    return sorted(points)



# -- writing -----------------------------------------------------------------------------


def window_events(store: Store, window: Window) -> pa.Table:
    """Every stored event of ``window`` (all columns; ``raw`` is already redacted by the
    store), oldest first, timestamps in UTC."""
    return _events_reader(store, window).read_all()


def _events_reader(store: Store, window: Window, batch_rows: int = 50_000) -> pa.RecordBatchReader:
    relation = store.con.sql(
        "SELECT * FROM events WHERE event_time >= $start AND event_time < $end ORDER BY event_time, event_id",
        params={"start": window.start, "end": window.end},
    )
    # DuckDB renamed its Arrow methods (fetch_arrow_reader → to_arrow_reader); take either.
    method = "to_arrow_reader" if hasattr(relation, "to_arrow_reader") else "fetch_arrow_reader"
    reader = getattr(relation, method)(batch_rows)
    schema = _utc_schema(reader.schema)
    if schema.equals(reader.schema):
        return reader
    return pa.RecordBatchReader.from_batches(
        schema, (pa.Table.from_batches([b]).cast(schema).to_batches()[0] for b in reader if b.num_rows)
    )


def _utc_schema(schema: pa.Schema) -> pa.Schema:
    fields = [
        f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def write_report(
    document: Mapping,
    events_table: pa.Table | pa.RecordBatchReader,
    *,
    destination: str,
    session: boto3.Session | None = None,
    now: datetime,
    timeline: Iterable[TimelinePoint] | None = None,
    file_mode: int = FILE_MODE,
    kms_key: str | None = None,
    notes: Sequence[str] = (),
) -> ReportLocation:
    """Write the four artifacts to ``DESTINATION/<now as 2026-11-28T060000Z>/``, then —
    only once that folder is complete — make ``DESTINATION/latest/`` this run's copy;
    ``notes`` are shown on the page, in ``report.md`` and as ``notes`` in ``findings.json``.

    ``destination`` is a local folder (created as needed; nothing is written outside it;
    files ``file_mode``, ``0600`` unless asked otherwise, through :mod:`trailscan.fs`, so a
    planted link is replaced, never followed; ``latest/`` is swapped in whole by
    renames) or ``s3://BUCKET/PREFIX/`` (``s3:PutObject`` alone, through ``session``, each
    object with its content type, SSE-KMS with ``kms_key``).  A failure is one
    :class:`InputError` naming what was and was not written.
    """
    document = check_document(document)
    target = _parse_destination(destination)
    stamp = _utc(now).strftime("%Y-%m-%dT%H%M%SZ")
    timeline = list(timeline) if timeline is not None else None
    # Everything is rendered before anything is published: a rendering error leaves
    # the destination untouched.
    with tempfile.TemporaryDirectory(prefix="trailscan-report-") as staging:
        folder = Path(staging)
        _write_parquet(events_table, folder / "events.parquet")
        # The SPEC §7 document, with the notes (the inventory's gaps, what was left out) a
        # reader of the file alone would otherwise never see.
        published = {**document, "notes": [str(note) for note in notes]} if notes else document
        (folder / "findings.json").write_bytes(orjson.dumps(published, option=orjson.OPT_INDENT_2) + b"\n")
        (folder / "report.md").write_text(render_markdown(document, timeline, notes=notes), encoding="utf-8")
        (folder / "report.html").write_text(render_html(document, timeline, notes=notes), encoding="utf-8")
        if isinstance(target, _S3Target):
            return target.upload(folder, stamp, session, kms_key=kms_key)
        if kms_key:
            raise UsageError("--report-kms-key applies to an s3:// destination")
        return _copy_local(folder, target, stamp, file_mode)


def publish_report(
    store: Store,
    document: Mapping,
    *,
    destination: str,
    session: boto3.Session | None = None,
    now: datetime | None = None,
    event_ids: Mapping[int, Iterable[str]] | None = None,
    file_mode: int = FILE_MODE,
    kms_key: str | None = None,
    notes: Sequence[str] = (),
) -> ReportLocation:
    """Render and publish the report of ``document``: its timeline and the window's
    events come from ``store`` (see :func:`failure_timeline` for ``event_ids``); the
    events are streamed to Parquet, never all held in memory."""
    document = check_document(document)
    _parse_destination(destination)  # a bad --to fails before any work
    window = document_window(document)
    timeline = failure_timeline(store, document, event_ids=event_ids)
    return write_report(
        document,
        _events_reader(store, window),
        destination=destination,
        session=session,
        now=now or utc_now(),
        timeline=timeline,
        file_mode=file_mode,
        kms_key=kms_key,
        notes=notes,
    )


def publish_findings(
    store: Store,
    report: FindingsReport,
    *,
    window: Window | None,
    destination: str,
    session: boto3.Session | None = None,
    now: datetime | None = None,
    file_mode: int = FILE_MODE,
    kms_key: str | None = None,
) -> ReportLocation:
    """Publish an explained :class:`~trailscan.findings.FindingsReport`: its document, a
    chart per workload (from each finding's events) and the window's events.  What
    ``trailscan report``, the demo and the notebook session all call.

    ``window`` is the window the report was asked for; None means everything stored,
    whose span the report then carries, its end moved past the last event (windows are
    half-open).
    """
    from trailscan.findings import findings_document

    now = now or utc_now()
    document = findings_document(report, now)
    if window is None:
        if report.window_start is None or report.window_end is None:
            raise UsageError("nothing to report: the store holds no events", "ingest something first")
        end = report.window_end + timedelta(seconds=1)
        document["window"] = {
            "start": report.window_start.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    event_ids = {index: finding.event_ids for index, finding in enumerate(report.findings)}
    return publish_report(store, document, destination=destination, session=session, now=now, event_ids=event_ids,
                          file_mode=file_mode, kms_key=kms_key, notes=report.notes)


def _write_parquet(events: pa.Table | pa.RecordBatchReader, path: Path) -> None:
    if isinstance(events, pa.Table):
        events = events.cast(_utc_schema(events.schema))
        pq.write_table(events, path, compression="zstd")
        return
    with pq.ParquetWriter(path, events.schema, compression="zstd") as writer:
        for batch in events:
            writer.write_batch(batch)


@dataclass(frozen=True)
class _S3Target:
    bucket: str
    prefix: str  # "" or ending in "/"

    def upload(self, folder: Path, stamp: str, session: boto3.Session | None, *, kms_key: str | None = None) -> ReportLocation:
        """The dated folder first; ``latest/`` only once it is complete, ``report.html``
        last — a failure names what of ``latest/`` this run replaced and what it did not."""
        from trailscan.aws import default_session

        client = (session or default_session()).client("s3")
        where = f"s3://{self.bucket}/{self.prefix}"
        encryption = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
        for name in ARTIFACTS:
            self._put(client, folder / name, f"{self.prefix}{stamp}/{name}", name, where, encryption)
        written: list[str] = []
        for name in ARTIFACTS:
            try:
                self._put(client, folder / name, f"{self.prefix}{LATEST}/{name}", name, where,
                          {**encryption, "CacheControl": "no-cache"})
            except InputError as error:
                left = [n for n in ARTIFACTS if n not in written]
                raise InputError(
                    f"{error.message}; the report is complete in {where}{stamp}/, but {where}{LATEST}/ was only "
                    f"partly replaced ({', '.join(written) or 'nothing'} from this run; "
                    f"{', '.join(left)} still the previous run's)",
                    error.hint,
                ) from None
            written.append(name)
        return ReportLocation(folder=f"{where}{stamp}/", latest=f"{where}{LATEST}/")

    def _put(self, client, path: Path, key: str, name: str, where: str, extra: dict) -> None:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            with open(path, "rb") as body:
                client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=CONTENT_TYPES[name], **extra)
        except ClientError as exc:
            raise _s3_error(exc, self.bucket, self.prefix, key) from None
        except NoCredentialsError:
            raise InputError(
                f"no AWS credentials to write the report to {where}",
                "configure AWS_PROFILE, IRSA or instance credentials",
            ) from None
        except BotoCoreError as exc:
            raise InputError(f"cannot write s3://{self.bucket}/{key}: {exc}") from None


def _s3_error(exc: Exception, bucket: str, prefix: str, key: str) -> InputError:
    """One line naming the bucket (and the object, when it is about one)."""
    error = getattr(exc, "response", {}).get("Error", {})
    code = str(error.get("Code") or "error")
    if code in ("NoSuchBucket", "404", "NotFound"):
        return InputError(f"s3://{bucket}/: no such bucket", "create it, or check the --to destination")
    if code in ("AccessDenied", "403", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return InputError(
            f"s3://{bucket}/{key}: access denied ({code})",
            f"the report needs s3:PutObject on arn:aws:s3:::{bucket}/{prefix}*",
        )
    message = " ".join(str(error.get("Message") or exc).split())
    return InputError(f"cannot write s3://{bucket}/{key}: {code}: {message}")


def _parse_destination(destination: str) -> _S3Target | Path:
    text = destination.strip()
    if not text:
        raise UsageError("the report destination is empty", "give --to s3://BUCKET/PREFIX/ or a folder")
    if text.lower().startswith("s3:"):
        match = re.fullmatch(r"s3://([^/]+)/?(.*)", text, flags=re.IGNORECASE)
        bucket = match.group(1) if match else ""
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            raise UsageError(f"{destination!r} is not an s3://BUCKET/PREFIX/ destination")
        prefix = "/".join(part for part in match.group(2).split("/") if part)
        if any(part in (".", "..") for part in prefix.split("/")):
            raise UsageError(f"{destination!r}: the prefix may not hold '.' or '..' segments")
        return _S3Target(bucket, prefix + "/" if prefix else "")
    return Path(os.path.expanduser(text))


def _copy_local(staging: Path, root: Path, stamp: str, mode: int = FILE_MODE) -> ReportLocation:
    """The dated folder, then ``latest/`` swapped in whole: each written as a private
    folder beside its final name and renamed into place once complete."""
    root = root.absolute()
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: the report destination exists and is not a folder")
    folders = {}
    try:
        if not root.exists():  # an existing root may be a link the operator made
            make_dir(root, dir_mode_for(mode))
        for sub in (stamp, LATEST):
            target = root / sub
            if sub == stamp and target.is_symlink():
                raise InputError(f"{target}: is a symbolic link; trailscan writes reports only into real folders")
            building = private_temp_dir(root, prefix=f".{sub}-")
            for name in ARTIFACTS:
                write_file(building / name, (staging / name).read_bytes(), mode)
            os.chmod(building, dir_mode_for(mode))
            replace_dir(building, target)
            folders[sub] = str(target) + os.sep
    except OSError as exc:
        where = f"{root / stamp}" if stamp not in folders else f"{root / LATEST} (the dated folder {folders[stamp]} is complete)"
        raise InputError(f"cannot write the report to {where}: {exc.strerror or exc}") from None
    return ReportLocation(folder=folders[stamp], latest=folders[LATEST])
