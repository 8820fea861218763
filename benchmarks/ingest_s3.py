"""How fast is ``trailscan ingest s3``?  (issue 3)

    python benchmarks/ingest_s3.py [--objects 2000] [--events-per-object 100] [--workers 8]
                                   [--rounds 1] [--no-trailscraper] [--trailscraper-venv DIR]

Plants N gzip log files of E records each (2 accounts × 2 regions, 24 hours, CloudTrail's key
layout and file names, records from ``trailscan.generate``) in a bucket of a moto server on
127.0.0.1, then times, in the same run, each tool in a process of its own reaching the server
through ``AWS_ENDPOINT_URL`` (this process only hosts the server while they run):

- ``trailscan``: ``python -m trailscan ingest s3 --bucket B --since … --until … --workers W``
  into a fresh store;
- ``trailscan, S3 layer only`` (a reference): the same run with the store's ingest stubbed out,
  which shows how much of trailscan's time is S3 and how much is the store;
- ``sequential``: the plain way, a boto3 loop listing the same day folders and downloading
  object after object, then ``python -m trailscan ingest files DIR`` into a fresh store;
- ``trailscraper``: ``trailscraper download --parallelism W`` then ``trailscraper select``
  (stdout to a file) of trailscraper 0.10.0, installed from PyPI into a venv of its own,
  created by this script under a temporary folder (or reused with ``--trailscraper-venv``).

Each is checked (the stores hold N×E events; trailscraper selected N×E records).  It prints
objects/s and events/s of each (its best round), and PASS/FAIL against the target: trailscan
at least 3× faster than trailscraper end to end.  The machine's speed drifts over minutes on
a shared host, so that ratio is taken round by round, the two tools running back to back in
alternating order (the references after them), and the rounds' ratios are averaged
geometrically.  Exit status 0 when the target passes (or trailscraper could not be run), 1
when it fails or a tool's result is wrong.

moto is a single Python process: every tool's figure is bounded by how fast it answers, so the
ratios say more than the absolute rates, which a real bucket would raise for the parallel tools.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from benchmarks.trailscraper_venv import trailscraper_executable  # noqa: E402
from trailscan.generate import HEALTHY_CALLS, RoleSession, access_key_id, api_call, delivery_key  # noqa: E402

ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("eu-west-1", "us-east-1")
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
END = START + timedelta(hours=24)
BUCKET = "bench-trail-logs"
TRAILSCAN = "trailscan ingest s3"
SEQUENTIAL = "sequential boto3 + ingest files"
S3_LAYER = "trailscan, S3 layer only"
TRAILSCRAPER_NAME = "trailscraper download + select"
TARGET_VS_TRAILSCRAPER = 3.0


# -- the bucket ----------------------------------------------------------------------------


def plant(session, objects: int, per_object: int, seed: int = 7) -> int:
    """Put ``objects`` log files of ``per_object`` records, spread over the 24 hours and the
    account/region pairs; returns the number of records."""
    rng = random.Random(seed)
    units = [(account, region) for account in ACCOUNTS for region in REGIONS]
    sessions = {
        account: RoleSession(account, "app", "botocore-session-1", access_key_id(rng)) for account in ACCOUNTS
    }
    slots = -(-objects // len(units))
    slot = (END - START) / slots
    s3 = session.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": session.region_name})

    def body(index: int) -> tuple[str, bytes]:
        local = random.Random(seed * 1_000_003 + index)
        account, region = units[index % len(units)]
        begin = START + slot * (index // len(units))
        records = []
        for n in range(per_object):
            when = begin + slot * (n / per_object)
            source, name, read_only = local.choice(HEALTHY_CALLS)
            records.append(
                api_call(local, when=when, region=region, account=account, event_source=source, event_name=name,
                         read_only=read_only, identity=sessions[account].user_identity(when - timedelta(minutes=5)))
            )  # fmt: skip
        key = delivery_key(account, region, begin + slot + timedelta(minutes=1), local)
        return key, gzip.compress(orjson.dumps({"Records": records}), compresslevel=6)

    with ThreadPoolExecutor(8) as pool:
        for key, data in pool.map(body, range(objects)):
            s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return objects * per_object


# -- the tools ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One tool's run: wall seconds, its own CPU seconds, the moto server's CPU seconds
    serving it, and how long each phase took."""

    tool: str
    seconds: float = 0.0
    cpu: float = 0.0
    server_cpu: float = 0.0
    phases: list[str] = field(default_factory=list)
    events: int | None = None
    problem: str = ""
    reference: bool = False  # shown for insight, not compared

    def timed(
        self, phase: str, argv: list[str], env: dict, stdout=subprocess.DEVNULL
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` to completion and add its figures to this run."""
        children, server = (
            resource.getrusage(resource.RUSAGE_CHILDREN),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
        seconds = time.perf_counter() - began
        children_after, server_after = (
            resource.getrusage(resource.RUSAGE_CHILDREN),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        self.seconds += seconds
        self.cpu += cpu_seconds(children_after) - cpu_seconds(children)
        self.server_cpu += cpu_seconds(server_after) - cpu_seconds(server)
        self.phases.append(f"{phase} {seconds:.1f}s")
        if done.returncode != 0 and not self.problem:
            self.problem = f"{phase}: exit {done.returncode}: {last_line(done.stderr)}"
        return done


def cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def stored_events(stderr: str) -> int | None:
    match = re.search(r"(\d+) new events stored", stderr)
    return int(match.group(1)) if match else None


def window_args() -> list[str]:
    return ["--since", START.isoformat(), "--until", END.isoformat()]


def run_trailscan(env: dict, work: Path, workers: int) -> Run:
    db = work / "s3.duckdb"
    argv = [sys.executable, "-m", "trailscan", "ingest", "s3", "--bucket", BUCKET, *window_args(),
            "--workers", str(workers), "--db", str(db)]  # fmt: skip
    run = Run(TRAILSCAN)
    run.events = stored_events(run.timed("ingest s3", argv, env).stderr)
    db.unlink(missing_ok=True)
    return run


def run_s3_layer(env: dict, workers: int) -> Run:
    """trailscan's listing, downloads and batching with the store's ingest stubbed out: how much
    of ``trailscan ingest s3`` is S3 and how much is the store (a reference, not a competitor)."""
    run = Run(S3_LAYER, reference=True)
    done = run.timed(
        "ingest s3, store stubbed", [sys.executable, __file__, "--s3-layer-only", str(workers)], env
    )
    match = re.search(r"(\d+) objects downloaded", done.stderr)
    run.events = int(match.group(1)) if match else None  # objects, here
    return run


def s3_layer_only(workers: int) -> None:
    import boto3

    from trailscan.model import BatchResult, Window
    from trailscan.sources.s3 import ingest_s3
    from trailscan.store import Store

    class Stubbed(Store):
        """Files are counted, not read; batches are committed empty."""

        counted = 0

        def stage_files(self, paths, **_):
            self.counted += len(paths)

        def commit_staged(self, **_):
            files, self.counted = self.counted, 0
            return BatchResult(files=files)

    with Stubbed.open(":memory:") as store:
        result, _ = ingest_s3(
            store, boto3.Session(), window=Window(START, END), bucket=BUCKET, workers=workers
        )
    print(f"{result.files} objects downloaded", file=sys.stderr)


def run_sequential(env: dict, work: Path) -> Run:
    folder, db = work / "sequential", work / "sequential.duckdb"
    run = Run(SEQUENTIAL)
    run.timed("download", [sys.executable, __file__, "--sequential-download", str(folder)], env)
    if not run.problem:
        ingest = [sys.executable, "-m", "trailscan", "ingest", "files", str(folder), "--db", str(db)]
        run.events = stored_events(run.timed("ingest files", ingest, env).stderr)
    shutil.rmtree(folder, ignore_errors=True)
    db.unlink(missing_ok=True)
    return run


def sequential_download(folder: Path) -> None:
    """The plain way: list each day folder, get each object, one after the other."""
    import boto3

    s3 = boto3.client("s3")
    days = sorted({START.date(), (END + timedelta(hours=1)).date()})
    for account in ACCOUNTS:
        for region in REGIONS:
            for day in days:
                prefix = f"AWSLogs/{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
                    for item in page.get("Contents", []):
                        target = folder / item["Key"]
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())


def run_trailscraper(env: dict, work: Path, executable: Path, workers: int) -> Run:
    logs, selected = work / "trailscraper-logs", work / "trailscraper-selected.json"
    ids = [arg for account in ACCOUNTS for arg in ("--account-id", account)]
    regions = [arg for region in REGIONS for arg in ("--region", region)]
    times = ["--from", START.isoformat(), "--to", END.isoformat()]
    download = [str(executable), "download", "--bucket", BUCKET, *ids, *regions, "--log-dir", str(logs), *times,
                "--parallelism", str(workers)]  # fmt: skip
    run = Run(TRAILSCRAPER_NAME)
    run.timed("download", download, env)
    if not run.problem:
        with open(selected, "w") as out:
            run.timed("select", [str(executable), "select", "--log-dir", str(logs), *times], env, stdout=out)
    if not run.problem:
        run.events = len(orjson.loads(selected.read_bytes())["Records"])
    selected.unlink(missing_ok=True)
    shutil.rmtree(logs, ignore_errors=True)
    return run


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# -- main ------------------------------------------------------------------------------------


def report(runs: dict[str, Run], objects: int, events: int) -> bool:
    """The table of results; False when a tool failed or stored the wrong number of events."""
    ok = True
    print(
        f"\n{'tool':<32} {'seconds':>8} {'objects/s':>10} {'events/s':>9} {'CPU s':>6} {'moto CPU s':>10}  check"
    )
    for run in runs.values():
        if run.problem:
            print(f"{run.tool:<32} {'—':>8} {'—':>10} {'—':>9} {'—':>6} {'—':>10}  {run.problem}")
            ok = False
            continue
        if run.reference:
            check = "reference" if run.events == objects else f"WRONG: {run.events} objects, not {objects}"
            ok &= run.events == objects
        else:
            check = "ok" if run.events == events else f"WRONG: {run.events} events, not {events}"
            ok &= run.events == events
        rates = f"{objects / run.seconds:>10,.0f} {events / run.seconds:>9,.0f}"
        print(f"{run.tool:<32} {run.seconds:>8.2f} {rates} {run.cpu:>6.1f} {run.server_cpu:>10.1f}  {check}")
        print(f"{'':<32} ({', '.join(run.phases)})")
    return ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time `trailscan ingest s3` against a sequential download and trailscraper."
    )
    parser.add_argument("--objects", type=int, default=2000, help="log files in the bucket (2000)")
    parser.add_argument("--events-per-object", type=int, default=100, help="records per file (100)")
    parser.add_argument(
        "--workers", type=int, default=8, help="parallel downloads for trailscan and trailscraper (8)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tool, best kept (1)")
    parser.add_argument("--trailscraper", action=argparse.BooleanOptionalAction, default=True,
                        help="also time trailscraper 0.10.0 (default: yes)")  # fmt: skip
    parser.add_argument("--trailscraper-venv", type=Path,
                        help="venv holding trailscraper 0.10.0, or where to install it (default: a temporary one)")  # fmt: skip
    parser.add_argument("--sequential-download", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--s3-layer-only", type=int, metavar="WORKERS", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sequential_download:
        sequential_download(args.sequential_download)
        return 0
    if args.s3_layer_only:
        s3_layer_only(args.s3_layer_only)
        return 0
    from tests.support.moto_server import MotoServer

    with tempfile.TemporaryDirectory(prefix="trailscan-bench-s3-") as temp, MotoServer() as moto:
        work = Path(temp)
        executable, why = None, "--no-trailscraper"
        if args.trailscraper:
            executable, why = trailscraper_executable(
                (args.trailscraper_venv or work / "trailscraper-venv").expanduser()
            )
            if executable is None:
                print(f"trailscraper cannot be run: {why}; the other figures follow")
        began = time.perf_counter()
        events = plant(moto.session("eu-west-1"), args.objects, args.events_per_object)
        print(f"planted {args.objects:,} objects, {events:,} events in {time.perf_counter() - began:.1f}s "
              f"(moto on {moto.endpoint_url}, {os.cpu_count()} CPUs)")  # fmt: skip
        env = {**os.environ, **moto.environ("eu-west-1")}
        best: dict[str, Run] = {}
        paired: list[float] = []  # trailscraper / trailscan, one per round
        for round_ in range(args.rounds):
            # The machine's speed drifts over minutes (shared, throttled): the two tools
            # compared run back to back, in alternating order, and the references after.
            pair = [lambda: run_trailscan(env, work, args.workers)]
            if executable is not None:
                pair.append(lambda: run_trailscraper(env, work, executable, args.workers))
            references = [lambda: run_s3_layer(env, args.workers), lambda: run_sequential(env, work)]
            if round_ % 2:
                pair.reverse()
                references.reverse()
            this_round: dict[str, Run] = {}
            for tool in pair + references:
                run = tool()
                this_round[run.tool] = run
                print(f"  round {round_ + 1}: {run.tool}: {run.seconds:.2f}s {run.problem}", flush=True)
                kept = best.get(run.tool)
                if kept is None or kept.problem or (not run.problem and run.seconds < kept.seconds):
                    best[run.tool] = run
            ours, theirs = this_round[TRAILSCAN], this_round.get(TRAILSCRAPER_NAME)
            if theirs is not None and not (ours.problem or theirs.problem):
                paired.append(theirs.seconds / ours.seconds)
        ok = report(best, args.objects, events)
        trailscan = best[TRAILSCAN]
        print()
        for name, other in best.items():
            if other is not trailscan and not (other.reference or trailscan.problem or other.problem):
                print(f"trailscan vs {name}: {other.seconds / trailscan.seconds:.1f}× faster, best against best "
                      f"(by CPU s: {other.cpu / trailscan.cpu:.1f}×)")  # fmt: skip
        target = f"target (≥ {TARGET_VS_TRAILSCRAPER:g}× faster than trailscraper end to end, run back to back)"
        scraper = best.get(TRAILSCRAPER_NAME)
        if not paired:
            print(f"{target}: not measured ({scraper.problem if scraper else why})")
        else:
            ratio = statistics.geometric_mean(paired)
            ok &= ratio >= TARGET_VS_TRAILSCRAPER
            rounds = ", ".join(f"{r:.2f}×" for r in paired)
            print(f"{target}: {'PASS' if ratio >= TARGET_VS_TRAILSCRAPER else 'FAIL'} "
                  f"({ratio:.2f}×, the geometric mean of the rounds: {rounds})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
