"""How fast and how lean is ``trailscan ingest files``?  (issue 2, "Speed and memory")

    python benchmarks/ingest_files.py --events 200000 [--events-large 1000000]
                                      [--trailscraper | --no-trailscraper] [--keep DIR]

Generates N synthetic events in CloudTrail's S3 delivery layout with the project's own
generator (``trailscan.generate``: 2 accounts, 2 regions, the last 24 hours, gzip files
of ~100 records), then times, each in a process of its own so that its peak RSS is its
own, alternating the order from round to round:

- ``trailscan``: ``python -m trailscan ingest files DIR --db <fresh file>``;
- ``duckdb (disk)``: DuckDB's own fastest read of the same files into a fresh on-disk
  database, ``CREATE TABLE t AS SELECT unnest(from_json(json->'Records', '["JSON"]'))
  FROM read_json_objects(…, format='unstructured')`` — the baseline of the target;
- ``duckdb (memory)``: the same into an in-memory database, for reference;
- ``trailscraper``: ``trailscraper select --log-dir DIR`` of trailscraper 0.10.0, installed
  from PyPI into a venv of its own (cached, see ``--trailscraper-venv``).

It prints events/s, CPU seconds and peak RSS of each, the ratios, and PASS/FAIL against
the targets: trailscan ≥ 0.6× DuckDB's events/s, ≥ 3× faster than trailscraper, peak RSS
≤ 1.5 GiB and flat from ``--events`` to ``--events-large``.  It also checks that every
trailscan store holds exactly N events.  Exit status 0 when every target passes, 1 when one
fails.

Peak RSS is ``ru_maxrss`` from ``wait4`` of each child.  On Linux a child's figure is at least
the RSS its parent had when it forked (exec keeps the old address space's high-water mark),
so this parent imports neither DuckDB nor trailscan and generates in a child process; its
own RSS, the floor of every figure, is printed.  Files are read from the page cache (they
were just written), as on a second run over the same folder.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.trailscraper_venv import TRAILSCRAPER, trailscraper_executable  # noqa: E402

ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("eu-west-1", "us-east-1")
#: Events generated per call of the generator: bounds the generator's memory (it holds a
#: call's records until they are grouped into files).  Calls cover whole 5-minute
#: delivery slots, so the files are those one call would write.
CHUNK_EVENTS = 100_000
SLOT = timedelta(minutes=5)


TARGET_VS_DUCKDB = 0.6
TARGET_VS_TRAILSCRAPER = 3.0
TARGET_RSS = int(1.5 * 1024**3)
#: "Flat": peak RSS at --events-large at most this many times the one at --events.
TARGET_RSS_GROWTH = 1.2

# Runs in a child: DuckDB's own fastest read of the delivery files.
DUCKDB_BASELINE = """
import sys, duckdb
pattern, target = sys.argv[1], sys.argv[2]
con = duckdb.connect(target)
con.execute("SET enable_progress_bar = false")
con.execute(
    "CREATE TABLE t AS SELECT unnest(from_json(json->'Records', '[\\"JSON\\"]')) AS r "
    "FROM read_json_objects($pattern, format='unstructured')",
    {"pattern": pattern},
)
print(con.execute("SELECT count(*) FROM t").fetchone()[0], duckdb.__version__)
con.close()
"""

TRAILSCAN = "trailscan"
DUCKDB_DISK = "duckdb (disk)"
DUCKDB_MEMORY = "duckdb (memory)"
TRAILSCRAPER_NAME = "trailscraper"


# -- generating --------------------------------------------------------------------------


def generate(out: Path, events: int, seed: int) -> None:
    """Write ``events`` healthy events under ``out/tree`` and describe them in
    ``out/manifest.json``.  Runs in a child process (see the module docstring)."""
    import random

    from trailscan.generate import delivery_files, healthy_traffic, write_delivery_tree

    rng = random.Random(seed)
    now = datetime.now(UTC)
    end = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    slots = 24 * 60 // 5
    start = end - slots * SLOT
    tree = out / "tree"
    chunks = max(1, math.ceil(events / CHUNK_EVENTS))
    files = 0
    for chunk in range(chunks):
        first, last = chunk * slots // chunks, (chunk + 1) * slots // chunks
        count = events * last // slots - events * first // slots
        records = healthy_traffic(
            rng,
            count=count,
            start=start + first * SLOT,
            end=start + last * SLOT,
            accounts=ACCOUNTS,
            regions=REGIONS,
        )
        files += write_delivery_tree(tree, delivery_files(records, rng))
    size = sum(path.stat().st_size for path in tree.rglob("*.json.gz"))
    manifest = {
        "events": events,
        "seed": seed,
        "files": files,
        "bytes": size,
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def dataset(root: Path, events: int, seed: int) -> dict:
    """The manifest of a generated tree of ``events`` events under ``root``, generating it
    unless a kept one matches."""
    out = root / f"events-{events}"
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("events") == events and manifest.get("seed") == seed:
            print(f"reusing {manifest['files']:,} files of {events:,} events in {out}", flush=True)
            return {**manifest, "tree": str(out / "tree"), "dir": str(out)}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"generating {events:,} events …", end=" ", flush=True)
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--generate-into", str(out), "--events", str(events), "--seed", str(seed)],
        check=True,
    )
    manifest = json.loads(manifest_path.read_text())
    print(
        f"{manifest['files']:,} files, {manifest['bytes'] / 1024**2:.1f} MiB gzip "
        f"in {time.perf_counter() - began:.0f} s (not timed)",
        flush=True,
    )
    return {**manifest, "tree": str(out / "tree"), "dir": str(out)}


# -- measuring ----------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    cpu: float
    peak_rss: int
    returncode: int
    stdout: str
    stderr: str


def measure(argv: list[str], *, discard_stdout: bool = False) -> Run:
    """Run ``argv`` in a child and return its wall time, CPU time and peak RSS (bytes)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL if discard_stdout else out, stderr=err
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            seconds=seconds,
            cpu=usage.ru_utime + usage.ru_stime,
            peak_rss=usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
            returncode=child.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


@dataclass
class Result:
    """Every run of one tool over one data set."""

    tool: str
    events: int
    runs: list[Run] = field(default_factory=list)
    checked: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not self.problem

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def rate(self) -> float:
        return self.events / self.best.seconds

    @property
    def cpu_rate(self) -> float:
        return self.events / self.best.cpu

    @property
    def peak_rss(self) -> int:
        return max(run.peak_rss for run in self.runs)


def trailscan_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trailscan", *args]


def run_trailscan(data: dict, result: Result, keep: bool) -> None:
    db = Path(data["dir"]) / "trailscan.duckdb"
    remove_db(db)
    run = measure(trailscan_command("ingest", "files", data["tree"], "--db", str(db)))
    result.runs.append(run)
    if run.returncode != 0:
        result.problem = f"exit {run.returncode}: {last_line(run.stderr)}"
        return
    check = subprocess.run(
        trailscan_command("sql", "select count(*) from events", "--db", str(db), "--format", "csv"),
        check=False,
        capture_output=True,
        text=True,
    )
    stored = int(check.stdout.split()[-1]) if check.returncode == 0 and check.stdout.split() else -1
    if stored != data["events"]:
        result.problem = f"the store holds {stored:,} events, not {data['events']:,}"
    else:
        result.checked = f"{stored:,} events in the store"
    if not keep:
        remove_db(db)


def run_duckdb(data: dict, result: Result, target: str) -> None:
    pattern = str(Path(data["tree"]) / "**" / "*.json.gz")
    run = measure([sys.executable, "-c", DUCKDB_BASELINE, pattern, target])
    result.runs.append(run)
    if target != ":memory:":
        remove_db(Path(target))
    if run.returncode != 0:
        result.problem = f"exit {run.returncode}: {last_line(run.stderr)}"
        return
    rows, version = last_line(run.stdout).split()
    result.checked = f"{int(rows):,} rows (DuckDB {version})"
    if int(rows) != data["events"]:
        result.problem = f"{int(rows):,} rows, not {data['events']:,}"


def run_trailscraper(data: dict, result: Result, executable: Path) -> None:
    """``trailscraper select`` prints every record as one JSON document: stdout goes to
    /dev/null, and the work done is counted from its ``--verbose`` "Loading FILE" lines."""
    start = datetime.fromisoformat(data["start"]) - timedelta(hours=1)
    end = datetime.fromisoformat(data["end"]) + timedelta(hours=1)
    argv = [
        str(executable),
        "--verbose",
        "select",
        "--log-dir",
        data["tree"],
        "--from",
        start.isoformat(),
        "--to",
        end.isoformat(),
    ]
    run = measure(argv, discard_stdout=True)
    result.runs.append(run)
    loaded = sum(1 for line in run.stderr.splitlines() if "Loading " in line)
    if run.returncode != 0:
        result.problem = f"exit {run.returncode}: {last_line(run.stderr)}"
    elif loaded != data["files"] or "No records matching" in run.stderr:
        result.problem = f"read {loaded:,} of {data['files']:,} files"
    else:
        result.checked = f"{loaded:,} files read"


def remove_db(db: Path) -> None:
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def bench(
    data: dict, tools: list[str], rounds: int, trailscraper_rounds: int, executable: Path | None, keep: bool
) -> dict[str, Result]:
    results = {tool: Result(tool, data["events"]) for tool in tools}
    for index in range(rounds):
        order = tools[index % len(tools) :] + tools[: index % len(tools)]
        for tool in order:
            result = results[tool]
            if result.problem or (tool == TRAILSCRAPER_NAME and index >= trailscraper_rounds):
                continue
            print(f"  round {index + 1}/{rounds}: {tool} …", end=" ", flush=True)
            if tool == TRAILSCAN:
                run_trailscan(data, result, keep)
            elif tool == DUCKDB_DISK:
                run_duckdb(data, result, str(Path(data["dir"]) / "duckdb-baseline.duckdb"))
            elif tool == DUCKDB_MEMORY:
                run_duckdb(data, result, ":memory:")
            else:
                run_trailscraper(data, result, executable)
            run = result.runs[-1]
            print(
                f"{run.seconds:.2f} s, {mib(run.peak_rss)}"
                + (f"  [{result.problem}]" if result.problem else ""),
                flush=True,
            )
    return results


# -- reporting ----------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / 1024**2:,.0f} MiB"


def print_results(data: dict, results: dict[str, Result]) -> None:
    print()
    print(
        f"{data['events']:,} events in {data['files']:,} files ({data['bytes'] / 1024**2:.1f} MiB gzip); "
        f"best of {max(len(r.runs) for r in results.values())} by wall time, peak RSS the highest of all runs"
    )
    print(f"  {'':<16} {'runs':>4} {'seconds':>8} {'events/s':>10} {'CPU s':>7} {'peak RSS':>10}  checked")
    for result in results.values():
        if not result.runs:
            print(f"  {result.tool:<16} {'':>4} {'—':>8}  {result.problem}")
            continue
        best = result.best
        note = result.problem and f"PROBLEM: {result.problem}" or result.checked
        print(
            f"  {result.tool:<16} {len(result.runs):>4} {best.seconds:>8.2f} {result.rate:>10,.0f} "
            f"{best.cpu:>7.1f} {mib(result.peak_rss):>10}  {note}"
        )


@dataclass
class Verdict:
    what: str
    measured: str
    status: str  # PASS, FAIL, SKIP or INFO


def verdicts(
    small: dict[str, Result], large: dict[str, Result] | None, events: int, events_large: int
) -> list[Verdict]:
    out: list[Verdict] = []
    ts = small[TRAILSCAN]

    def ratio(other: str) -> tuple[float, float] | None:
        result = small.get(other)
        if result is None or not result.ok or not ts.ok:
            return None
        return ts.rate / result.rate, ts.cpu_rate / result.cpu_rate

    pair = ratio(DUCKDB_DISK)
    out.append(
        Verdict(
            f"trailscan / duckdb (disk) events/s ≥ {TARGET_VS_DUCKDB}×",
            f"{pair[0]:.2f}×  (by CPU s: {pair[1]:.2f}×)" if pair else "—",
            ("PASS" if pair[0] >= TARGET_VS_DUCKDB else "FAIL") if pair else "FAIL",
        )
    )
    pair = ratio(DUCKDB_MEMORY)
    out.append(
        Verdict(
            "trailscan / duckdb (memory) events/s (reference)",
            f"{pair[0]:.2f}×  (by CPU s: {pair[1]:.2f}×)" if pair else "—",
            "INFO",
        )
    )
    if TRAILSCRAPER_NAME in small:
        pair = ratio(TRAILSCRAPER_NAME)
        why = small[TRAILSCRAPER_NAME].problem
        out.append(
            Verdict(
                f"trailscan vs trailscraper: ≥ {TARGET_VS_TRAILSCRAPER:g}× faster",
                f"{pair[0]:.2f}× faster  (by CPU s: {pair[1]:.2f}×)" if pair else f"— ({why})",
                ("PASS" if pair[0] >= TARGET_VS_TRAILSCRAPER else "FAIL") if pair else "SKIP",
            )
        )
    else:
        out.append(
            Verdict(
                f"trailscan vs trailscraper: ≥ {TARGET_VS_TRAILSCRAPER:g}× faster",
                "— (--no-trailscraper)",
                "SKIP",
            )
        )
    sizes = [(events, ts)] + ([(events_large, large[TRAILSCAN])] if large else [])
    for size, result in sizes:
        if result.runs:
            out.append(
                Verdict(
                    f"trailscan peak RSS ≤ {TARGET_RSS / 1024**3:g} GiB at {size:,} events",
                    mib(result.peak_rss),
                    "PASS" if result.peak_rss <= TARGET_RSS else "FAIL",
                )
            )
    if large and ts.runs and large[TRAILSCAN].runs:
        growth = large[TRAILSCAN].peak_rss / ts.peak_rss
        out.append(
            Verdict(
                f"trailscan peak RSS flat {events:,} → {events_large:,} (≤ {TARGET_RSS_GROWTH}×)",
                f"{mib(ts.peak_rss)} → {mib(large[TRAILSCAN].peak_rss)} ({growth:.2f}×)",
                "PASS" if growth <= TARGET_RSS_GROWTH else "FAIL",
            )
        )
    for size, result in sizes:
        out.append(
            Verdict(
                f"every trailscan store holds exactly {size:,} events",
                f"{len(result.runs)} runs" + (f": {result.problem}" if result.problem else ""),
                "PASS" if result.ok else "FAIL",
            )
        )
    return out


# -- main ---------------------------------------------------------------------------------


def default_trailscraper_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "trailscan-bench" / TRAILSCRAPER.replace("==", "-")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/ingest_files.py",
        description="Time `trailscan ingest files` against DuckDB's own read and trailscraper (issue 2).",
    )
    parser.add_argument(
        "--events", type=int, default=200_000, help="events of the main data set (default 200000)"
    )
    parser.add_argument(
        "--events-large",
        type=int,
        metavar="N",
        help="also run trailscan and DuckDB on N events, to show peak RSS is flat",
    )
    parser.add_argument(
        "--trailscraper",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time trailscraper 0.10.0 (at --events only; default: yes)",
    )
    parser.add_argument(
        "--trailscraper-venv",
        type=Path,
        default=default_trailscraper_venv(),
        help="venv to install trailscraper into and reuse (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of trailscan and DuckDB; the best counts (3)"
    )
    parser.add_argument(
        "--trailscraper-repeat",
        type=int,
        help="runs of trailscraper (default: as --repeat; it takes about as long as trailscan, and "
        "one run against trailscan's best of three would favour trailscan on a busy machine)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="generate into DIR and keep the files and the last store (reused by the next run)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--generate-into", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.trailscraper_repeat is None:
        args.trailscraper_repeat = args.repeat
    if args.generate_into:
        generate(args.generate_into, args.events, args.seed)
        return 0
    temporary = None if args.keep else tempfile.TemporaryDirectory(prefix="trailscan-bench-")
    root = args.keep or Path(temporary.name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        version = subprocess.run(
            trailscan_command("--version"), check=False, capture_output=True, text=True
        ).stdout.strip()
        print(
            f"{version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f} at start"
        )
        executable, why = (None, "")
        if args.trailscraper:
            executable, why = trailscraper_executable(args.trailscraper_venv.expanduser())
            if executable is None:
                print(f"trailscraper skipped: {why}")
        tools = [TRAILSCAN, DUCKDB_DISK, DUCKDB_MEMORY] + ([TRAILSCRAPER_NAME] if args.trailscraper else [])
        data = dataset(root, args.events, args.seed)
        small = bench(
            data,
            [t for t in tools if t != TRAILSCRAPER_NAME or executable],
            args.repeat,
            args.trailscraper_repeat,
            executable,
            bool(args.keep),
        )
        if args.trailscraper and executable is None:
            small[TRAILSCRAPER_NAME] = Result(TRAILSCRAPER_NAME, args.events, problem=why)
        large = None
        if args.events_large:
            large_data = dataset(root, args.events_large, args.seed)
            large = bench(
                large_data, [TRAILSCAN, DUCKDB_DISK, DUCKDB_MEMORY], args.repeat, 0, None, bool(args.keep)
            )
        print_results(data, small)
        if large:
            print_results(large_data, large)
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (
            1 if sys.platform == "darwin" else 1024
        )
        print(
            f"\n(this script's own peak RSS, the floor of every figure above: {mib(parent)}; "
            f"load average {os.getloadavg()[0]:.2f} at the end)"
        )
        print("\ntargets (issue 2)")
        checks = verdicts(small, large, args.events, args.events_large or 0)
        width = max(len(check.what) for check in checks)
        for check in checks:
            print(f"  {check.what:<{width}}  {check.measured:<40} {check.status}")
        return 1 if any(check.status == "FAIL" for check in checks) else 0
    finally:
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
