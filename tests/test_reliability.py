"""Nothing lost, nothing doubled (issue 8, SPEC §9): real ``trailscan ingest`` processes
killed with SIGKILL in the middle of their work and started again, and two trailscan
processes writing one store at once.

The CLI draws its progress bar on stderr when stderr is a terminal, and the bar only
moves once a batch is committed (files), an object is downloaded and about to be
committed one by one (s3, with ``TRAILSCAN_BATCH_BYTES=1``-sized batches), or four pages
are stored and checkpointed (lookup).  So each process is given a pseudo-terminal for
stderr and killed as soon as its bar shows the progress wanted: the kill lands mid-ingest
every time, not after a guessed delay.  After each kill the store must open, hold only
whole batches, and the same command run again must leave exactly the events of a clean
run into another store.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import pty
import random
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.conftest import run_cli
from trailscan.generate import delivery_files, healthy_traffic, iso, write_delivery_tree
from trailscan.model import Window
from trailscan.store import Store

ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("eu-west-1", "us-east-1")
START = datetime(2026, 1, 20, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- running trailscan the way a terminal user does, and killing it -------------------------


def trailscan(*args: str) -> list[str]:
    return [sys.executable, "-m", "trailscan", *args]


def kill_at_progress(
    command: Sequence[str], *, label: str, at_least: int, env: dict[str, str], timeout: float = 120
) -> int:
    """Run ``command`` with stderr on a pseudo-terminal and SIGKILL it as soon as its
    progress bar ``label`` shows ``at_least`` done; return the count the bar showed.
    Fails the test when the process ends (or times out) first."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "TERM": "xterm", "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    pattern = re.compile(re.escape(label) + r"[^\r\n]*?(\d+)/(?:\d+|\?)")
    text, shown = "", -1
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # the process closed its terminal: it has ended
                    chunk = b""
                if chunk:
                    text = (text + ANSI.sub("", chunk.decode("utf-8", "replace")))[-4000:]
                    counts = pattern.findall(text)
                    if counts:
                        shown = max(shown, int(counts[-1]))
                    if shown >= at_least:
                        process.send_signal(signal.SIGKILL)
                        process.wait()
                        return shown
                    continue
            if process.poll() is not None:
                break
        pytest.fail(
            f"{' '.join(command[2:])} ended (or timed out) before its {label!r} bar reached {at_least} "
            f"(last seen {shown}); exit {process.poll()}; its terminal said: {text[-600:]!r}"
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


def stored(db: Path) -> dict[str, str]:
    """``event_id -> raw`` of a store, checking it opens and holds no duplicate."""
    with Store.open(db, read_only=True) as store:
        _, rows = store.query("SELECT event_id, raw::VARCHAR FROM events")
    ids = [event_id for event_id, _ in rows]
    assert len(ids) == len(set(ids)), "an event is stored twice"
    return dict(rows)


def assert_sound(db: Path) -> None:
    """The store opens for writing, checkpoints, and every column of every row reads back."""
    with Store.open(db) as store:
        store.con.execute("CHECKPOINT")
        store.con.execute("SELECT * FROM events").fetchall()
        store.con.execute("SELECT * FROM coverage").fetchall()


# -- a corpus of delivery files ----------------------------------------------------------------


def records(count: int, seed: int, start: datetime = START, hours: int = 4) -> list[dict]:
    rng = random.Random(seed)
    return list(
        healthy_traffic(rng, count=count, start=start, end=start + timedelta(hours=hours), accounts=ACCOUNTS, regions=REGIONS)
    )


@pytest.fixture(scope="module")
def trail_tree(tmp_path_factory) -> Path:
    """~8,000 generated records in CloudTrail's delivery layout (~130 gzip files)."""
    root = tmp_path_factory.mktemp("trail")
    write_delivery_tree(root, delivery_files(records(8000, seed=8), random.Random(8), per_file=250))
    return root


@pytest.fixture(scope="module")
def clean_files_store(trail_tree, real_data, tmp_path_factory) -> dict[str, str]:
    """What an uninterrupted ``trailscan ingest files`` of the generated tree and the real corpus stores."""
    db = tmp_path_factory.mktemp("clean") / "clean.duckdb"
    done = run_cli("ingest", "files", str(trail_tree), str(real_data), "--db", str(db))
    assert done.returncode == 0, done.stderr
    return stored(db)


# -- files ------------------------------------------------------------------------------------------


def test_files_ingest_killed_twice_then_run_again_equals_a_clean_run(trail_tree, real_data, clean_files_store, tmp_path):
    db = tmp_path / "killed.duckdb"
    command = trailscan("ingest", "files", str(trail_tree), str(real_data), "--db", str(db))
    small_batches = {"TRAILSCAN_BATCH_BYTES": str(2 * 1024 * 1024)}  # ~25 transactions

    kill_at_progress(command, label="files", at_least=1, env=small_batches)
    first = stored(db)
    assert 0 < len(first) < len(clean_files_store), "killed after its first batch, before its last"
    assert all(clean_files_store[event_id] == raw for event_id, raw in first.items()), "only whole records"

    kill_at_progress(command, label="files", at_least=len(list(trail_tree.rglob("*.json.gz"))) // 2, env=small_batches)
    second = stored(db)
    assert len(first) < len(second) < len(clean_files_store)

    done = run_cli(*command[3:], env=small_batches)
    assert done.returncode == 0, done.stderr
    assert f"{len(clean_files_store) - len(second)} new events stored ({len(clean_files_store)} in the store)" in done.stderr
    assert stored(db) == clean_files_store
    assert_sound(db)


@pytest.mark.slow
def test_files_ingest_killed_at_ten_random_points(trail_tree, real_data, clean_files_store, tmp_path):
    """Ten kills at random progress points, each run resuming the last: never a lost,
    doubled or half-written event, and the store always opens."""
    db = tmp_path / "killed.duckdb"
    command = trailscan("ingest", "files", str(trail_tree), str(real_data), "--db", str(db))
    env = {"TRAILSCAN_BATCH_BYTES": str(1024 * 1024)}
    files = len(list(trail_tree.rglob("*.json.gz"))) + len(list(real_data.rglob("*.json*")))
    rng = random.Random(88)
    counts = []
    for _ in range(10):
        kill_at_progress(command, label="files", at_least=rng.randrange(1, files * 3 // 4), env=env)
        now = stored(db)
        assert all(clean_files_store[event_id] == raw for event_id, raw in now.items())
        counts.append(len(now))
    assert counts == sorted(counts) and counts[-1] < len(clean_files_store)
    done = run_cli(*command[3:], env=env)
    assert done.returncode == 0, done.stderr
    assert stored(db) == clean_files_store
    assert_sound(db)


# -- s3, against moto in server mode ------------------------------------------------------------------

S3_WINDOW = Window(START, START + timedelta(hours=6))
# trailscan itself, with every downloaded object stored in a transaction of its own (the s3
# source flushes a batch once its estimated bytes reach s3.BATCH_BYTES).
ONE_OBJECT_PER_BATCH = (
    "import sys, trailscan.sources.s3 as s3; s3.BATCH_BYTES = 1; "
    "from trailscan.cli import main; main(prog_name='trailscan')"
)


# The trail bucket is planted once for the module.
pytestmark = pytest.mark.usefixtures("moto_module")


@pytest.fixture(scope="module")
def s3_trail(moto_module) -> tuple[str, dict[str, list[str]]]:
    """A bucket holding 6 hours of one account and region: ~70 objects; returns the bucket
    and ``s3 url -> event ids`` of each object."""
    bucket = "reliability-trail"
    session = moto_module.session("eu-west-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    rng = random.Random(3)
    planted = list(
        healthy_traffic(rng, count=3500, start=S3_WINDOW.start, end=S3_WINDOW.end, accounts=ACCOUNTS[:1], regions=REGIONS[:1])
    )
    objects = {}
    for key, body in delivery_files(planted, rng, per_file=100):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        objects[f"s3://{bucket}/{key}"] = [r["eventID"] for r in orjson.loads(gzip.decompress(body))["Records"]]
    return bucket, objects


def test_s3_ingest_killed_then_run_again_equals_a_clean_run(moto, s3_trail, tmp_path):
    from trailscan.sources.s3 import ingest_s3

    bucket, objects = s3_trail
    clean_db = tmp_path / "clean.duckdb"
    with Store.open(clean_db) as store:
        ingest_s3(store, moto.session("eu-west-1"), window=S3_WINDOW, bucket=bucket)
    clean = stored(clean_db)
    assert set(clean) == {event_id for ids in objects.values() for event_id in ids}

    db = tmp_path / "killed.duckdb"
    window = ["--since", iso(S3_WINDOW.start), "--until", iso(S3_WINDOW.end)]
    args = ["ingest", "s3", "--bucket", bucket, *window, "--workers", "2", "--db", str(db)]
    env = moto.environ("eu-west-1")
    kill_at_progress([sys.executable, "-c", ONE_OBJECT_PER_BATCH, *args], label="downloading objects", at_least=10, env=env)

    now = stored(db)
    assert 0 < len(now) < len(clean)
    with Store.open(db, read_only=True) as store:
        remembered = set(store.ingested_objects("s3"))
    # An object is remembered in the transaction that stores its events: all or nothing.
    assert 9 <= len(remembered) < len(objects)
    assert {event_id for url in remembered for event_id in objects[url]} == set(now)

    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert f"from {len(objects) - len(remembered)} objects" in done.stderr, "only what was not stored is downloaded"
    assert stored(db) == clean
    assert_sound(db)


# -- lookup, against the loopback LookupEvents server --------------------------------------------------


def test_lookup_ingest_killed_then_run_again_equals_a_clean_run(moto, tmp_path, monkeypatch):
    from tests.support.lookup_server import DEFAULT_ACCOUNT, LookupServer
    from trailscan.sources.lookup import ingest_lookup

    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    window = Window(end - timedelta(hours=3), end)
    rng = random.Random(9)
    planted = list(
        healthy_traffic(rng, count=400, start=window.start, end=window.end, accounts=[DEFAULT_ACCOUNT], regions=["eu-west-1"])
    )
    # The CLI paces itself at LookupEvents' 2 requests/s; the in-process clean run goes faster.
    with LookupServer(rate=50.0, burst=50.0) as server:
        server.add_events("eu-west-1", planted)
        env = {**moto.environ("eu-west-1"), "AWS_ENDPOINT_URL_CLOUDTRAIL": server.endpoint_url}

        clean_db = tmp_path / "clean.duckdb"
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", server.endpoint_url)
        with Store.open(clean_db) as store:
            ingest_lookup(
                store, moto.session("eu-west-1"), window=window, regions=["eu-west-1"], rate=50.0, account=DEFAULT_ACCOUNT
            )
        clean = stored(clean_db)
        assert set(clean) == {r["eventID"] for r in planted}

        db = tmp_path / "killed.duckdb"
        args = ["ingest", "lookup", "--since", iso(window.start), "--until", iso(window.end), "--regions", "eu-west-1", "--db", str(db)]
        server.reset_counters()
        kill_at_progress(trailscan(*args), label="lookup eu-west-1", at_least=5, env=env)  # 4 pages stored
        now = stored(db)
        assert 200 <= len(now) < len(clean)

        server.reset_counters()
        done = run_cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert "already stored by an earlier run, not read again" in done.stderr
        # 8 pages in all, 4 of them stored by the first run; one more for the second the
        # resumed span shares with what is stored (LookupEvents' EndTime is inclusive). The
        # day before's change lookups, by name, are not checkpointed: asked again, cheaply.
        assert len(server.paging_calls()) <= 8 - 4 + 1, "the second run pages only what the first did not store"
    assert stored(db) == clean
    assert_sound(db)


# -- two writers -----------------------------------------------------------------------------------------


def start_writer(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        trailscan(*args), env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until_locked(db: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until another process holds ``db`` (a reader cannot get in)."""
    import duckdb

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if not db.exists():
            time.sleep(0.02)
            continue
        try:
            duckdb.connect(str(db), read_only=True).close()
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                return
            raise
        time.sleep(0.02)
    pytest.fail("the first writer never held the store")


def tree(root: Path, count: int, seed: int) -> Path:
    write_delivery_tree(root, delivery_files(records(count, seed=seed), random.Random(seed), per_file=250))
    return root


def test_two_writers_at_once_the_second_waits_the_impatient_stop_with_one_line(
    trail_tree, real_data, clean_files_store, tmp_path
):
    """One ``ingest files`` holds the store for seconds; meanwhile another ingest waits
    for it (``TRAILSCAN_LOCK_WAIT=120``) and then stores its files, while an ingest
    allowed 0.5 s and a reader allowed no wait stop with one line each.  The store ends
    with exactly the events of the two that ran."""
    second = tree(tmp_path / "second", 1000, seed=21)
    third = tree(tmp_path / "third", 200, seed=31)
    db = tmp_path / "shared.duckdb"

    first = start_writer(
        # Small batches: the first writer holds the store for many seconds, longer than the
        # others take to start even on a loaded machine.
        ["ingest", "files", str(trail_tree), str(real_data), "--db", str(db)], {"TRAILSCAN_BATCH_BYTES": str(96 * 1024)}
    )
    wait_until_locked(db, first)
    waiting = start_writer(["ingest", "files", str(second), "--db", str(db)], {"TRAILSCAN_LOCK_WAIT": "120"})
    impatient = start_writer(["ingest", "files", str(third), "--db", str(db)], {"TRAILSCAN_LOCK_WAIT": "0.5"})
    reader = start_writer(["sql", "SELECT count(*) FROM events", "--db", str(db)], {"TRAILSCAN_LOCK_WAIT": "0"})
    refusals = [(process.communicate(timeout=60)[1], process.returncode) for process in (impatient, reader)]
    assert first.poll() is None, "the first writer held the store all along"
    assert waiting.poll() is None, "the second writer is waiting for it"
    first_err = first.communicate(timeout=120)[1]
    waiting_err = waiting.communicate(timeout=120)[1]

    assert first.returncode == 0, first_err
    assert waiting.returncode == 0, waiting_err
    assert "1000 new events stored" in waiting_err and "Traceback" not in waiting_err
    for stderr, code in refusals:
        assert code == 2
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
        assert f"the store {db} is in use by another process" in stderr

    second_db = tmp_path / "second.duckdb"
    assert run_cli("ingest", "files", str(second), "--db", str(second_db)).returncode == 0
    assert stored(db) == {**clean_files_store, **stored(second_db)}
    assert_sound(db)
