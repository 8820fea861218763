"""The ``files`` source: local files, directories (recursive) and globs."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from trailscan.errors import InputError, UsageError
from trailscan.interrupt import sigterm_as_interrupt
from trailscan.model import (
    COMPLETE,
    PARTIAL,
    UNREADABLE_FILES,
    BatchResult,
    Coverage,
    FileProblem,
    ProgressFn,
    positive_setting,
    record_notes,
)
from trailscan.store import Store, iter_batches, not_regular

#: Decompressed bytes read per transaction: bounds memory whatever the input size.
#: ``$TRAILSCAN_BATCH_BYTES`` overrides it (smaller batches: less memory, more commits).
BATCH_BYTES = 256 * 1024 * 1024
BATCH_BYTES_ENV = "TRAILSCAN_BATCH_BYTES"

_SKIP_SUFFIXES = (".md", ".txt", ".sha256", ".sig", ".pem", ".csv", ".parquet", ".duckdb", ".wal")


def is_digest(path: Path) -> bool:
    """CloudTrail digest files (integrity validation) hold no events."""
    return "CloudTrail-Digest" in path.name or "CloudTrail-Digest" in path.parts


def expand_paths(specs: Iterable[str]) -> tuple[list[Path], list[FileProblem]]:
    """Resolve files, directories (recursive) and glob patterns, in a stable order.

    Inside a directory, hidden files and non-log files (``.md``, ``.txt`` …) are passed
    over; a file named explicitly is always read.  A spec matching nothing is a problem,
    and so is anything but a regular file (a FIFO would be waited on forever, a device
    read without end): it is named and never opened.
    """
    found: dict[Path, None] = {}
    problems: list[FileProblem] = []
    for spec in specs:
        expanded = os.path.expanduser(spec)
        if glob.has_magic(expanded):
            matches = [Path(m) for m in sorted(glob.glob(expanded, recursive=True))]
        else:
            matches = [Path(expanded)] if os.path.lexists(expanded) else []
        if not matches:
            problems.append(FileProblem(spec, "no such file or directory"))
            continue
        for match in matches:
            if match.is_dir():
                for path in _walk(match):
                    found.setdefault(path, None)
            else:
                found.setdefault(match, None)
    regular = []
    for path in found:
        kind = not_regular(str(path))
        if kind:
            problems.append(FileProblem(str(path), f"{kind}, not a regular file: not read"))
        else:
            regular.append(path)
    return regular, problems


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            yield Path(folder) / name


def ingest_files(
    store: Store,
    specs: Iterable[str],
    *,
    progress: ProgressFn | None = None,
    batch_bytes: int | None = None,
) -> tuple[BatchResult, Coverage]:
    """Read every CloudTrail record under ``specs`` into ``store``.

    Digest files are skipped and counted.  Unreadable files are reported in the
    result's problems (the readable ones are stored regardless) and make the
    coverage ``partial``.  Records without a usable ``eventTime`` are stored but fall in
    no window: the coverage counts them as skipped, and its detail says so; records
    dropped because another with their ``eventID`` but other content was kept are
    counted in its detail too.  Each
    batch of about ``batch_bytes`` (default :func:`batch_bytes_setting`) is one
    transaction.
    """
    if batch_bytes is None:
        batch_bytes = batch_bytes_setting()
    specs = list(specs)
    paths, problems = expand_paths(specs)
    if not paths:
        if problems:
            raise InputError(str(problems[0]))
        raise InputError(f"no files found in {', '.join(specs)}")
    total = BatchResult(problems=list(problems))
    digests = [p for p in paths if is_digest(p)]
    total.digests += len(digests)
    logs = [p for p in paths if not is_digest(p)]
    done = 0
    if progress:
        progress("files", 0, len(logs))
    _track_unreadable(store, [], BatchResult())  # from now on the store keeps the list
    with sigterm_as_interrupt():  # SIGTERM: the batch is rolled back, one line, as for Ctrl-C
        for batch in iter_batches(logs, batch_bytes):
            result = store.ingest_files(batch, origin="files")
            total.add(result)
            _track_unreadable(store, batch, result)
            done += len(batch)
            if progress:
                progress("files", done, len(logs))
    total.files += len(digests)
    untimed = sum(total.untimed.values())
    coverage = Coverage(
        source="files",
        events=total.records,
        skipped=total.skipped + untimed,
        status=PARTIAL if total.problems else COMPLETE,
        detail=_detail(total),
    )
    store.record_coverage(coverage)
    return total, coverage


def _track_unreadable(store: Store, paths: list[Path], result: BatchResult) -> None:
    """Keep the store's list of files that could not be read (:data:`UNREADABLE_FILES`):
    add this batch's, drop those it read.  While one is listed the coverage of local files
    stays ``partial``, whatever ingest comes after; reading it again once fixed clears it."""
    read = {os.path.abspath(path) for path in paths}
    failed = {os.path.abspath(problem.name): problem.message for problem in result.problems}
    _, found = store.query("SELECT value FROM state WHERE key = $key", {"key": UNREADABLE_FILES})
    listed = orjson.loads(found[0][0]) if found else {}
    kept = {path: why for path, why in listed.items() if path not in read}
    store.set_state(UNREADABLE_FILES, {**kept, **failed})


def batch_bytes_setting() -> int:
    """``$TRAILSCAN_BATCH_BYTES`` if set, else :data:`BATCH_BYTES`."""
    return positive_setting(BATCH_BYTES_ENV, BATCH_BYTES, "bytes")


def _detail(result: BatchResult) -> str:
    parts = [f"{result.files} files", f"{result.new_events} new events"]
    if result.digests:
        parts.append(f"{result.digests} digest files skipped")
    if result.problems:
        parts.append(f"{len(result.problems)} unreadable")
    return ", ".join(parts + record_notes(sum(result.untimed.values()), sum(result.conflicts.values())))


class FilesSource:
    """``files``: local files, folders (recursively) and globs, in every CloudTrail shape."""

    name = "files"
    remote = False
    asks_caller_identity = False

    def ingest(self, store: Store, request, *, window=None, session=None, progress=None):
        if not request.paths:
            raise UsageError("--source files needs --path", "pass --path FILE_OR_DIR (repeatable)")
        result, coverage = ingest_files(store, list(request.paths), progress=progress)
        return result, [coverage]

    def required_statements(self, request, notes: list[str]) -> list[dict]:
        return []
