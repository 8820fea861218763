"""The files source and the store, on the real corpus and on every shape SPEC §4 names."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import run_cli
from trailscan.generate import RoleSession, api_call
from trailscan.sources.files import expand_paths, ingest_files
from trailscan.store import Store


def record(event_id: str | None = "11111111-2222-3333-4444-555555555555", **extra) -> dict:
    """A ListBuckets call (``trailscan.generate``), ``extra`` fields over it; no eventID when
    ``event_id`` is None."""
    when = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    app = RoleSession("111122223333", "app", "session", "ASIAEXAMPLEEXAMPLE01")
    rec = api_call(random.Random(event_id or 0), when=when, region="eu-west-1", account="111122223333",
                   identity=app.user_identity(when - timedelta(minutes=5)), event_source="s3.amazonaws.com",
                   event_name="ListBuckets", event_id=event_id)
    if not event_id:
        del rec["eventID"]
    rec.update(extra)
    return rec


# -- the real corpus -------------------------------------------------------------------


def test_real_corpus_loads_every_record(real_store):
    with Store.open(real_store, read_only=True) as store:
        (total, distinct, with_id, hashed, unauthorized, denied) = store.query(
            """SELECT count(*), count(DISTINCT event_id),
                      count(*) FILTER (WHERE raw ->> 'eventID' IS NOT NULL),
                      count(*) FILTER (WHERE raw ->> 'eventID' IS NULL),
                      count(*) FILTER (WHERE error_code = 'Client.UnauthorizedOperation'),
                      count(*) FILTER (WHERE error_code = 'AccessDenied')
               FROM events"""
        )[1][0]
    assert (total, distinct) == (3250, 3250)
    assert (with_id, hashed) == (3243, 7)
    assert (unauthorized, denied) == (90, 23)


def test_ingesting_the_corpus_again_changes_nothing(real_data, real_store, tmp_path):
    copy = tmp_path / "again.duckdb"
    copy.write_bytes(Path(real_store).read_bytes())
    with Store.open(copy) as store:
        before = store.query("SELECT event_id, raw FROM events ORDER BY event_id")[1]
        result, coverage = ingest_files(store, [str(real_data)])
        after = store.query("SELECT event_id, raw FROM events ORDER BY event_id")[1]
    assert result.records == 3258 and result.new_events == 0
    assert before == after
    assert coverage.status == "complete"


def test_real_records_are_normalised(real_store):
    with Store.open(real_store, read_only=True) as store:
        row = store.query(
            """SELECT event_time, account_id, identity_type, user_name, identity_provider,
                      request_parameters ->> 'roleArn', tls_host, read_only
               FROM events WHERE event_id = '899f0a00-4e04-4fab-bb35-0297ed266f62'"""
        )[1][0]
    assert row[0].isoformat() == "2023-11-08T15:09:08+00:00"
    assert row[1:] == (
        "100000000002",
        "WebIdentityUser",
        "system:serviceaccount:argo:awf-aws-executor-plugin",
        "arn:aws:iam::100000000002:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/A8242F25BFBB8F98F5321B2AE63C8B5C",
        "arn:aws:iam::100000000002:role/sm-pipelines-k8s-awf-aws-executor-plugin",
        "sts.us-west-2.amazonaws.com",
        True,
    )


def test_real_credentials_never_reach_the_store(real_store):
    with Store.open(real_store, read_only=True) as store:
        raws = [row[0] for row in store.query("SELECT raw::VARCHAR FROM events")[1]]
    secret = re.compile(r'"(sessionToken|token|secretAccessKey)":"(?!REDACTED")')
    assert [raw for raw in raws if secret.search(raw)] == []
    redacted = sum('"sessionToken":"REDACTED"' in raw for raw in raws)
    assert redacted > 0  # the corpus has AssumeRole responses: the redaction really ran


# -- every shape --------------------------------------------------------------------------


def write(path: Path, payload, *, compress: bool = False, pretty: bool = False) -> Path:
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=2 if pretty else None)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def ids(n: int, prefix: str) -> list[str]:
    return [f"{prefix}-0000-0000-0000-{i:012d}" for i in range(n)]


def test_every_shape_loads(tmp_path, store):
    rec = lambda i: record(i)  # noqa: E731
    a, b, c, d, e, f, g, h, pretty = (ids(2, p) for p in "abcdefghp")
    write(tmp_path / "delivery.json", {"Records": [rec(i) for i in a]})
    write(tmp_path / "delivery.json.gz", {"Records": [rec(i) for i in b]}, compress=True)
    # Among files of one line each, as CloudTrail writes them: read another way.
    write(
        tmp_path / "delivery-pretty.json.gz", {"Records": [rec(i) for i in pretty]}, compress=True, pretty=True
    )
    write(tmp_path / "array.json", [rec(i) for i in c])
    write(tmp_path / "single.json", rec(d[0]), pretty=True)
    write(tmp_path / "single-gz.json.gz", rec(d[1]), compress=True)
    write(tmp_path / "lines.ndjson", "\n".join(json.dumps(rec(i)) for i in e) + "\n")
    write(
        tmp_path / "lookup.json",
        {"Events": [{"EventId": i, "CloudTrailEvent": json.dumps(rec(i))} for i in f], "NextToken": "x"},
    )
    write(tmp_path / "eventbridge.json", {"version": "0", "detail-type": "AWS API Call via CloudTrail", "detail": rec(g[0])})
    write(tmp_path / "eventbridge-lines.json", "\n".join(
        json.dumps({"detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "detail": rec(i)}) for i in g[1:]
    ))
    write(tmp_path / "lookup-array.json.gz", [{"CloudTrailEvent": json.dumps(rec(i))} for i in h], compress=True)
    digest = tmp_path / "111122223333_CloudTrail-Digest_eu-west-1_trail_eu-west-1_20261127T100000Z.json.gz"
    write(digest, {"awsAccountId": "111122223333", "digestStartTime": "2026-11-27T09:00:00Z", "logFiles": []}, compress=True)

    result, coverage = ingest_files(store, [str(tmp_path)])

    assert result.problems == []
    assert result.digests == 1
    stored = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    expected = set(a + b + c + d + e + f + g + h + pretty)
    assert stored == expected
    assert coverage.status == "complete"


def test_gzip_without_gz_suffix_and_digest_by_content(tmp_path, store):
    write(tmp_path / "renamed.json", {"Records": [record("r-1")]}, compress=True)
    write(tmp_path / "digest-in-disguise.json", {"digestStartTime": "x", "logFiles": [{"s3Object": "k"}]})
    result, _ = ingest_files(store, [str(tmp_path)])
    assert result.problems == []
    assert result.digests == 1
    assert store.count_events() == 1


@pytest.mark.parametrize("secret", [None, {"token": {"value": "PLANTEDnestedTOKEN"}}], ids=["plain", "nested-secret"])
def test_record_without_event_id_gets_a_stable_hash_across_shapes(tmp_path, store, secret):
    # A nested secret is redacted after staging: the key hashes the redacted text all the same.
    bare = record(event_id=None, **({"requestParameters": secret} if secret else {}))
    write(tmp_path / "pretty.json", bare, pretty=True)
    write(tmp_path / "delivery.json.gz", {"Records": [bare]}, compress=True)
    ingest_files(store, [str(tmp_path / "pretty.json")])
    first = store.query("SELECT event_id FROM events")[1]
    ingest_files(store, [str(tmp_path / "delivery.json.gz")])
    assert store.query("SELECT event_id FROM events")[1] == first
    assert len(first[0][0]) == 32
    raw = store.query("SELECT raw FROM events")[1][0][0]
    assert "PLANTED" not in raw and first[0][0] == hashlib.md5(raw.encode()).hexdigest()


def test_secrets_are_removed_before_storing(tmp_path, store):
    rec = record(
        "s-1",
        eventName="AssumeRole",
        requestParameters={"roleArn": "arn:aws:iam::111122223333:role/x", "token": "tok-123"},
        responseElements={
            "credentials": {
                "accessKeyId": "ASIAKEEPME0000000001",
                "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLESECRET",
                "secretAccessKey": "wJalrXUtnFEMI/K7MDENG",
                "expiration": "Nov 28, 2026, 11:00:00 AM",
            }
        },
    )
    write(tmp_path / "secret.json", {"Records": [rec]})
    ingest_files(store, [str(tmp_path)])
    dump = json.dumps(store.query("SELECT * FROM events")[1], default=str)
    for secret in ("tok-123", "IQoJb3JpZ2luX2VjEXAMPLESECRET", "wJalrXUtnFEMI"):
        assert secret not in dump
    kept = store.query("SELECT response_elements -> 'credentials' ->> 'accessKeyId' FROM events")[1][0][0]
    assert kept == "ASIAKEEPME0000000001"  # the key id links sessions to calls: it is no secret


def test_bad_files_are_named_and_the_good_one_is_stored(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write(folder / "good.json.gz", {"Records": [record("good-1")]}, compress=True)
    full = gzip.compress(json.dumps({"Records": [record(f"t-{i}") for i in range(200)]}).encode())
    (folder / "truncated.json.gz").write_bytes(full[: len(full) // 2])
    (folder / "random.json").write_bytes(os.urandom(2048))
    write(folder / "not-cloudtrail.json", {"hello": "world", "items": [1, 2, 3]})
    (folder / "empty.json").write_bytes(b"")
    write(folder / "111122223333_CloudTrail-Digest_eu-west-1_x.json.gz", {"digestStartTime": "x", "logFiles": []}, compress=True)
    db = tmp_path / "s.duckdb"

    done = run_cli("ingest", "files", str(folder), "--db", str(db))

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    for name, why in [
        ("truncated.json.gz", "gzip"),
        ("random.json", "JSON"),
        ("not-cloudtrail.json", "not CloudTrail"),
        ("empty.json", "empty"),
    ]:
        assert any(name in line and why in line for line in lines), (name, lines)
    assert not any("Digest" in line for line in lines if line.startswith("trailscan: /"))
    assert "1 digest files skipped" in done.stderr
    with Store.open(db, read_only=True) as store:
        assert store.query("SELECT event_id FROM events")[1] == [("good-1",)]


@pytest.mark.parametrize("text", ["[]", " [ ]\n", '{"Records": []}', '{"Events": []}'])
def test_a_file_holding_no_records_is_read_not_reported(tmp_path, text):
    """An hour without activity is an empty container, whatever its shape: nothing to
    store, and nothing wrong with the file."""
    (tmp_path / "quiet.json").write_text(text)
    write(tmp_path / "busy.json", [record("busy-1")])
    with Store.open(":memory:") as store:
        result, coverage = ingest_files(store, [str(tmp_path)])
        assert result.problems == [] and coverage.status == "complete"
        assert (result.files, result.records, result.new_events) == (2, 1, 1)


def test_missing_path_is_one_line_exit_2(tmp_path):
    done = run_cli("ingest", "files", str(tmp_path / "nope"), "--db", str(tmp_path / "s.duckdb"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "nope" in done.stderr


def test_globs_and_explicit_files(tmp_path):
    for name in ("a.json", "b.json", "c.txt"):
        write(tmp_path / name, {"Records": [record(f"g-{name}")]})
    paths, problems = expand_paths([str(tmp_path / "*.json"), str(tmp_path / "c.txt")])
    assert [p.name for p in paths] == ["a.json", "b.json", "c.txt"] and problems == []
    paths, _ = expand_paths([str(tmp_path)])
    assert [p.name for p in paths] == ["a.json", "b.json"]  # .txt is passed over inside a folder


def test_batches_commit_one_by_one_and_an_interrupted_ingest_resumes(tmp_path):
    for n in range(6):
        write(tmp_path / f"f{n}.json", {"Records": [record(f"b-{n}-{i}") for i in range(10)]})
    db = tmp_path / "s.duckdb"
    calls = []

    def interrupt_after_two(label, done, total):
        calls.append(done)
        if len(calls) == 3:  # the first report is the start, then one per batch
            raise KeyboardInterrupt

    with Store.open(db) as store, pytest.raises(KeyboardInterrupt):
        ingest_files(store, [str(tmp_path)], progress=interrupt_after_two, batch_bytes=1)
    with Store.open(db) as store:
        assert store.count_events() == 20  # two committed batches, nothing half-written
        result, _ = ingest_files(store, [str(tmp_path)])
        assert result.new_events == 40
        assert store.query("SELECT count(*), count(DISTINCT event_id) FROM events")[1][0] == (60, 60)


def test_the_store_is_busy_while_another_process_writes(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(db)!r}); print('ok', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        done = run_cli("sql", "select 1", "--db", str(db), "--write", env={"TRAILSCAN_LOCK_WAIT": "0.5"})
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2
    assert "in use by another process" in done.stderr and "Traceback" not in done.stderr


def test_documents_with_the_same_name_are_all_stored(store):
    docs = [json.dumps(record(f"d-{i}")) for i in range(3)]
    result = store.ingest_documents(docs, origin="lookup", names=["page"] * 3)
    assert result.new_events == 3 and result.problems == []


def test_files_staged_over_several_calls_are_stored_in_one_commit(tmp_path, store):
    write(tmp_path / "a.json.gz", {"Records": [record("s-1"), record("s-2")]}, compress=True)
    write(tmp_path / "b.json", {"Records": [record("s-3")]})
    (tmp_path / "c.json.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip at all")
    store.stage_files([tmp_path / "a.json.gz"], names=["s3://bucket/a.json.gz"])
    store.stage_files([tmp_path / "b.json", tmp_path / "c.json.gz"])
    assert store.count_events() == 0  # staged, not stored

    result = store.commit_staged()

    assert (result.files, result.records, result.new_events) == (3, 3, 3)
    assert [problem.name for problem in result.problems] == [str(tmp_path / "c.json.gz")]
    origins = dict(store.query("SELECT event_id, origin FROM events")[1])
    assert origins == {
        "s-1": "s3://bucket/a.json.gz",
        "s-2": "s3://bucket/a.json.gz",
        "s-3": str(tmp_path / "b.json"),
    }


def test_a_discarded_batch_stores_nothing(tmp_path, store):
    write(tmp_path / "a.json", {"Records": [record("x-1")]})
    store.stage_files([tmp_path / "a.json"])
    store.discard_staged()
    write(tmp_path / "b.json", {"Records": [record("x-2")]})

    result = store.ingest_files([tmp_path / "b.json"])

    assert (result.files, result.new_events) == (1, 1)
    assert store.query("SELECT event_id FROM events")[1] == [("x-2",)]


def test_gzip_header_with_corrupt_data_is_named_not_a_crash(tmp_path):
    (tmp_path / "bad.json.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip at all")
    write(tmp_path / "good.json", {"Records": [record("ok-1")]})
    done = run_cli("ingest", "files", str(tmp_path), "--db", str(tmp_path / "s.duckdb"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert any("bad.json.gz" in line and "gzip" in line for line in done.stderr.splitlines())
    with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
        assert store.count_events() == 1


def test_a_store_written_before_events_became_a_view_is_brought_forward(tmp_path):
    """Stores of earlier versions hold `events` as a table whose JSON columns were VIRTUAL:
    opening one for writing keeps every row, under the view, and ingesting goes on."""
    import duckdb

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    text = ", ".join(f"{name} VARCHAR" for name in (
        "event_version", "event_source", "aws_region", "account_id", "source_ip", "user_agent",
        "error_code", "error_message", "event_category", "event_type", "identity_type", "identity_arn",
        "principal_id", "user_name", "access_key_id", "session_issuer_arn", "identity_provider",
    ))
    con.execute(
        f"""CREATE TABLE events (
               event_id VARCHAR NOT NULL, event_time TIMESTAMPTZ, event_name VARCHAR, read_only BOOLEAN, {text},
               request_parameters JSON GENERATED ALWAYS AS (json_extract(raw, '$.requestParameters')) VIRTUAL,
               response_elements JSON GENERATED ALWAYS AS (json_extract(raw, '$.responseElements')) VIRTUAL,
               resources JSON GENERATED ALWAYS AS (json_extract(raw, '$.resources')) VIRTUAL,
               tls_host VARCHAR, raw JSON, origin VARCHAR, ingested_at TIMESTAMPTZ)"""
    )
    old = record("old-1", requestParameters={"bucketName": "b"})
    con.execute(
        "INSERT INTO events (event_id, event_name, raw) VALUES ('old-1', ?, ?)", [old["eventName"], json.dumps(old)]
    )
    con.close()
    write(tmp_path / "new.json", {"Records": [record("new-1"), record("old-1")]})

    with Store.open(db) as store:
        kinds = dict(store.query("SELECT table_name, table_type FROM information_schema.tables")[1])
        assert kinds["events"] == "VIEW" and kinds["event_rows"] == "BASE TABLE"
        assert store.query("SELECT request_parameters FROM events WHERE event_id = 'old-1'")[1] == [
            (json.dumps(old["requestParameters"], separators=(",", ":")),)
        ]
        result, _ = ingest_files(store, [str(tmp_path / "new.json")])
        assert (result.records, result.new_events) == (2, 1)
        assert sorted(store.query("SELECT event_id FROM events")[1]) == [("new-1",), ("old-1",)]


def test_batches_are_sized_by_the_json_the_files_hold(tmp_path):
    """gzip files are weighed by the size their trailer records, not by a fixed ratio:
    how much a batch holds in memory does not depend on how well its files compress."""
    from trailscan.store import decompressed_size, iter_batches

    texts = {
        "dense.json.gz": json.dumps({"Records": [record(f"d-{i}") for i in range(300)]}).encode(),
        "noisy.json.gz": os.urandom(60_000).hex().encode(),  # compresses about 2x, not 10x
        "plain.json": b"[" + b" " * 50_000 + b"]",
    }
    for name, data in texts.items():
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    paths = [tmp_path / name for name in texts]
    assert [decompressed_size(p) for p in paths] == [len(data) for data in texts.values()]
    assert decompressed_size(tmp_path / "missing.json.gz") == 0

    limit = len(texts["dense.json.gz"]) + len(texts["noisy.json.gz"])
    assert list(iter_batches(paths, limit)) == [paths[:2], paths[2:]]
    assert list(iter_batches(paths, limit - 1)) == [paths[:1], paths[1:]]
