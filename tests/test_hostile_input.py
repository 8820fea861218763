"""No input can crash the store (issue 8): CloudTrail records what anyone sent to AWS, and
files come from wherever a user found them.

Property-based tests (hypothesis) drive the file reader (``Store.ingest_files`` on files
written here) and the record normaliser (``Store.ingest_documents``) with random JSON,
wrong types in every CloudTrail field, broken bytes and wrong compression: every input
ends as stored records or as one clean, one-line problem naming it — never an exception,
never a lost good record, never a duplicate.  Then the limits: deep and wide structures,
256 KB events, every ``eventVersion`` from 1.0 to 1.11, and delivery files larger than
DuckDB's 64 MiB single-value limit up to 50 MB of gzip.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from trailscan.generate import healthy_traffic
from trailscan.model import BatchResult, Window
from trailscan.store import MAX_OBJECT_BYTES, Store

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=HEALTH)
# The slow variants: the same properties, with almost four times the examples (sized so
# that .ci/run, which runs them, stays well under ten minutes on two cores).
MANY = settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)

# -- strategies ----------------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=12)  # NUL and controls included
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4), max_leaves=20
)
IDENTITY_FIELDS = ("type", "arn", "principalId", "userName", "accessKeyId", "accountId", "sessionContext", "identityProvider")
RECORD_FIELDS = (
    "eventID", "eventTime", "awsRegion", "recipientAccountId", "sourceIPAddress", "userAgent", "errorCode",
    "errorMessage", "readOnly", "eventCategory", "eventType", "requestParameters", "responseElements",
    "resources", "tlsDetails", "userIdentity", "sharedEventID", "additionalEventData",
)
# A record (eventVersion, or eventName with eventSource) whose every other field may hold any type.
hostile_records = st.builds(
    lambda base, fields, identity: {**base, **fields, **({"userIdentity": identity} if identity is not None else {})},
    st.sampled_from(
        [{"eventVersion": "1.08"}, {"eventName": "GetObject", "eventSource": "s3.amazonaws.com"}, {"eventVersion": 1.08}]
    ),
    st.dictionaries(st.sampled_from(RECORD_FIELDS), json_values, max_size=8),
    st.none() | json_values | st.dictionaries(st.sampled_from(IDENTITY_FIELDS), json_values, max_size=5),
)
# Every shape of SPEC §4, each holding hostile records or wrong types where records belong.
documents = st.one_of(
    json_values,
    hostile_records,
    st.lists(hostile_records | json_values, max_size=4),
    st.builds(lambda items: {"Records": items}, st.lists(hostile_records | json_values, max_size=4) | json_values),
    st.builds(
        lambda items: {"Events": items},
        st.lists(
            hostile_records.map(lambda r: {"CloudTrailEvent": json.dumps(r)})
            | st.builds(lambda t: {"CloudTrailEvent": t}, text | json_values)
            | json_values,
            max_size=4,
        )
        | json_values,
    ),
    st.builds(lambda detail, kind: {"detail-type": kind, "detail": detail}, hostile_records | json_values, json_values),
    st.builds(lambda d, files: {"digestStartTime": d, "logFiles": files}, json_values, json_values),
)


def well_formed(n: int, prefix: str) -> list[dict]:
    return [
        {
            "eventVersion": "1.08",
            "eventID": f"{prefix}-{i}",
            "eventTime": "2026-11-27T10:00:00Z",
            "eventSource": "s3.amazonaws.com",
            "eventName": "ListBuckets",
            "awsRegion": "eu-west-1",
            "recipientAccountId": "111122223333",
        }
        for i in range(n)
    ]


def encode(document, *, ensure_ascii: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


# Ways bytes go wrong on the way to a file: (name suffix, bytes -> bytes); None keeps them whole.
DAMAGE = {
    "intact": None,
    "gzip named .json": ("json", gzip.compress),
    "plain named .json.gz": ("json.gz", lambda b: b),
    "bzip2": ("json", bz2.compress),
    "bzip2 named .json.gz": ("json.gz", bz2.compress),
    "zstd magic": ("json.zst", lambda b: b"\x28\xb5\x2f\xfd" + b),
    "gzip twice": ("json.gz", lambda b: gzip.compress(gzip.compress(b))),
    "truncated gzip": ("json.gz", lambda b: gzip.compress(b)[: max(len(gzip.compress(b)) // 2, 1)]),
    "truncated": ("json", lambda b: b[: len(b) // 2]),
    "NUL bytes": ("json", lambda b: b[: len(b) // 2] + b"\x00\x00" + b[len(b) // 2 :]),
    "invalid UTF-8": ("json", lambda b: b.replace(b'"', b'"\xff\xfe', 1)),
    "UTF-16": ("json", lambda b: b.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")),
    "empty": ("json", lambda b: b""),
}


@pytest.fixture(scope="module")
def stores():
    """Two in-memory stores shared by the examples of a test (opening one costs more than
    an example): :func:`emptied` clears one before each use."""
    with Store.open(":memory:") as first, Store.open(":memory:") as second:
        yield first, second


def emptied(store: Store) -> Store:
    store.con.execute("DELETE FROM event_rows")
    return store


def assert_clean(result: BatchResult, store: Store, names: list[str]) -> None:
    """Every input is accounted for, problems are one line naming their input, and the
    store holds each event once, all of them counted as new."""
    assert result.files == len(names)
    for problem in result.problems:
        assert problem.name in names
        assert problem.message and "\n" not in problem.message and "Traceback" not in problem.message
    total, distinct = store.query("SELECT count(*), count(DISTINCT event_id) FROM events")[1][0]
    assert total == distinct == result.new_events


# -- the file reader -----------------------------------------------------------------------------------


# Files: (document, damage, gzip it?, ASCII-only JSON?) and how many good records beside them.
FILES = {
    "inputs": st.lists(
        st.tuples(documents, st.sampled_from(sorted(DAMAGE)), st.booleans(), st.booleans()), min_size=1, max_size=5
    ),
    "good": st.integers(0, 3),
}


@SETTINGS
@given(**FILES)
def test_any_file_is_stored_or_named_never_a_crash(tmp_path_factory, stores, inputs, good):
    check_files(tmp_path_factory, stores, inputs, good)


@pytest.mark.slow
@MANY
@given(**FILES)
def test_any_file_is_stored_or_named_never_a_crash_many_examples(tmp_path_factory, stores, inputs, good):
    check_files(tmp_path_factory, stores, inputs, good)


def check_files(tmp_path_factory, stores, inputs, good):
    folder = tmp_path_factory.mktemp("hostile")
    names, intact = [], []
    for n, (document, damage, compress, ascii_only) in enumerate(inputs):
        data = encode(document, ensure_ascii=ascii_only)
        if DAMAGE[damage] is None:
            suffix, data = ("json.gz", gzip.compress(data)) if compress else ("json", data)
            intact.append(n)
        else:
            suffix, spoil = DAMAGE[damage]
            data = spoil(data)
        path = folder / f"{n}-{damage.replace(' ', '_')}.{suffix}"
        path.write_bytes(data)
        names.append(str(path))
    # Good records beside the hostile ones: a bad neighbour never costs them.
    path = folder / "good.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"Records": well_formed(good, "good")}).encode()))
    names.append(str(path))

    store = emptied(stores[0])
    result = store.ingest_files(names)
    assert_clean(result, store, names)
    ids = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    assert {f"good-{i}" for i in range(good)} <= ids
    if good:
        assert str(path) not in {problem.name for problem in result.problems}
    # Valid JSON that is not CloudTrail is named as such (or as empty: [] holds nothing),
    # never as unreadable.
    for n in intact:
        for problem in result.problems:
            if problem.name == names[n]:
                assert problem.message in ("JSON, but not CloudTrail records", "empty"), problem


@SETTINGS
@given(documents=st.lists(documents, min_size=1, max_size=6))
def test_documents_and_files_agree(tmp_path_factory, stores, documents):
    check_agreement(tmp_path_factory, stores, documents)


@pytest.mark.slow
@MANY
@given(documents=st.lists(documents, min_size=1, max_size=6))
def test_documents_and_files_agree_many_examples(tmp_path_factory, stores, documents):
    check_agreement(tmp_path_factory, stores, documents)


def check_agreement(tmp_path_factory, stores, documents):
    """The same JSON read from files and from memory (as the LookupEvents source hands it
    over) stores the same events."""
    folder = tmp_path_factory.mktemp("agree")
    paths = []
    for n, document in enumerate(documents):
        path = folder / f"{n}.json"
        path.write_bytes(encode(document, ensure_ascii=False))
        paths.append(str(path))
    from_files, from_memory = emptied(stores[0]), emptied(stores[1])
    assert_clean(from_files.ingest_files(paths), from_files, paths)
    texts = [encode(d, ensure_ascii=False).decode("utf-8", "surrogatepass") for d in documents]
    from_memory.ingest_documents(texts, origin="test")
    query = "SELECT event_id, raw::VARCHAR FROM events ORDER BY event_id"
    assert from_files.query(query) == from_memory.query(query)


# -- the record normaliser -------------------------------------------------------------------------------


TEXTS = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=()), max_size=60),  # lone surrogates, NUL
        st.binary(max_size=60),  # invalid UTF-8
        documents.map(lambda d: json.dumps(d, ensure_ascii=False)),
        hostile_records.map(lambda r: json.dumps(r)[:-1] + ', "userAgent": "\ud800\x00"}'),
    ),
    min_size=1,
    max_size=6,
)


@SETTINGS
@given(texts=TEXTS)
def test_any_document_is_stored_or_named_never_a_crash(stores, texts):
    check_documents(stores, texts)


@pytest.mark.slow
@MANY
@given(texts=TEXTS)
def test_any_document_is_stored_or_named_never_a_crash_many_examples(stores, texts):
    check_documents(stores, texts)


def check_documents(stores, texts):
    names = [f"doc-{n}" for n in range(len(texts))]
    store = emptied(stores[0])
    good = json.dumps({"Records": well_formed(2, "kept")})
    result = store.ingest_documents([*texts, good], origin="t", names=[*names, "good"])
    assert_clean(result, store, [*names, "good"])
    assert "good" not in {p.name for p in result.problems}
    assert {"kept-0", "kept-1"} <= {row[0] for row in store.query("SELECT event_id FROM events")[1]}


def test_wrong_types_in_every_field_still_store_the_record(store):
    """A record is a record whatever its fields hold: the columns that cannot be read are
    NULL, the record is kept whole in ``raw``."""
    base = well_formed(1, "typed")[0]
    wrong = {
        "eventTime": 1764237600,
        "eventVersion": 1.08,
        "userIdentity": "root",
        "eventSource": ["s3.amazonaws.com"],
        "readOnly": "maybe",
        "errorCode": {"code": "AccessDenied"},
        "requestParameters": "not an object",
        "responseElements": 42,
        "resources": {"ARN": "x"},
        "tlsDetails": [],
        "awsRegion": None,
    }
    for n, (field, value) in enumerate(wrong.items()):
        store.ingest_documents([json.dumps({**base, "eventID": f"typed-{n}", field: value})], origin="t")
    # eventID itself of another type: keyed by its JSON text, never lost.
    store.ingest_documents([json.dumps({**base, "eventID": {"id": 1}}), json.dumps({**base, "eventID": 7})], origin="t")
    rows = dict(store.query("SELECT event_id, event_time FROM events")[1])
    assert set(rows) == {f"typed-{n}" for n in range(len(wrong))} | {'{"id":1}', "7"}
    assert rows["typed-0"] is None  # eventTime a number: unknown, not a guess
    read_back = dict(store.query("SELECT event_id, raw ->> '$.userIdentity' FROM events")[1])
    assert read_back["typed-2"] == "root"


# -- deep, wide and big ----------------------------------------------------------------------------------


def test_deep_and_wide_structures(tmp_path, store):
    record = well_formed(1, "deep")[0]
    text = json.dumps(record)
    files = {
        "deep-array.json": "[" * 100_000 + "]" * 100_000,
        "deep-object.json": '{"a":' * 20_000 + "1" + "}" * 20_000,
        "deep-record.json": text[:-1] + ', "requestParameters": ' + '{"a":' * 5_000 + "1" + "}" * 5_000 + "}",
        "wide-record.json": json.dumps({**record, "eventID": "wide", "requestParameters": {f"k{i}": i for i in range(100_000)}}),
        "long-list.json": json.dumps({**record, "eventID": "long", "resources": [{"ARN": f"arn:{i}"} for i in range(50_000)]}),
        "many-records.json": json.dumps({"Records": [{**record, "eventID": f"many-{i}"} for i in range(5_000)]}),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    result = store.ingest_files(sorted(tmp_path.iterdir()))
    assert_clean(result, store, [str(p) for p in sorted(tmp_path.iterdir())])
    ids = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    assert {"deep-0", "wide", "long"} <= ids and len(ids) == 5_003
    assert {(p.name, p.message) for p in result.problems} == {
        (str(tmp_path / "deep-array.json"), "JSON, but not CloudTrail records"),
        (str(tmp_path / "deep-object.json"), "JSON, but not CloudTrail records"),
    }
    width = store.query("SELECT json_array_length(resources) FROM events WHERE event_id = 'long'")[1][0][0]
    assert width == 50_000


def test_a_secret_nested_too_deep_to_redact_is_never_stored(tmp_path, store):
    """Python redacts what the regex cannot; a record nested beyond what it can parse costs
    its file, named, and the secret is not stored."""
    text = json.dumps(well_formed(1, "deep-secret")[0])
    secret = '"PLANTEDtooDEEPtoken"'
    (tmp_path / "deep-secret.json").write_text(
        text[:-1] + ', "requestParameters": {"token": ' + "[" * 5_000 + secret + "]" * 5_000 + "}}"
    )
    (tmp_path / "good.json").write_text(json.dumps({"Records": well_formed(2, "good")}))
    result = store.ingest_files(sorted(tmp_path.iterdir()))
    assert_clean(result, store, [str(p) for p in sorted(tmp_path.iterdir())])
    assert [(p.name, p.message.split(":")[0]) for p in result.problems] == [
        (str(tmp_path / "deep-secret.json"), "cannot redact a record")
    ]
    assert {row[0] for row in store.query("SELECT event_id FROM events")[1]} == {"good-0", "good-1"}
    assert store.query("SELECT count(*) FROM events WHERE raw::VARCHAR LIKE '%PLANTEDtooDEEP%'")[1][0][0] == 0


def test_a_256_kb_event_is_stored_whole(tmp_path, store):
    """CloudTrail's largest event is 256 KB: it is stored byte for byte (after redaction)."""
    record = {**well_formed(1, "big")[0], "requestParameters": {"policy": "", "note": "ünïcødé ✓ </script>"}}
    record["requestParameters"]["policy"] = "x" * (256 * 1024 - len(orjson.dumps(record)))
    assert len(orjson.dumps(record)) == 256 * 1024
    (tmp_path / "big.json.gz").write_bytes(gzip.compress(json.dumps({"Records": [record] * 3}).encode()))
    result = store.ingest_files([tmp_path / "big.json.gz"])
    assert result.problems == [] and result.new_events == 1
    raw = store.query("SELECT raw::VARCHAR FROM events")[1][0][0]
    assert orjson.loads(raw) == record


# Fields as each eventVersion introduced them (AWS's record contents page); earlier records
# lack the later fields and 1.0 records may lack eventID.
VERSION_FIELDS = {
    "1.0": {},
    "1.01": {"eventID": "v-1.01"},
    "1.02": {"eventID": "v-1.02", "eventType": "AwsApiCall"},
    "1.03": {"eventID": "v-1.03", "recipientAccountId": "111122223333"},
    "1.04": {"eventID": "v-1.04", "readOnly": True},
    "1.05": {"eventID": "v-1.05", "managementEvent": True, "vpcEndpointId": "vpce-1"},
    "1.06": {"eventID": "v-1.06", "apiVersion": "2012-10-17"},
    "1.07": {"eventID": "v-1.07", "eventCategory": "Management"},
    "1.08": {"eventID": "v-1.08", "tlsDetails": {"clientProvidedHostHeader": "s3.eu-west-1.amazonaws.com"}},
    "1.09": {"eventID": "v-1.09", "sessionCredentialFromConsole": "true"},
    "1.10": {"eventID": "v-1.10", "edgeDeviceDetails": {"type": "outposts"}},
    "1.11": {"eventID": "v-1.11", "inScopeOf": {"issuerType": "AWS::Lambda::Function"}},
}


def test_every_event_version_from_1_0_to_1_11(tmp_path, store, real_store):
    identity = {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/alice", "accountId": "111122223333",
                "principalId": "AIDAEXAMPLE", "userName": "alice"}
    fields: dict = {}
    for version, added in VERSION_FIELDS.items():
        fields.update(added)
        record = {
            "eventVersion": version,
            "userIdentity": identity,
            "eventTime": "2014-03-06T21:22:54Z",
            "eventSource": "iam.amazonaws.com",
            "eventName": "ListUsers",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "192.0.2.1",
            "userAgent": "aws-cli/1.3.2",
            **fields,
        }
        if version == "1.0":
            record.pop("eventID", None)
        (tmp_path / f"v{version}.json.gz").write_bytes(gzip.compress(json.dumps({"Records": [record]}).encode()))
    result = store.ingest_files(sorted(tmp_path.iterdir()))
    assert result.problems == [] and result.new_events == len(VERSION_FIELDS)
    rows = store.query("SELECT event_version, user_name, account_id, identity_arn FROM events ORDER BY event_version")[1]
    assert [row[0] for row in rows] == sorted(VERSION_FIELDS)
    assert all(row[1:] == ("alice", "111122223333", identity["arn"]) for row in rows)
    # The real corpus spans the versions AWS wrote over the years.
    with Store.open(real_store, read_only=True) as real:
        versions = {row[0] for row in real.query("SELECT DISTINCT event_version FROM events")[1]}
    assert {"1.0", "1.03", "1.04", "1.05", "1.07", "1.08", "1.09", "1.10"} <= versions


# -- delivery files larger than one JSON value may be ---------------------------------------------------


def padded_records(count: int, size: int, seed: int = 1) -> list[bytes]:
    """``count`` realistic records of about ``size`` bytes each, serialised."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pool = list(healthy_traffic(rng, count=200, start=start, end=start + timedelta(minutes=5),
                                accounts=["111122223333"], regions=["eu-west-1"]))
    out = []
    for n in range(count):
        record = dict(pool[n % len(pool)], eventID=str(uuid.UUID(int=rng.getrandbits(128))))
        record["requestParameters"] = {"filter": "y" * max(size - 1400, 0)}
        out.append(orjson.dumps(record))
    return out


def test_a_delivery_file_of_large_records_loads(tmp_path, store):
    """300 records near CloudTrail's 256 KB limit in one delivery file: more JSON than DuckDB
    reads as one value, and more than it can hold 2,048 records at a time of within the
    store's memory limit.  Stored whole, record by record."""
    serialised = padded_records(300, 240_000)
    assert sum(map(len, serialised)) > MAX_OBJECT_BYTES
    path = tmp_path / "delivery.json.gz"
    path.write_bytes(gzip.compress(b'{"Records":[' + b",".join(serialised) + b"]}", 1))
    result = store.ingest_files([path])
    assert result.problems == [] and result.new_events == 300
    assert store.query("SELECT sum(strlen(raw::VARCHAR)) FROM events")[1][0][0] == sum(map(len, serialised))


@pytest.mark.parametrize("read_size", [3, 4 << 20])
@pytest.mark.parametrize(
    "text, values",
    [
        ('{"Records":[1, {"a":[2]} ,"x"]}', ["1", '{"a":[2]}', '"x"']),
        ('\ufeff {\n  "Records" : [\n {"b": 1}\n ]\n}\n', ['{"b": 1}']),
        ("[12345, true]", ["12345", "true"]),
        ('{"a":1}\n{"b":2}\n', ['{"a":1}', '{"b":2}']),
        ('{"Records": []}', []),
        ("", []),
        ('{"Records": [1], "More": []}', "expected '}'"),
        ('{"Records": [1', "expected ']'"),
        ('[1,', "the array is not closed"),
        ("[1,,2]", "Expecting value"),
        ('{"a":1} junk', "Expecting value"),
        ("[1] 2", "more after the records"),
    ],
)
def test_a_file_too_big_to_read_whole_is_read_value_by_value(text, values, read_size):
    """How the store reads a file DuckDB cannot read whole (see the test above): the
    records of a delivery file or an array, or each value of NDJSON, in chunks of any
    size; anything else is an error, so such a file is never half-read."""
    from trailscan.store import _json_values

    stream = io.BytesIO(text.encode())
    if isinstance(values, list):
        assert list(_json_values(stream, read_size=read_size)) == values
    else:
        with pytest.raises(ValueError, match=re.escape(values)):
            list(_json_values(stream, read_size=read_size))


@pytest.mark.slow
def test_a_50_mb_gzip_delivery_file_loads_in_bounded_memory(tmp_path):
    """A busy account's 5 minutes: 50 MB of gzip, ~650,000 records, ~800 MB of JSON as one
    value.  Ingested through the CLI; peak RSS of the process is measured."""
    path = tmp_path / "111122223333_CloudTrail_eu-west-1_20260101T0005Z_big.json.gz"
    count = write_big_delivery(path, 50 * 1024 * 1024)
    db = tmp_path / "big.duckdb"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "trailscan", "ingest", "files", str(path), "--db", str(db)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    peak_mib = usage.ru_maxrss / 1024
    assert process.returncode == 0, log.read_text()
    assert f"{count} new events stored" in log.read_text()
    assert peak_mib < 2048, f"peak RSS {peak_mib:.0f} MiB"
    print(f"\n50 MB gzip delivery file: {path.stat().st_size >> 20} MiB, {count} records, peak RSS {peak_mib:.0f} MiB")


def write_big_delivery(path: Path, compressed_bytes: int) -> int:
    """A realistic delivery file of about ``compressed_bytes`` of gzip; returns its record count."""
    rng = random.Random(50)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    pool = [
        (orjson.dumps(r), r["eventID"].encode())
        for r in healthy_traffic(rng, count=5000, start=start, end=start + timedelta(minutes=5),
                                 accounts=["111122223333"], regions=["eu-west-1"])
    ]
    count = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
        out.write(b'{"Records":[')
        while raw.tell() < compressed_bytes:
            chunk = []
            for _ in range(2000):
                template, old = pool[count % len(pool)]
                chunk.append(template.replace(old, str(uuid.UUID(int=rng.getrandbits(128))).encode()))
                count += 1
            out.write((b"," if count > 2000 else b"") + b",".join(chunk))
        out.write(b"]}")
    return count


# -- the command line never shows a traceback ------------------------------------------------------------


def test_cli_names_every_hostile_file_on_one_line_and_stores_the_rest(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = json.dumps({"Records": well_formed(2, "cli")}).encode()
    for damage, spoil in DAMAGE.items():
        if spoil is not None:
            suffix, function = spoil
            (folder / f"{damage.replace(' ', '_')}.{suffix}").write_bytes(function(good))
    (folder / "good.json").write_bytes(good)
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "secret-in-bad-json.json").write_text('{"sessionToken": "IQoJplantedSECRET", broken')
    done = run_cli("ingest", "files", str(folder), "--db", str(tmp_path / "s.duckdb"))

    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "IQoJplantedSECRET" not in done.stderr
    lines = done.stderr.strip().splitlines()
    named = [line for line in lines if line.startswith(f"trailscan: {folder}")]
    loaded = {"gzip_named_.json.json"}  # gzip under another name is still read
    expected = {p.name for p in folder.iterdir()} - loaded - {"good.json"}
    assert {line.split(": ", 2)[1].rsplit("/", 1)[-1] for line in named} == expected
    assert lines[-1].startswith("trailscan: error: ") and f"{len(expected)} of" in lines[-1]
    with Store.open(tmp_path / "s.duckdb", read_only=True) as store:
        assert {row[0] for row in store.query("SELECT event_id FROM events")[1]} == {"cli-0", "cli-1"}


# -- LookupEvents answers that are not records ----------------------------------------------------------


@pytest.mark.parametrize("quick", [False, True], ids=["every event", "quick"])
def test_lookup_events_whose_record_is_not_a_record(quick, monkeypatch, tmp_path):
    """``CloudTrailEvent`` is a string in LookupEvents' answer: invalid JSON, an array, a
    record whose fields hold the wrong types, a lone surrogate.  The run ends, the good
    events are stored, the others are named in a partial coverage — never an exception."""
    import boto3

    from tests.support.lookup_server import DEFAULT_ACCOUNT, LookupServer
    from trailscan.sources.lookup import ingest_lookup

    now = datetime.now(UTC).replace(microsecond=0)
    window_start = now - timedelta(hours=3)

    def web_identity(n: int) -> dict:
        return {
            "eventVersion": "1.08", "eventID": f"lk-{n}", "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRoleWithWebIdentity", "awsRegion": "eu-west-1", "recipientAccountId": DEFAULT_ACCOUNT,
            "eventTime": (now - timedelta(hours=2, minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "userIdentity": {"type": "WebIdentityUser", "userName": "system:serviceaccount:a:b"},
            "responseElements": {"credentials": {"accessKeyId": f"ASIAGOOD{n:012d}"}},
        }

    hostile = {
        1: '{"eventVersion": "1.08", "eventName": "AssumeRoleWithWebIdentity", "eventID": "lk-1", bad',
        2: "[1, 2, 3]",
        3: json.dumps({**web_identity(3), "userIdentity": "root", "eventTime": 5,
                       "responseElements": {"credentials": "ASIA", "assumedRoleUser": ["x"]},
                       "requestParameters": {"roleSessionName": {"a": 1}}}),
        4: json.dumps(web_identity(4))[:-1] + ', "userAgent": "\ud800"}',
    }
    with LookupServer(rate=200.0, burst=200.0) as server:
        server.add_events("eu-west-1", [web_identity(n) for n in range(6)])
        for n, text in hostile.items():
            server._events[(DEFAULT_ACCOUNT, "eu-west-1")][f"lk-{n}"].lookup["CloudTrailEvent"] = text
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", server.endpoint_url)
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
        with Store.open(":memory:") as store:
            result, [coverage] = ingest_lookup(
                store, session, window=Window(window_start, now - timedelta(hours=1)), regions=["eu-west-1"],
                quick=quick, rate=200.0, account=DEFAULT_ACCOUNT,
            )
            stored = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    assert stored == {"lk-0", "lk-3", "lk-4", "lk-5"}
    assert coverage.status == "partial" and "2 events not stored" in coverage.detail
    assert {p.name for p in result.problems} == {"lookup:eu-west-1:lk-1", "lookup:eu-west-1:lk-2"}


# -- IAM wildcards whose text the caller chooses (issue 23, point 6) -------------------------------------

# Each line ran for seconds to forever through the regular expressions policy.py used to build: a
# 1,000-character S3 key against `logs-*/*/*/*.json` took 28.5 s, a 21-wildcard StringLike in a trust
# policy more than three minutes.  The child process prints how long all of them took together.
HOSTILE_GLOBS = r"""
import time
from trailscan import policy as p

key = "arn:aws:s3:::logs-" + "/" * 982
assert len(key) == 1000
issuer = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
provider = "arn:aws:iam::111122223333:oidc-provider/" + issuer
subject = "system:serviceaccount:" + "a" * 250 + ":" + "a" * 250
trust = {"Statement": [{"Effect": "Allow", "Principal": {"Federated": provider},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringLike": {issuer + ":sub": "system:serviceaccount:" + "*a" * 20 + "*b"}}}]}
start = time.perf_counter()
assert not p.resource_matches("arn:aws:s3:::logs-*/*/*/*.json", key)
assert p.analyze_web_identity_trust(trust, provider_arn=provider, subject=subject).cause == "TRUST_SUBJECT_MISMATCH"
assert not p.condition_matches({"ArnLike": {"k": "arn:aws:s3:::" + "*a" * 30 + "*b"}}, {"k": "arn:aws:s3:::" + "a" * 5000})
assert not p.action_matches("s3:" + "*?" * 40 + "x", "s3:" + "Get" * 3000)
assert p.evaluate([("p", {"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::logs-*/*/*/*.json"}})],
                  "s3:GetObject", key).effect == "implicit_deny"
# and far larger still: time grows with the text, not exponentially with the wildcards
assert not p.resource_matches("arn:aws:s3:::" + "*/" * 200 + "*.json", "arn:aws:s3:::" + "/" * 200_000)
assert not p.condition_matches({"StringLike": {"k": "*a?" * 100 + "*b"}}, {"k": "a" * 200_000})
print(time.perf_counter() - start)
"""


def bounded_python(code: str, *, seconds: float = 60, memory: int = 1 << 30) -> subprocess.CompletedProcess:
    """Run *code* in a child Python with a deadline and an address-space limit, so that what
    used to take minutes and gigabytes fails the test instead of the machine."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    try:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds,
            cwd=Path(__file__).parents[1], preexec_fn=limit,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {seconds} s")


def test_iam_wildcards_never_backtrack():
    done = bounded_python(HOSTILE_GLOBS)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) < 2.0


# -- inventory files from anyone (issue 23, point 8) ----------------------------------------------------

# Nine anchors, each aliased nine times by the next: 387 million strings once anything walks it.  The
# service-account reader used to build it, then str() it for a message: MemoryError after 24 s.
BILLION_LAUGHS = "".join(
    "%s: &%s [%s]\n" % (name, name, ",".join(["*" + prev if prev else '"lol"'] * 9))
    for prev, name in zip([None, *"abcdefgh"], "abcdefghi")
) + "kind: *i\n"

# Each reads one hostile file and prints {"error", "message", "elapsed"}.
READ_INVENTORY = r"""
import json, sys, time
from trailscan.inventory import load_iam_file
from trailscan.kube import load_service_accounts
read = {"sa": load_service_accounts, "iam": load_iam_file}[sys.argv[1]]
start = time.perf_counter()
try:
    read(sys.argv[2])
    error, message = None, ""
except BaseException as exc:
    error, message = type(exc).__name__, str(exc)
print(json.dumps({"error": error, "message": message, "elapsed": time.perf_counter() - start}))
"""


def deep_json(levels: int, inner: str = '"x"') -> str:
    return '{"a": ' * levels + inner + "}" * levels


def iam_document(trust) -> dict:
    return {"RoleDetailList": [{"Arn": "arn:aws:iam::111122223333:role/deep", "RoleName": "deep",
                                "AssumeRolePolicyDocument": trust}]}


def deep_trust(levels: int) -> str:
    """A trust policy whose Condition nests *levels* deep, as JSON text."""
    return '{"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Condition": ' + deep_json(levels) + "}]}"


HOSTILE_INVENTORIES = {
    # id: (reader, file name, content, what the one line says)
    "yaml alias bomb": ("sa", "sa.yaml", BILLION_LAUGHS, "aliases"),
    "json 100,000 deep": ("sa", "sa.json", "[" * 100_000 + "]" * 100_000, "nested more than 64 levels"),
    "yaml 100,000 deep": ("sa", "sa.yaml", "items: " + "[" * 100_000 + "]" * 100_000, "nest"),  # libyaml's own limit
    "yaml 900 deep block style": ("sa", "sa.yaml", "".join(f"{'  ' * i}k:\n" for i in range(900)), "nested more than 64 levels"),
    "iam 900 deep": ("iam", "iam.json", '{"RoleDetailList": [{"Arn": "arn:aws:iam::111122223333:role/deep", '
                     '"AssumeRolePolicyDocument": ' + deep_trust(900) + "}]}", "nested more than 64 levels"),
    "iam 100,000 deep": ("iam", "iam.json", deep_json(100_000), "nested more than 64 levels"),
    "iam url-encoded policy 900 deep": ("iam", "iam.json", json.dumps(iam_document(quote(deep_trust(900)))),
                                        "nested more than 64 levels"),
    "iam url-encoded policy 100,000 deep": ("iam", "iam.json", json.dumps(iam_document(quote(deep_trust(100_000)))),
                                            "nested more than 64 levels"),
}


@pytest.mark.parametrize("case", HOSTILE_INVENTORIES)
def test_a_hostile_inventory_file_is_one_line_naming_it_at_once(tmp_path, case):
    reader, name, content, fragment = HOSTILE_INVENTORIES[case]
    path = tmp_path / name
    path.write_text(content)
    done = bounded_python(READ_INVENTORY.replace("sys.argv[1]", repr(reader)).replace("sys.argv[2]", repr(str(path))))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["error"] == "InputError", result
    assert str(path) in result["message"] and fragment in result["message"]
    assert "\n" not in result["message"]
    assert result["elapsed"] < 2.0


def test_yaml_anchors_within_reason_still_load(tmp_path):
    path = tmp_path / "sa.yaml"
    path.write_text(
        "kind: List\nitems:\n"
        "- {kind: ServiceAccount, metadata: {name: a, namespace: n, annotations: &notes {eks.amazonaws.com/role-arn: r}}}\n"
        "- {kind: ServiceAccount, metadata: {name: b, namespace: n, annotations: *notes}}\n"
    )
    from trailscan.kube import load_service_accounts

    assert [(sa.name, sa.role_arn) for sa in load_service_accounts(path)] == [("a", "r"), ("b", "r")]


def test_cli_refuses_an_alias_bomb_on_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    with Store.open(str(tmp_path / "store.duckdb")):
        pass
    ran = run_cli("findings", "--db", str(tmp_path / "store.duckdb"), "--offline", "--service-accounts", str(bomb))
    assert ran.returncode == 2, ran.stderr
    assert str(bomb) in ran.stderr and "aliases" in ran.stderr
    assert "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
