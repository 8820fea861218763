"""The s3 source against moto in server mode, through real boto3 clients (SPEC §4 s3, §9).

A bucket holds 30 days of an organization trail (2 accounts × 2 regions, digests and Insights
beside the logs).  Listings are seen by botocore event hooks on the injected session, downloads
by the server itself (they go through boto3 or the AWS Common Runtime, and the tests that
download run with both), so the tests see exactly which folders were listed and which objects
were downloaded.
"""

from __future__ import annotations

import gzip
import random
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from botocore.awsrequest import AWSResponse
from click.testing import CliRunner

from tests.support.moto_server import MotoServer
from trailscan.cli import main
from trailscan.errors import SourceError, UsageError
from trailscan.generate import HEALTHY_CALLS, RoleSession, access_key_id, api_call, delivery_key
from trailscan.model import COMPLETE, FAILED, PARTIAL, Window
from trailscan.sources.s3 import (
    DOWNLOADER_ENV,
    _Bucket,
    _CrtDownloads,
    _crt_problem,
    _downloads,
    choose_trail,
    day_prefixes,
    delivered_in,
    delivery_time,
    ingest_s3,
    is_log_key,
    region_prefix,
)
from trailscan.store import Store

ORG = "o-a1b2c3d4e5"
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("eu-west-1", "us-east-1")
FIRST_DAY = datetime(2026, 1, 1, tzinfo=timezone.utc)
DAYS = 30
# 24 hours whose delivery margin (1 h) crosses midnight into a third day folder.
WINDOW = Window(
    datetime(2026, 1, 20, 23, 10, 30, tzinfo=timezone.utc),
    datetime(2026, 1, 21, 23, 10, 30, tzinfo=timezone.utc),
)
STAMP = re.compile(r"_(\d{8}T\d{4})Z_")


# -- planting a trail ------------------------------------------------------------------------


def record(rng: random.Random, account: str, region: str, when: datetime) -> dict:
    session = RoleSession(account, "app", "botocore-session-1", access_key_id(rng))
    source, name, read_only = rng.choice(HEALTHY_CALLS)
    return api_call(
        rng,
        when=when,
        region=region,
        identity=session.user_identity(when - timedelta(minutes=5)),
        account=account,
        event_source=source,
        event_name=name,
        read_only=read_only,
    )


def log_file(records: list[dict]) -> bytes:
    return gzip.compress(orjson.dumps({"Records": records}))


class Trail:
    """What was planted: ``logs`` maps log keys to their records."""

    def __init__(self, bucket: str, prefix: str = "", org_id: str | None = ORG) -> None:
        self.bucket, self.prefix, self.org_id = bucket, prefix, org_id
        self.logs: dict[str, list[dict]] = {}
        self.others: dict[str, bytes] = {}

    def add(self, rng, account, region, events: list[datetime], delivered: datetime) -> str:
        key = delivery_key(account, region, delivered, rng, prefix=self.prefix, org_id=self.org_id)
        self.logs[key] = [record(rng, account, region, when) for when in events]
        return key

    def in_window_ids(self, window: Window = WINDOW, **match) -> set[str]:
        return {
            r["eventID"]
            for records in self.logs.values()
            for r in records
            if window.start <= parse(r["eventTime"]) < window.end
            and all(r[field] == value for field, value in match.items())
        }

    def put(self, session) -> None:
        s3 = session.client("s3")
        region = s3.meta.region_name
        location = (
            {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        s3.create_bucket(Bucket=self.bucket, **location)
        bodies = {key: log_file(records) for key, records in self.logs.items()} | self.others
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda item: s3.put_object(Bucket=self.bucket, Key=item[0], Body=item[1]), bodies.items()
                )
            )


def parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def stamp(key: str) -> datetime:
    return datetime.strptime(STAMP.search(key).group(1), "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)


def plant_org_trail(bucket: str) -> Trail:
    """30 days × 2 accounts × 2 regions: a log file every 6 hours, files right at the window's
    edges (and one delivered 50 minutes late), a digest a day, Insights, and a stray digest
    inside a log folder."""
    rng = random.Random(3)
    trail = Trail(bucket)
    lag = timedelta(minutes=5)
    for account in ACCOUNTS:
        for region in REGIONS:
            for day in range(DAYS):
                midnight = FIRST_DAY + timedelta(days=day)
                for hour in (2, 8, 14, 20):
                    when = midnight + timedelta(
                        hours=hour, minutes=rng.randrange(50), seconds=rng.randrange(60)
                    )
                    trail.add(rng, account, region, [when, when + timedelta(seconds=20)], when + lag)
                digest = (
                    f"AWSLogs/{ORG}/{account}/CloudTrail-Digest/{region}/{midnight:%Y/%m/%d}/"
                    f"{account}_CloudTrail-Digest_{region}_org_{region}_{midnight:%Y%m%dT%H%M%S}Z.json.gz"
                )
                trail.others[digest] = gzip.compress(b'{"digestStartTime": "x", "logFiles": []}')
            start, end = WINDOW.start, WINDOW.end
            # Delivered inside the window's range, holding an event from just before it.
            trail.add(
                rng,
                account,
                region,
                [start - timedelta(minutes=2), start + timedelta(seconds=10)],
                start + timedelta(minutes=3),
            )
            trail.add(rng, account, region, [end - timedelta(minutes=1)], end + timedelta(minutes=4))
            trail.add(rng, account, region, [end + timedelta(minutes=3)], end + timedelta(minutes=8))
            # Delivered 50 minutes late, after midnight: found through the delivery margin.
            trail.add(rng, account, region, [end - timedelta(minutes=10)], end + timedelta(minutes=55))
            # Delivered two hours after the window: never downloaded.
            trail.add(rng, account, region, [end + timedelta(hours=1, minutes=50)], end + timedelta(hours=2))
            insight_day = WINDOW.start.date()
            trail.others[
                f"AWSLogs/{ORG}/{account}/CloudTrail-Insight/{region}/{insight_day:%Y/%m/%d}/"
                f"{account}_CloudTrail-Insight_{region}_20260121T0000Z_abc.json.gz"
            ] = log_file([])
    trail.others[
        f"AWSLogs/{ORG}/{ACCOUNTS[0]}/CloudTrail/{REGIONS[0]}/2026/01/21/"
        f"{ACCOUNTS[0]}_CloudTrail-Digest_{REGIONS[0]}_20260121T0300Z.json.gz"
    ] = gzip.compress(b'{"digestStartTime": "x", "logFiles": []}')
    return trail


# -- fixtures ------------------------------------------------------------------------------

# The org trail is planted once for the module: its tests keep what the others made (buckets
# are named uniquely).
pytestmark = pytest.mark.usefixtures("moto_module")


@pytest.fixture(scope="module")
def org_trail(moto_module) -> Trail:
    trail = plant_org_trail(f"org-trail-{uuid.uuid4().hex[:12]}")
    trail.put(moto_module.session("eu-west-1"))
    return trail


@pytest.fixture
def small_trail(moto):
    """A fresh bucket with one account and region: 3 days, a file an hour."""
    rng = random.Random(11)
    trail = Trail(f"small-{uuid.uuid4().hex[:12]}", org_id=None)
    for hour in range(72):
        when = datetime(2026, 1, 19, tzinfo=timezone.utc) + timedelta(hours=hour, minutes=17)
        trail.add(rng, ACCOUNTS[0], REGIONS[0], [when], when + timedelta(minutes=5))
    trail.put(moto.session())
    return trail


class Calls:
    """The listings a session makes (their API parameters, by botocore event hooks) and the
    objects of ``bucket`` downloaded since (as the moto server received the GETs)."""

    def __init__(self, session, moto: MotoServer, bucket: str) -> None:
        self.moto, self.bucket = moto, bucket
        self.lists: list[dict] = []
        self.seen = len(moto.requests)
        session.events.register(
            "before-parameter-build.s3.ListObjectsV2", lambda params, **_: self.lists.append(dict(params))
        )

    def downloads(self) -> list:
        """The GET requests of objects of the bucket (not its listings)."""
        return [request for _, request in self.moto.object_gets(self.bucket, self.seen)]

    @property
    def gets(self) -> list[str]:
        return [key for key, _ in self.moto.object_gets(self.bucket, self.seen)]

    def reset(self) -> None:
        self.lists.clear()
        self.seen = len(self.moto.requests)


@pytest.fixture(params=["crt", "boto3"])
def downloader(request) -> str:
    """Tests that download run with both downloaders (see trailscan.sources.s3)."""
    return request.param


def stored_ids(store: Store, window: Window = WINDOW) -> set[str]:
    _, rows = store.query(
        "SELECT event_id FROM events WHERE event_time >= $s AND event_time < $e",
        {"s": window.start, "e": window.end},
    )
    return {row[0] for row in rows}


# -- pure functions ------------------------------------------------------------------------


def test_key_prefixes():
    assert region_prefix("", "111122223333", "eu-west-1") == "AWSLogs/111122223333/CloudTrail/eu-west-1/"
    assert (
        region_prefix("/team/trails/", "111122223333", "eu-west-1", "a1b2c3")
        == "team/trails/AWSLogs/o-a1b2c3/111122223333/CloudTrail/eu-west-1/"
    )
    assert day_prefixes("", "111122223333", "us-east-1", WINDOW, org_id=ORG) == [
        f"AWSLogs/{ORG}/111122223333/CloudTrail/us-east-1/2026/01/{day}/" for day in ("20", "21", "22")
    ]
    noon = Window(
        datetime(2026, 1, 20, 6, tzinfo=timezone.utc), datetime(2026, 1, 20, 12, tzinfo=timezone.utc)
    )
    assert day_prefixes("p", "111122223333", "us-east-1", noon) == [
        "p/AWSLogs/111122223333/CloudTrail/us-east-1/2026/01/20/"
    ]


def test_delivery_times_and_log_keys():
    key = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/01/21/111122223333_CloudTrail_eu-west-1_20260121T2315Z_AbCd.json.gz"
    assert delivery_time(key) == datetime(2026, 1, 21, 23, 15, tzinfo=timezone.utc)
    assert is_log_key(key) and delivered_in(key, WINDOW)
    assert delivered_in(key.replace("20260121T2315Z", "20260120T2310Z"), WINDOW)  # the start's minute
    assert not delivered_in(key.replace("20260121T2315Z", "20260120T2309Z"), WINDOW)
    assert delivered_in(key.replace("20260121T2315Z", "20260122T0010Z"), WINDOW)
    assert not delivered_in(key.replace("20260121T2315Z", "20260122T0011Z"), WINDOW)
    assert delivered_in("AWSLogs/1/CloudTrail/r/2026/01/21/odd-name.json.gz", WINDOW)
    assert not is_log_key("AWSLogs/1/CloudTrail-Digest/r/2026/01/21/1_CloudTrail-Digest_r_x.json.gz")
    assert not is_log_key("AWSLogs/1/CloudTrail-Insight/r/2026/01/21/1_CloudTrail-Insight_r_x.json.gz")


def test_choose_trail_prefers_organization_then_multi_region():
    single = {"Name": "single", "S3BucketName": "a"}
    multi = {"Name": "multi", "S3BucketName": "b", "IsMultiRegionTrail": True}
    org = {
        "Name": "org",
        "S3BucketName": "c",
        "S3KeyPrefix": "p",
        "IsMultiRegionTrail": True,
        "IsOrganizationTrail": True,
    }
    assert choose_trail([single, multi, org]).name == "org"
    assert choose_trail([single, multi]).name == "multi"
    assert choose_trail([single]).bucket == "a"
    assert choose_trail([multi, {**multi, "Name": "same-place"}]).name == "multi"
    with pytest.raises(UsageError, match="multi .*other"):
        choose_trail([multi, {**multi, "Name": "other", "S3BucketName": "d"}])
    with pytest.raises(SourceError, match="no CloudTrail trail"):
        choose_trail([{"Name": "lake-only"}])


# -- the organization trail ------------------------------------------------------------------


def test_reads_only_the_window_and_a_rerun_downloads_nothing(moto, org_trail, store, downloader):
    session = moto.session("eu-west-1")
    calls = Calls(session, moto, org_trail.bucket)
    result, coverage = ingest_s3(
        store, session, window=WINDOW, bucket=org_trail.bucket, workers=4, downloader=downloader
    )
    assert all(r.user_agent.startswith("Boto3/") == (downloader == "boto3") for r in calls.downloads())

    # Discovery by delimiter listings, then exactly the three day folders of each account/region.
    days = {
        prefix
        for account in ACCOUNTS
        for region in REGIONS
        for prefix in day_prefixes("", account, region, WINDOW, org_id=ORG)
    }
    discovery = {"AWSLogs/", f"AWSLogs/{ORG}/"} | {f"AWSLogs/{ORG}/{a}/CloudTrail/" for a in ACCOUNTS}
    listed = [call["Prefix"] for call in calls.lists]
    assert sorted(listed) == sorted(days | discovery)
    assert all(call.get("Delimiter") == "/" for call in calls.lists)

    wanted = {
        key
        for key in org_trail.logs
        if WINDOW.start.replace(second=0) <= stamp(key) <= WINDOW.end + timedelta(hours=1)
    }
    assert len(wanted) == 4 * (4 + 4)  # per account/region: 4 six-hourly files and 4 at the edges
    assert sorted(calls.gets) == sorted(wanted)
    assert not any("Digest" in key or "Insight" in key for key in calls.gets)

    assert stored_ids(store) == org_trail.in_window_ids()
    assert store.count_events() == len(org_trail.in_window_ids())  # nothing from the margin
    assert result.files == len(wanted) and not result.problems
    assert result.digests == 1  # the stray digest in a log folder: seen, not downloaded
    assert {(c.account, c.region) for c in coverage} == {(a, r) for a in ACCOUNTS for r in REGIONS}
    for cover in coverage:
        assert cover.status == COMPLETE and (cover.window_start, cover.window_end) == (
            WINDOW.start,
            WINDOW.end,
        )
        assert cover.events == len(
            org_trail.in_window_ids(recipientAccountId=cover.account, awsRegion=cover.region)
        )
    origins = store.query("SELECT DISTINCT origin FROM events")[1]
    assert {row[0] for row in origins} <= {f"s3://{org_trail.bucket}/{key}" for key in wanted}

    calls.reset()
    again, coverage = ingest_s3(store, session, window=WINDOW, bucket=org_trail.bucket, downloader=downloader)
    assert calls.gets == [] and again.files == 0
    assert all(c.status == COMPLETE and c.events > 0 for c in coverage)
    assert "8 already stored" in coverage[0].detail
    assert store.query("SELECT count(*) FROM coverage")[1][0][0] == 8


def test_given_org_accounts_and_regions_list_only_those(moto, org_trail, store):
    session = moto.session()
    calls = Calls(session, moto, org_trail.bucket)
    _, coverage = ingest_s3(
        store,
        session,
        window=WINDOW,
        bucket=org_trail.bucket,
        org_id=ORG.removeprefix("o-"),
        accounts=[ACCOUNTS[1]],
        regions=["us-east-1", "ap-south-1"],
    )
    listed = {call["Prefix"] for call in calls.lists}
    assert listed == {f"AWSLogs/{ORG}/{ACCOUNTS[1]}/CloudTrail/"} | set(
        day_prefixes("", ACCOUNTS[1], "us-east-1", WINDOW, org_id=ORG)
    )
    assert stored_ids(store) == org_trail.in_window_ids(recipientAccountId=ACCOUNTS[1], awsRegion="us-east-1")
    by_region = {c.region: c for c in coverage}
    assert by_region["us-east-1"].status == COMPLETE
    assert (
        by_region["ap-south-1"].status == FAILED
        and "no CloudTrail logs for ap-south-1" in by_region["ap-south-1"].detail
    )


# -- incremental runs and faults -------------------------------------------------------------

SMALL_WINDOW = Window(
    datetime(2026, 1, 20, tzinfo=timezone.utc), datetime(2026, 1, 20, 12, tzinfo=timezone.utc)
)


def test_new_and_changed_objects_are_fetched_next_run(moto, small_trail, store, downloader):
    session = moto.session()
    calls = Calls(session, moto, small_trail.bucket)
    ingest_s3(store, session, window=SMALL_WINDOW, bucket=small_trail.bucket, downloader=downloader)
    assert len(calls.gets) == 13  # the window's 12 files, and the one delivered at 12:22 (margin)
    s3 = moto.session().client("s3")
    rng = random.Random(5)
    when = datetime(2026, 1, 20, 6, 40, tzinfo=timezone.utc)
    new_key = small_trail.add(rng, ACCOUNTS[0], REGIONS[0], [when], when + timedelta(minutes=6))
    changed_key = sorted(k for k in small_trail.logs if "20260120T0322Z" in k)[0]
    small_trail.logs[changed_key].append(record(rng, ACCOUNTS[0], REGIONS[0], when))
    for key in (new_key, changed_key):
        s3.put_object(Bucket=small_trail.bucket, Key=key, Body=log_file(small_trail.logs[key]))

    calls.reset()
    result, coverage = ingest_s3(
        store, session, window=SMALL_WINDOW, bucket=small_trail.bucket, downloader=downloader
    )
    assert sorted(calls.gets) == sorted([new_key, changed_key])
    assert result.new_events == 2
    assert stored_ids(store, SMALL_WINDOW) == small_trail.in_window_ids(SMALL_WINDOW)
    assert coverage[0].status == COMPLETE and coverage[0].events == len(
        small_trail.in_window_ids(SMALL_WINDOW)
    )


def test_a_corrupt_object_is_named_the_rest_stored_and_it_is_retried(moto, small_trail, store, downloader):
    s3 = moto.session().client("s3")
    bad_key = sorted(k for k in small_trail.logs if "20260120T0522Z" in k)[0]
    good_body = log_file(small_trail.logs[bad_key])
    s3.put_object(Bucket=small_trail.bucket, Key=bad_key, Body=good_body[:20] + b"\x00garbage" * 10)
    session = moto.session()
    calls = Calls(session, moto, small_trail.bucket)

    def run():
        return ingest_s3(
            store, session, window=SMALL_WINDOW, bucket=small_trail.bucket, downloader=downloader
        )

    result, coverage = run()
    assert [p.name for p in result.problems] == [f"s3://{small_trail.bucket}/{bad_key}"]
    assert "gzip" in result.problems[0].message
    assert coverage[0].status == PARTIAL and "1 unreadable" in coverage[0].detail
    bad_ids = {r["eventID"] for r in small_trail.logs[bad_key]}
    assert stored_ids(store, SMALL_WINDOW) == small_trail.in_window_ids(SMALL_WINDOW) - bad_ids

    calls.reset()
    result, coverage = run()
    assert calls.gets == [bad_key] and len(result.problems) == 1  # retried, still corrupt

    s3.put_object(Bucket=small_trail.bucket, Key=bad_key, Body=good_body)
    calls.reset()
    result, coverage = run()
    assert calls.gets == [bad_key] and not result.problems and coverage[0].status == COMPLETE
    assert stored_ids(store, SMALL_WINDOW) == small_trail.in_window_ids(SMALL_WINDOW)


def test_an_object_vanishing_after_listing_is_named(moto, small_trail, store, downloader):
    victim = sorted(k for k in small_trail.logs if "20260120T0822Z" in k)[0]
    other = moto.session().client("s3")
    session = moto.session()

    def delete_once_listed(parsed, **_):
        if any(item["Key"] == victim for item in parsed.get("Contents", [])):
            other.delete_object(Bucket=small_trail.bucket, Key=victim)

    session.events.register("after-call.s3.ListObjectsV2", delete_once_listed)
    result, coverage = ingest_s3(
        store, session, window=SMALL_WINDOW, bucket=small_trail.bucket, downloader=downloader
    )
    assert [str(p) for p in result.problems] == [
        f"s3://{small_trail.bucket}/{victim}: vanished between listing and download"
    ]
    assert coverage[0].status == PARTIAL
    assert store.ingested_objects("s3").keys() == {
        f"s3://{small_trail.bucket}/{k}"
        for k in small_trail.logs
        if delivered_in(k, SMALL_WINDOW) and k != victim
    }


def test_a_day_folder_that_cannot_be_listed_fails_its_region(moto, small_trail, store):
    session = moto.session()
    denied = "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/01/20/"

    def deny(model, params, **_):
        if params["query_string"].get("prefix") == denied:
            return AWSResponse("", 403, {}, None), {
                "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
        return None

    session.events.register("before-call.s3.ListObjectsV2", deny)
    _, coverage = ingest_s3(store, session, window=SMALL_WINDOW, bucket=small_trail.bucket)
    assert coverage[0].status == FAILED
    assert (
        f"cannot list s3://{small_trail.bucket}/{denied}: AccessDenied: Access Denied" in coverage[0].detail
    )


def test_an_interrupted_run_resumes_without_duplicates(moto, small_trail, store, downloader):
    session = moto.session()
    calls = Calls(session, moto, small_trail.bucket)

    def interrupt(label, done, total):
        if label == "downloading objects" and done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_s3(
            store,
            session,
            window=SMALL_WINDOW,
            bucket=small_trail.bucket,
            batch_objects=4,
            workers=2,
            progress=interrupt,
            downloader=downloader,
        )
    stored = len(store.ingested_objects("s3"))
    assert stored == 4  # the first batch was stored and remembered
    calls.reset()
    _, coverage = ingest_s3(
        store, session, window=SMALL_WINDOW, bucket=small_trail.bucket, downloader=downloader
    )
    assert len(calls.gets) == 13 - stored
    assert coverage[0].status == COMPLETE
    assert stored_ids(store, SMALL_WINDOW) == small_trail.in_window_ids(SMALL_WINDOW)
    assert store.query("SELECT count(*) - count(DISTINCT event_id) FROM events")[1][0][0] == 0


def test_a_missing_bucket_is_one_error_naming_it(moto, store):
    with pytest.raises(SourceError, match="bucket no-such-trail-bucket does not exist"):
        ingest_s3(store, moto.session(), window=WINDOW, bucket="no-such-trail-bucket")


def test_an_empty_prefix_is_an_error_naming_it(moto, small_trail, store):
    with pytest.raises(
        SourceError, match=f"no CloudTrail logs under s3://{small_trail.bucket}/wrong/AWSLogs/"
    ):
        ingest_s3(store, moto.session(), window=WINDOW, bucket=small_trail.bucket, prefix="wrong")


# -- other layouts and discovery ---------------------------------------------------------------


def plant_plain(moto, prefix: str) -> Trail:
    """An organization trail written without the o- segment (accounts directly under AWSLogs/)."""
    rng = random.Random(17)
    trail = Trail(f"plain-{uuid.uuid4().hex[:12]}", prefix=prefix, org_id=None)
    for account in ACCOUNTS:
        for hours in (-30, -3, 5, 20, 27):
            when = WINDOW.start + timedelta(hours=hours)
            trail.add(rng, account, "eu-central-1", [when], when + timedelta(minutes=5))
    trail.put(moto.session())
    return trail


def test_layout_without_org_segment_and_with_a_prefix(moto, store, downloader):
    # A prefix with characters a URL must escape: each downloader addresses the keys right.
    prefix = "team trails/a+b~c=d%25é"
    trail = plant_plain(moto, prefix)
    session = moto.session()
    calls = Calls(session, moto, trail.bucket)
    _, coverage = ingest_s3(
        store, session, window=WINDOW, bucket=f"s3://{trail.bucket}/{prefix}/", downloader=downloader
    )
    assert stored_ids(store) == trail.in_window_ids() and len(trail.in_window_ids()) == 4
    assert sorted((c.account, c.region, c.status) for c in coverage) == [
        (a, "eu-central-1", COMPLETE) for a in ACCOUNTS
    ]
    assert all(call["Prefix"].startswith(f"{prefix}/AWSLogs/") for call in calls.lists)
    assert len(calls.gets) == 4 and all(key.startswith(f"{prefix}/AWSLogs/") for key in calls.gets)


# -- the downloaders ------------------------------------------------------------------------


def test_runtime_failures_are_worded_like_boto3s():
    body = b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"
    assert _crt_problem(RuntimeError("x"), 404, body) == "vanished between listing and download"
    denied = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    assert _crt_problem(RuntimeError("x"), 403, denied).startswith(
        "access denied (s3:GetObject, or kms:Decrypt"
    )
    archived = b"<Error><Code>InvalidObjectState</Code></Error>"
    assert _crt_problem(RuntimeError("x"), 403, archived) == "archived (S3 Glacier): restore it first"
    slow = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    assert _crt_problem(RuntimeError("x"), 503, slow) == "SlowDown: Please reduce your request rate."
    assert _crt_problem(RuntimeError("x"), 500, b"") == "HTTP 500"
    assert _crt_problem(RuntimeError("x"), 404, None) == "vanished between listing and download"

    class Timeout(Exception):
        name = "AWS_IO_SOCKET_TIMEOUT"

    assert _crt_problem(Timeout(), 0, None) == "download failed: AWS_IO_SOCKET_TIMEOUT"


def test_a_request_the_runtime_refuses_is_named_and_the_rest_stored(moto, small_trail, store, monkeypatch):
    refused = sorted(k for k in small_trail.logs if "20260120T0422Z" in k)[0]
    start = _CrtDownloads._start

    def refuse_one(self, key, path, future):
        if key == refused:
            raise RuntimeError("refused for the test")
        return start(self, key, path, future)

    monkeypatch.setattr(_CrtDownloads, "_start", refuse_one)
    result, coverage = ingest_s3(
        store, moto.session(), window=SMALL_WINDOW, bucket=small_trail.bucket, downloader="crt"
    )
    assert [str(p) for p in result.problems] == [
        f"s3://{small_trail.bucket}/{refused}: download failed: refused for the test"
    ]
    assert coverage[0].status == PARTIAL
    refused_ids = {r["eventID"] for r in small_trail.logs[refused]}
    assert stored_ids(store, SMALL_WINDOW) == small_trail.in_window_ids(SMALL_WINDOW) - refused_ids


def test_the_downloader_is_chosen_from_the_session(moto, small_trail, monkeypatch):
    session = moto.session()
    bucket = _Bucket(session, small_trail.bucket, 2)
    with ThreadPoolExecutor(2) as pool:
        chosen = _downloads(session, bucket, pool, 2, None)
        chosen.close(cancel=False)
        assert chosen.name == "crt"
        assert _downloads(session, bucket, pool, 2, "boto3").name == "boto3"
        monkeypatch.setenv(DOWNLOADER_ENV, "boto3")
        assert _downloads(session, bucket, pool, 2, None).name == "boto3"
        monkeypatch.setenv(DOWNLOADER_ENV, "curl")
        with pytest.raises(UsageError, match="TRAILSCAN_S3_DOWNLOADER='curl': one of auto, crt, boto3"):
            _downloads(session, bucket, pool, 2, None)
        monkeypatch.delenv(DOWNLOADER_ENV)
        # The runtime does not read proxy settings: boto3 downloads through the proxy instead.
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert _downloads(session, bucket, pool, 2, None).name == "boto3"
        with pytest.raises(
            UsageError, match="cannot download with the AWS Common Runtime: a proxy is configured"
        ):
            _downloads(session, bucket, pool, 2, "crt")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        chosen = _downloads(session, bucket, pool, 2, None)
        chosen.close(cancel=False)
        assert chosen.name == "crt"


def test_the_trail_is_found_with_describe_trails(moto, store):
    trail = plant_plain(moto, "found")
    cloudtrail = moto.session("eu-west-1").client("cloudtrail")
    cloudtrail.create_trail(Name="regional", S3BucketName=trail.bucket)
    cloudtrail.create_trail(
        Name="everywhere", S3BucketName=trail.bucket, S3KeyPrefix="found", IsMultiRegionTrail=True
    )
    try:
        _, coverage = ingest_s3(store, moto.session("eu-west-1"), window=WINDOW)
        assert stored_ids(store) == trail.in_window_ids()
        assert {c.account for c in coverage} == set(ACCOUNTS)
        other = plant_plain(moto, "")
        cloudtrail.create_trail(Name="second", S3BucketName=other.bucket, IsMultiRegionTrail=True)
        with pytest.raises(UsageError, match="everywhere .*second"):
            ingest_s3(store, moto.session("eu-west-1"), window=WINDOW)
    finally:
        for name in ("regional", "everywhere", "second"):
            try:
                cloudtrail.delete_trail(Name=name)
            except cloudtrail.exceptions.TrailNotFoundException:
                pass
    with pytest.raises(SourceError, match="no CloudTrail trail delivering to S3 found in eu-west-1"):
        ingest_s3(store, moto.session("eu-west-1"), window=WINDOW)


# -- the command line ---------------------------------------------------------------------------


def test_cli_ingest_s3(moto, org_trail, small_trail, tmp_path):
    db = str(tmp_path / "t.duckdb")
    runner = CliRunner()
    env = moto.environ("eu-west-1")
    window = ["--since", "2026-01-20T23:10:30Z", "--until", "2026-01-21T23:10:30Z"]
    done = runner.invoke(
        main,
        [
            "ingest",
            "s3",
            "--bucket",
            org_trail.bucket,
            "--accounts",
            f"{ACCOUNTS[0]},{ACCOUNTS[1]}",
            "--regions",
            REGIONS[0],
            "--regions",
            REGIONS[1],
            *window,
            "--workers",
            "4",
            "--db",
            db,
        ],
        env=env,
    )
    assert done.exit_code == 0, done.output
    assert f"{len(org_trail.in_window_ids())} new events stored" in done.stderr
    assert done.stdout == ""

    done = runner.invoke(
        main,
        ["ingest", "s3", "--bucket", org_trail.bucket, "--regions", "ap-south-1", *window, "--db", db],
        env=env,
    )
    assert done.exit_code == 3
    assert "ap-south-1: failed: no CloudTrail logs for ap-south-1" in done.stderr

    bad_key = sorted(small_trail.logs)[50]  # delivered 2026-01-21T02:22Z
    moto.session().client("s3").put_object(Bucket=small_trail.bucket, Key=bad_key, Body=b"\x1f\x8bnot really")
    done = runner.invoke(main, ["ingest", "s3", "--bucket", small_trail.bucket, *window, "--db", db], env=env)
    assert done.exit_code == 2
    assert f"trailscan: s3://{small_trail.bucket}/{bad_key}: corrupt gzip" in done.stderr

    done = runner.invoke(
        main, ["ingest", "s3", "--bucket", "no-such-trail-bucket", "--since", "24h", "--db", db], env=env
    )
    assert done.exit_code == 2
    assert done.stderr.strip() == "trailscan: error: bucket no-such-trail-bucket does not exist"
