"""Hostile input and faults: bounded, named, never executable (issue 23).

Each test plants the input or the fault — a gzip bomb, a FIFO, a lone surrogate escape,
event times AWS may or may not write, two records under one eventID, a store from a newer
trailscan, a result of sixty million rows, SIGTERM mid-ingest — against real DuckDB, real
files, and moto in server mode on 127.0.0.1, and checks the mechanism holds: the culprit is
named on one line, nothing else is lost, and what could not be read or placed is counted.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import resource
import select
import signal
import struct
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from tests.conftest import run_cli
from trailscan.errors import NewerStoreError, QueryError, StoreError
from trailscan.generate import delivery_files, healthy_traffic, iso
from trailscan.model import COMPLETE, PARTIAL, Window
from trailscan.sources.files import ingest_files
from trailscan.store import SCHEMA_VERSION, Store

ACCOUNT = "111122223333"
REGION = "eu-west-1"


def record(event_id: str, **extra) -> dict:
    rec = {
        "eventVersion": "1.08",
        "eventID": event_id,
        "eventTime": "2026-11-27T10:00:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets",
        "awsRegion": REGION,
        "recipientAccountId": ACCOUNT,
        "userIdentity": {"type": "AssumedRole", "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/app/s"},
    }
    rec.update(extra)
    return rec


def refused(event_id: str, **extra) -> dict:
    return record(event_id, errorCode="AccessDenied", errorMessage="User is not authorized", **extra)


def delivery(records: list[dict]) -> bytes:
    return gzip.compress(json.dumps({"Records": records}).encode())


def bomb(inflated: int, *, lie: int | None = None, members: int = 1) -> bytes:
    """A gzip file inflating to ``inflated`` bytes of valid CloudTrail (one record, repeated
    under one eventID), in ``members`` gzip members; ``lie``: the size its last trailer claims."""
    one = json.dumps(record("bomb-1")).encode()
    body = b'{"Records":[' + b",".join([one] * (inflated // (len(one) + 1))) + b"]}"
    size = -(-len(body) // members)
    data = b"".join(gzip.compress(body[i : i + size], 9) for i in range(0, len(body), size))
    if lie is not None:
        data = data[:-4] + struct.pack("<I", lie)
    return data


def cli(*args: str, env: dict | None = None, timeout: float = 60, limit_memory: int | None = None):
    """``trailscan ARGS`` in a subprocess that is stopped after ``timeout`` seconds (a hang
    fails the test, never the run) and, with ``limit_memory``, may map that many bytes."""

    def limit() -> None:
        if limit_memory:
            resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))

    return subprocess.run(
        [sys.executable, "-m", "trailscan", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        preexec_fn=limit,
    )


def one_line(stderr: str, *needles: str) -> None:
    """``stderr`` holds a line holding every needle, and no traceback."""
    assert "Traceback" not in stderr, stderr
    assert any(all(needle in line for needle in needles) for line in stderr.splitlines()), (needles, stderr)


def coverage_rows(db: Path) -> list[tuple]:
    with Store.open(db, read_only=True) as store:
        return store.query("SELECT source, account, region, events, skipped, status, detail FROM coverage")[1]


# -- 5. gzip bombs ---------------------------------------------------------------------------------------


def test_a_gzip_bomb_among_files_is_named_and_everything_else_is_stored(tmp_path):
    """A few KB inflating to 8 MiB, with the limit at 1 MiB: the bomb is named with the
    limit, the good files of its batch are stored, the coverage is recorded, exit 2."""
    folder = tmp_path / "trail"
    folder.mkdir()
    (folder / "a-bomb.json.gz").write_bytes(bomb(8 << 20))
    (folder / "b-good.json.gz").write_bytes(delivery([refused(f"good-{i}") for i in range(20)]))
    db = tmp_path / "s.duckdb"
    assert len((folder / "a-bomb.json.gz").read_bytes()) < 64 * 1024

    done = cli("ingest", "files", str(folder), "--db", str(db), env={"TRAILSCAN_MAX_INPUT_BYTES": str(1 << 20)})

    assert done.returncode == 2, done.stderr
    one_line(done.stderr, str(folder / "a-bomb.json.gz"), "more than 1 MiB of JSON", "TRAILSCAN_MAX_INPUT_BYTES")
    with Store.open(db, read_only=True) as store:
        assert {row[0] for row in store.query("SELECT event_id FROM events")[1]} == {f"good-{i}" for i in range(20)}
    [(source, _, _, _, _, status, detail)] = coverage_rows(db)
    assert (source, status) == ("files", PARTIAL) and "1 unreadable" in detail


def test_the_inflater_counts_what_it_inflates_never_what_the_trailer_claims():
    """The one decompressor: it stops at the limit whatever the gzip trailer says (here it
    says 100 bytes) and however many members the stream has; a lie under the limit fails
    the file as corrupt (zlib checks every member's length)."""
    from trailscan.store import _Unreadable, inflate

    class Counting(io.RawIOBase):
        written = 0

        def write(self, data) -> int:
            self.written += len(data)
            return len(data)

    for data in (bomb(8 << 20, lie=100), bomb(8 << 20, members=5, lie=100), bomb(8 << 20)):
        sink = Counting()
        with pytest.raises(_Unreadable, match="more than 1 MiB of JSON"):
            inflate(io.BytesIO(data), sink, 1 << 20)
        assert sink.written <= 1 << 20
    with pytest.raises(_Unreadable, match="corrupt gzip .*incorrect length check"):
        inflate(io.BytesIO(bomb(64 << 10, lie=100)), Counting(), 1 << 20)
    # A stream of several members is read whole, as gzip allows.
    body = json.dumps({"Records": [record(f"m-{i}") for i in range(300)]}).encode()
    members = b"".join(gzip.compress(body[i : i + 1000]) for i in range(0, len(body), 1000))
    out = io.BytesIO()
    assert inflate(io.BytesIO(members + b"\0" * 8), out, 1 << 20) == len(body) and out.getvalue() == body
    with pytest.raises(_Unreadable, match="data after the end"):
        inflate(io.BytesIO(members + b"junk"), io.BytesIO(), 1 << 20)


@pytest.fixture(scope="module")
def moto():
    from tests.support.moto_server import MotoServer

    with MotoServer() as server:
        yield server


S3_START = datetime(2026, 1, 20, tzinfo=UTC)
S3_WINDOW = Window(S3_START, S3_START + timedelta(hours=6))


def plant(moto, bucket: str, objects: dict[str, bytes]) -> None:
    s3 = moto.session(REGION).client("s3")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def log_key(minute: int, tag: str) -> str:
    when = S3_START + timedelta(minutes=minute)
    return (
        f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{when:%Y/%m/%d}/"
        f"{ACCOUNT}_CloudTrail_{REGION}_{when:%Y%m%dT%H%M}Z_{tag}.json.gz"
    )


def at(minute: int) -> str:
    return iso(S3_START + timedelta(minutes=minute))


@pytest.mark.parametrize("downloader", ["crt", "boto3"])
def test_a_gzip_bomb_in_the_bucket_makes_its_region_partial_and_the_rest_is_stored(
    moto, monkeypatch, downloader
):
    from trailscan.sources.s3 import ingest_s3

    bucket = f"bomb-{uuid.uuid4().hex[:12]}"
    good = {
        log_key(10 * n, f"good{n}"): [refused(f"s3-{n}-{i}", eventTime=at(10 * n)) for i in range(5)]
        for n in range(1, 6)
    }
    bomb_key = log_key(33, "bomb")
    plant(moto, bucket, {**{key: delivery(records) for key, records in good.items()}, bomb_key: bomb(8 << 20)})
    monkeypatch.setenv("TRAILSCAN_MAX_INPUT_BYTES", str(1 << 20))

    with Store.open(":memory:") as store:
        result, [coverage] = ingest_s3(
            store, moto.session(REGION), window=S3_WINDOW, bucket=bucket, downloader=downloader
        )
        stored = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
        remembered = set(store.ingested_objects("s3"))
    assert [str(p) for p in result.problems] == [
        f"s3://{bucket}/{bomb_key}: more than 1 MiB of JSON once decompressed: not read "
        "(the limit is TRAILSCAN_MAX_INPUT_BYTES)"
    ]
    assert coverage.status == PARTIAL and "1 unreadable" in coverage.detail
    assert stored == {r["eventID"] for records in good.values() for r in records}
    assert f"s3://{bucket}/{bomb_key}" not in remembered, "the next run tries it again"


# -- 7. FIFOs ----------------------------------------------------------------------------------------------


def test_a_fifo_in_a_folder_is_named_and_the_good_file_beside_it_stored(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.json")
    os.mkfifo(folder / "named-explicitly.json.gz")
    (folder / "good.json.gz").write_bytes(delivery([record("fifo-neighbour")]))
    db = tmp_path / "s.duckdb"

    done = cli("ingest", "files", str(folder), str(folder / "named-explicitly.json.gz"), "--db", str(db))

    assert done.returncode == 2, done.stderr
    for name in ("pipe.json", "named-explicitly.json.gz"):
        one_line(done.stderr, str(folder / name), "a FIFO, not a regular file: not read")
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT event_id FROM events")[1] == [("fifo-neighbour",)]


def test_a_fifo_given_as_the_store_is_one_line_and_exit_2(tmp_path):
    os.mkfifo(tmp_path / "store.duckdb")
    (tmp_path / "good.json").write_text(json.dumps(record("never-read")))
    for args in (["ingest", "files", str(tmp_path / "good.json")], ["sql", "SELECT 1"]):
        done = cli(*args, "--db", str(tmp_path / "store.duckdb"))
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1, done.stderr
        one_line(done.stderr, f"the store {tmp_path / 'store.duckdb'} is a FIFO, not a DuckDB file")


# -- 9. read-only SQL: bounded memory, no spill, a capped result ----------------------------------------


def test_read_only_sql_streams_and_stops_at_the_row_cap(tmp_path):
    """Sixty million rows asked for, the process allowed 3 GiB of address space: the
    first 1,000 are printed and one line says where the cap is and how to raise it."""
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    done = cli(
        "sql", "SELECT * FROM range(60000000)", "--format", "csv", "--db", str(db),
        env={"TRAILSCAN_SQL_MAX_ROWS": "1000"}, limit_memory=3 << 30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["range", *(str(n) for n in range(1000))]
    assert done.stderr.count("\n") == 1
    one_line(done.stderr, "only the first 1000 rows are shown", "TRAILSCAN_SQL_MAX_ROWS")


def test_read_only_sql_never_spills_to_disk(tmp_path):
    """A read-only query that outgrows the memory limit fails with one line, instead of
    writing gigabytes beside the store."""
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    with Store.open(db, read_only=True, memory_limit="64MB") as store:
        store.confine()
        with pytest.raises(QueryError, match="Out of Memory") as caught:
            store.query_rows("SELECT md5(range::VARCHAR) AS m FROM range(20000000) ORDER BY m")
        assert "\n" not in str(caught.value)
        assert store.query_rows("SELECT 42 AS answer").rows == [(42,)]
    spilled = Path(f"{db}.tmp")
    assert not spilled.exists() or not any(spilled.iterdir())


# -- 10. lone surrogates ------------------------------------------------------------------------------------


LONE_ESCAPES = {
    "high": ("\\ud800", "\ufffd"),
    "low": ("\\udc00 then text", "\ufffd then text"),
    "reversed pair": ("\\udc00\\ud800", "\ufffd\ufffd"),
    "escaped backslash": ("C:\\\\ud800", "C:\\ud800"),  # not an escape: left as it is
    "valid pair": ("\\ud83d\\ude00", "\U0001F600"),
}


@pytest.mark.parametrize("layout", ["delivery.json.gz", "delivery.json", "lines.ndjson"])
def test_a_lone_surrogate_escape_costs_one_character_not_the_file(tmp_path, store, layout):
    """99 refused calls and one whose user agent holds a ``\\ud800`` escape: DuckDB refuses
    the escape, and the whole file was lost; now it reads as U+FFFD, as in memory."""
    records = [refused(f"call-{i}") for i in range(99)]
    texts = [json.dumps(r) for r in records]
    for n, (escape, _) in enumerate(LONE_ESCAPES.values()):
        texts.append(json.dumps(refused(f"odd-{n}", userAgent="PLACEHOLDER")).replace("PLACEHOLDER", escape))
    if layout == "lines.ndjson":
        data = "\n".join(texts).encode()
    else:
        data = ('{"Records":[' + ",".join(texts) + "]}").encode()
    (tmp_path / layout).write_bytes(gzip.compress(data) if layout.endswith(".gz") else data)

    result, coverage = ingest_files(store, [str(tmp_path)])

    assert result.problems == [] and coverage.status == COMPLETE
    assert result.new_events == 99 + len(LONE_ESCAPES)
    agents = dict(store.query("SELECT event_id, user_agent FROM events WHERE event_id LIKE 'odd-%'")[1])
    assert agents == {f"odd-{n}": read for n, (_, read) in enumerate(LONE_ESCAPES.values())}


def test_a_lone_surrogate_escape_in_a_lookup_events_record(store):
    """LookupEvents hands each record over as JSON text: the same escape, the same reading."""
    text = json.dumps(refused("lookup-1", userAgent="X")).replace('"X"', '"\\ud800 sdk"')
    result = store.ingest_documents([text, json.dumps(refused("lookup-2"))], origin="lookup")
    assert result.problems == [] and result.new_events == 2
    assert store.query("SELECT user_agent FROM events WHERE event_id = 'lookup-1'")[1] == [("\ufffd sdk",)]


# -- 11. event times ------------------------------------------------------------------------------------------


USABLE_TIMES = {
    "2026-11-27T10:00:00Z": "2026-11-27T10:00:00+00:00",
    "2026-11-27T10:00:00.123456Z": "2026-11-27T10:00:00.123456+00:00",
    "2026-11-27T10:00:00.123456789Z": "2026-11-27T10:00:00.123456+00:00",
    "2026-11-27T10:00:00+00:00": "2026-11-27T10:00:00+00:00",
    "2026-11-27T12:00:00+02:00": "2026-11-27T10:00:00+00:00",
    "2016-12-31T23:59:60Z": "2016-12-31T23:59:59.999999+00:00",  # a leap second: clamped, same day
    "2016-12-31T23:59:60.5Z": "2016-12-31T23:59:59.999999+00:00",
    "1970-01-01T00:00:00Z": "1970-01-01T00:00:00+00:00",
    "9998-12-31T23:59:59Z": "9998-12-31T23:59:59+00:00",
}
UNUSABLE_TIMES = {
    "missing": None,
    "garbage": "yesterday at noon",
    "number": 1764237600,
    "object": {"t": "2026-11-27T10:00:00Z"},
    "no such day": "2026-02-30T10:00:00Z",
    "no offset": "2026-11-27T10:00:00",
    "date only": "2026-11-27",
    "year 1": "0001-01-01T00:00:00Z",
    "year 9999": "9999-12-31T23:59:59Z",
    "year 10000 once in UTC": "9999-12-31T23:59:59-05:00",
    "year 10000": "10000-01-01T00:00:00Z",
}


def timed_records() -> list[dict]:
    records = [record(f"usable-{n}", eventTime=text) for n, text in enumerate(USABLE_TIMES)]
    for name, value in UNUSABLE_TIMES.items():
        rec = record(f"unusable-{name.replace(' ', '-')}", eventTime=value)
        if value is None:
            del rec["eventTime"]
        records.append(rec)
    return records


def test_event_times_aws_writes_are_read_and_the_rest_counted(tmp_path):
    """ISO 8601 with Z, fractions or an offset is read, a leap second clamped; every other
    eventTime leaves event_time NULL and is counted in the coverage (skipped, and said in
    its detail) — never silently outside every window.  Nothing crashes on a far date, and
    no year prints as ``1-01-01``."""
    (tmp_path / "times.json").write_text(json.dumps({"Records": timed_records()}))
    db = tmp_path / "s.duckdb"
    done = cli("ingest", "files", str(tmp_path / "times.json"), "--db", str(db))
    assert done.returncode == 0, done.stderr

    with Store.open(db, read_only=True) as store:
        times = dict(store.query("SELECT event_id, event_time FROM events")[1])
    assert {f"usable-{n}": times[f"usable-{n}"].isoformat() for n in range(len(USABLE_TIMES))} == {
        f"usable-{n}": read for n, read in enumerate(USABLE_TIMES.values())
    }
    assert {event_id for event_id, moment in times.items() if moment is None} == {
        f"unusable-{name.replace(' ', '-')}" for name in UNUSABLE_TIMES
    }
    [(_, _, _, events, skipped, status, detail)] = coverage_rows(db)
    assert (events, skipped) == (len(USABLE_TIMES) + len(UNUSABLE_TIMES), len(UNUSABLE_TIMES))
    assert f"{len(UNUSABLE_TIMES)} records without a usable eventTime" in detail

    for args in (["sql", "SELECT event_id, event_time, raw FROM events"], ["findings"],
                 ["findings", "--since", "1970-01-01", "--format", "json"]):
        shown = cli(*args, "--db", str(db))
        assert "Traceback" not in shown.stderr and shown.returncode in (0, 3), shown.stderr
        assert not re.search(r"(?<![\d-])1-01-01", shown.stdout)


def test_records_without_a_usable_time_are_counted_in_their_region(moto):
    from trailscan.sources.s3 import ingest_s3

    bucket = f"times-{uuid.uuid4().hex[:12]}"
    key = log_key(20, "times")
    records = [refused(f"in-window-{i}", eventTime=at(15)) for i in range(3)]
    records += [refused("leap", eventTime=at(15)[:-3] + "60Z"), refused("no-time", eventTime="soon")]
    plant(moto, bucket, {key: delivery(records)})
    with Store.open(":memory:") as store:
        result, [coverage] = ingest_s3(store, moto.session(REGION), window=S3_WINDOW, bucket=bucket)
        stored = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    assert stored == {"in-window-0", "in-window-1", "in-window-2", "leap"}
    assert result.untimed == {f"s3://{bucket}/{key}": 1}
    assert coverage.skipped == 1 and "1 records without a usable eventTime" in coverage.detail


# -- 12. one eventID, two contents ------------------------------------------------------------------------


def test_a_conflicting_duplicate_is_counted_and_the_first_kept_whatever_the_order(tmp_path):
    """The same eventID as a success in one export and a refused call in another: the copy
    from the input whose name sorts first is kept, in every order of reading, and the other
    is counted in the coverage.  Exact copies (a .json beside its .json.gz) are no conflict."""
    ok = record("same-id")
    denied = refused("same-id")
    (tmp_path / "a.json").write_text(json.dumps({"Records": [ok, record("other")]}))
    (tmp_path / "b.json").write_text(json.dumps({"Records": [denied]}))
    (tmp_path / "b.json.gz").write_bytes(delivery([denied]))
    (tmp_path / "c.json").write_text(json.dumps({"Records": [refused("twice"), refused("twice", userAgent="x")]}))
    kept = []
    for order in (sorted, lambda paths: sorted(paths, reverse=True)):
        with Store.open(":memory:") as store:
            result, coverage = ingest_files(store, [str(p) for p in order(tmp_path.iterdir())])
            kept.append(store.query("SELECT event_id, raw::VARCHAR FROM events ORDER BY event_id")[1])
            assert result.conflicts == {str(tmp_path / "b.json"): 1, str(tmp_path / "b.json.gz"): 1,
                                        str(tmp_path / "c.json"): 1}
            assert "3 records dropped: their eventID was kept with other content" in coverage.detail
    assert kept[0] == kept[1]
    assert orjson.loads(dict(kept[0])["same-id"]) == ok
    within_one_file = [refused("twice"), refused("twice", userAgent="x")]
    assert orjson.loads(dict(kept[0])["twice"]) == min(within_one_file, key=lambda r: json.dumps(r, separators=(",", ":")))

    # A later batch repeating a stored eventID with other content: counted, the stored one kept.
    with Store.open(":memory:") as store:
        ingest_files(store, [str(tmp_path / "a.json")])
        result, coverage = ingest_files(store, [str(tmp_path / "b.json"), str(tmp_path / "a.json")])
        assert result.conflicts == {str(tmp_path / "b.json"): 1} and result.new_events == 0
        assert orjson.loads(store.query("SELECT raw FROM events WHERE event_id = 'same-id'")[1][0][0]) == ok


# -- 13. the store's schema version ------------------------------------------------------------------------


def tables(db: Path) -> dict[str, str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    finally:
        con.close()


def test_a_store_records_its_schema_version(tmp_path):
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
    con.close()


def test_a_store_from_a_newer_trailscan_is_never_changed(tmp_path):
    """A newer layout — here ``events`` a table again, with a column this trailscan's
    migration of old stores would drop — is refused for writing, with one line; nothing
    in it changes.  Reading it is still allowed."""
    db = tmp_path / "newer.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION + 1)])
    con.execute("CREATE TABLE events (event_id VARCHAR, request_parameters JSON)")
    con.execute("""INSERT INTO events VALUES ('kept', '{"bucketName": "b"}')""")
    con.close()
    before = tables(db)
    message = f"the store {db} was written by a newer trailscan (schema {SCHEMA_VERSION + 1}); upgrade trailscan"

    with pytest.raises(NewerStoreError, match=re.escape(message)):
        Store.open(db)
    (tmp_path / "one.json").write_text(json.dumps(record("new")))
    done = cli("ingest", "files", str(tmp_path / "one.json"), "--db", str(db))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    one_line(done.stderr, message)

    assert tables(db) == before
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT event_id, request_parameters FROM events")[1] == [("kept", '{"bucketName": "b"}')]


def test_a_store_that_cannot_be_brought_forward_is_left_as_it_was(tmp_path):
    """An old store (``events`` a table) missing a column the current layout needs: the
    migration fails, and fails whole — no column dropped, no table renamed or added."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE events (event_id VARCHAR NOT NULL, event_time TIMESTAMPTZ, raw JSON, "
        "request_parameters JSON GENERATED ALWAYS AS (json_extract(raw, '$.requestParameters')) VIRTUAL)"
    )
    con.execute("""INSERT INTO events (event_id, raw) VALUES ('old', '{"requestParameters": {"a": 1}}')""")
    con.close()
    before = tables(db)

    with pytest.raises(StoreError, match=f"cannot prepare the store {re.escape(str(db))}"):
        Store.open(db)

    assert tables(db) == before
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT event_id, request_parameters FROM events").fetchall() == [("old", '{"a":1}')]
    con.close()


# -- 15. SIGTERM during ingest s3 ---------------------------------------------------------------------------

# trailscan, with every downloaded object stored in a transaction of its own (as in
# test_reliability): the run is long enough, and committed enough, to be stopped midway.
ONE_OBJECT_PER_BATCH = (
    "import sys, trailscan.sources.s3 as s3; s3.BATCH_BYTES = 1; "
    "from trailscan.cli import main; main(prog_name='trailscan')"
)


def signal_at_progress(command: list[str], *, label: str, at_least: int, env: dict[str, str], sig: int,
                       timeout: float = 120) -> tuple[int, str]:
    """Run ``command`` with stderr on a pseudo-terminal, send ``sig`` once its progress bar
    ``label`` shows ``at_least`` done; its exit code and all it wrote on the terminal."""
    import fcntl
    import pty
    import termios

    from tests.test_reliability import ANSI

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    process = subprocess.Popen(
        command, env={**os.environ, **env, "TERM": "xterm", "COLUMNS": "200"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, start_new_session=True,
    )
    os.close(slave)
    pattern = re.compile(re.escape(label) + r"[^\r\n]*?(\d+)/(?:\d+|\?)")
    text, sent = "", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            chunk = b""
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # the terminal closed: the process has ended
                    chunk = b""
                text += ANSI.sub("", chunk.decode("utf-8", "replace"))
                counts = [int(n) for n in pattern.findall(text[-4000:])]
                if not sent and counts and max(counts) >= at_least:
                    process.send_signal(sig)
                    sent = True
            if not chunk and process.poll() is not None:
                break
        assert sent, f"the process ended before its {label!r} bar reached {at_least}: {text[-600:]!r}"
        return process.wait(timeout=60), text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


@pytest.mark.parametrize("sig, raised", [(signal.SIGTERM, "Terminated"), (signal.SIGINT, "KeyboardInterrupt")])
def test_a_signal_during_a_duckdb_statement_is_the_interruption_not_a_runtime_error(sig, raised):
    """DuckDB cancels a statement when a signal arrives and raises RuntimeError("Query
    interrupted") in place of the handler's exception, Ctrl-C's included."""
    import threading

    from trailscan.interrupt import sigterm_as_interrupt

    con = duckdb.connect()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), sig))
    with pytest.raises(KeyboardInterrupt) as caught:
        with sigterm_as_interrupt():
            timer.start()
            con.execute("SELECT count(*) FROM range(100000000000)").fetchall()
    timer.join()
    assert type(caught.value).__name__ == raised
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_during_ingest_s3_is_handled_like_ctrl_c(moto, tmp_path):
    """A CronJob's deadline: SIGTERM mid-download.  The downloads are removed, one line
    says so, the batches stored stay stored, the coverage says ``partial``, and the next
    run completes the rest."""
    bucket = f"sigterm-{uuid.uuid4().hex[:12]}"
    rng = random.Random(15)
    planted = list(healthy_traffic(rng, count=3000, start=S3_WINDOW.start, end=S3_WINDOW.end,
                                   accounts=[ACCOUNT], regions=[REGION]))
    objects = dict(delivery_files(planted, rng, per_file=60))
    plant(moto, bucket, objects)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    db = tmp_path / "s.duckdb"
    args = ["ingest", "s3", "--bucket", bucket, "--since", iso(S3_WINDOW.start), "--until", iso(S3_WINDOW.end),
            "--workers", "2", "--db", str(db)]
    env = {**moto.environ(REGION), "TMPDIR": str(temporary)}

    code, terminal = signal_at_progress([sys.executable, "-c", ONE_OBJECT_PER_BATCH, *args],
                                        label="downloading objects", at_least=10, env=env, sig=signal.SIGTERM)

    assert code == 143, terminal[-1000:]  # 128 + SIGTERM, as a shell reports a terminated job
    assert "Traceback" not in terminal
    assert "trailscan: terminated (SIGTERM); everything stored so far is kept" in terminal
    assert list(temporary.iterdir()) == [], "no download is left behind"
    with Store.open(db, read_only=True) as store:
        stored = store.count_events()
        remembered = len(store.ingested_objects("s3"))
    assert 0 < stored < len(planted) and 0 < remembered < len(objects)
    [(source, account, region, _, _, status, detail)] = coverage_rows(db)
    assert (source, account, region, status) == ("s3", ACCOUNT, REGION, PARTIAL)
    assert detail.startswith("terminated (SIGTERM) before the end: ")

    done = run_cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert f"from {len(objects) - remembered} objects" in done.stderr
    with Store.open(db, read_only=True) as store:
        assert store.count_events() == len({r["eventID"] for r in planted})
