"""The LookupEvents source, driven through real boto3 clients against the loopback server
(SPEC §4 lookup, §9): pagination, the window and its 90-day floor, regions in parallel, the
2 requests/s ceiling, quick mode, resuming, AccessDenied, and the CLI."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from click.testing import CliRunner

from tests.conftest import run_cli
from tests.support.lookup_server import DEFAULT_ACCOUNT, ApiError, LookupServer
from trailscan.cli import main
from trailscan.errors import SourceError
from trailscan.generate import (
    RoleSession,
    access_key_id,
    api_call,
    healthy_traffic,
    iam_user_identity,
    iso,
    pod_identity_agent_call,
    pod_identity_assume_role,
    sample_failures,
    web_identity_call,
)
from trailscan.model import COMPLETE, FAILED, PARTIAL, Window
from trailscan.sources.lookup import (
    GLOBAL_SOURCES,
    TokenBucket,
    _gaps,
    _merge,
    change_event_names,
    default_regions,
    ingest_lookup,
    minted_session,
)
from trailscan.store import Store

ACCOUNT = DEFAULT_ACCOUNT
FAST = 200.0  # requests/s for tests about something other than pacing (server and client alike)


def now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def traffic(count: int, start: datetime, end: datetime, region: str, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return list(healthy_traffic(rng, count=count, start=start, end=end, accounts=[ACCOUNT], regions=[region]))


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Standard AWS configuration pointing CloudTrail at a loopback server: ``aws(server)``
    returns a ``boto3.Session`` built the way users build one."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def session_for(server: LookupServer, region: str = "eu-west-1") -> boto3.Session:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", server.endpoint_url)
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)

    return session_for


def stored_ids(store: Store) -> list[str]:
    return [row[0] for row in store.query("SELECT event_id FROM events")[1]]


class DenyingServer(LookupServer):
    """The loopback server, refusing ``cloudtrail:LookupEvents`` in some regions after
    ``deny[region]`` successful calls, as an SCP or a reader role without the permission does."""

    def __init__(self, *, deny: dict[str, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.deny = deny

    def _answer(self, headers, match, account, region, operation, params):
        if region in self.deny:
            served = sum(1 for call in self.requests if call.region == region and call.error is None)
            if served >= self.deny[region]:
                raise ApiError(
                    "AccessDeniedException",
                    f"User: arn:aws:sts::{account}:assumed-role/reader/me is not authorized to perform: "
                    "cloudtrail:LookupEvents because no identity-based policy allows the "
                    "cloudtrail:LookupEvents action",
                )
        return super()._answer(headers, match, account, region, operation, params)


# -- small parts ---------------------------------------------------------------------------------


def test_token_bucket_paces_on_a_fake_clock():
    clock = [100.0]
    bucket = TokenBucket(2.0, clock=lambda: clock[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.5, 1.0]
    clock[0] += 1.5  # the three reservations are used up by now
    assert bucket.reserve() == 0.0
    clock[0] += 10.0  # idle time never builds more than the burst
    assert [bucket.reserve() for _ in range(2)] == [0.0, 0.5]
    burst = TokenBucket(2.0, burst=2.0, clock=lambda: clock[0])
    assert [burst.reserve() for _ in range(3)] == [0.0, 0.0, 0.5]
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_spans_and_gaps():
    assert _merge([(5, 7), (1, 3), (2, 4)]) == [(1, 4), (5, 7)]
    assert _gaps(0, 10, []) == [(0, 10)]
    assert _gaps(0, 10, [(2, 4), (6, 8)]) == [(8, 10), (4, 6), (0, 2)]  # newest first
    assert _gaps(0, 10, [(-5, 20)]) == []
    assert _gaps(0, 10, [(5, 20)]) == [(0, 5)]
    assert _gaps(0, 10, [(-5, 5)]) == [(5, 10)]


def test_default_regions():
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="eu-west-1")
    assert default_regions(session) == ["us-east-1", "eu-west-1"]
    assert default_regions(session, ["ap-south-1", "eu-west-1"]) == ["us-east-1", "eu-west-1", "ap-south-1"]
    assert default_regions(boto3.Session(region_name="us-east-1")) == ["us-east-1"]


def test_minted_sessions_from_real_pod_identity_events(real_data):
    folder = real_data / "aws-samples-eks-security-immersion-day"
    assume_role = json.loads((folder / "3.eks-pod-identity-deep-dive_index.en.md.block3.json").read_text())
    session = minted_session(assume_role)
    assert session.access_key_id == "ASIA37QFXJP5MQOWRZ6Q"
    assert session.session_name == "eks-eksworksho-app1-498124c2-a555-40bf-9059-ca9a26821eb0"
    assert session.expires - session.minted == 6 * 3600  # "Apr 16, 2024, 3:20:04 PM", minted 09:20:04
    assert session.attribute == ("AccessKeyId", "ASIA37QFXJP5MQOWRZ6Q")
    # AssumeRoleForPodIdentity itself: the node role calls it, responseElements are null.
    page = json.loads((folder / "3.eks-pod-identity-deep-dive_index.en.md.block1.json").read_text())
    assert minted_session(json.loads(page["Events"][0]["CloudTrailEvent"])) is None
    # An AssumeRole by anyone else is not a Pod Identity session.
    assert minted_session({**assume_role, "userIdentity": {"type": "IAMUser", "userName": "alice"}}) is None
    assert minted_session({**assume_role, "errorCode": "AccessDenied"}) is None


# -- paging every management event ----------------------------------------------------------------


def test_every_event_of_every_page_is_stored_once(aws):
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=24), end)
    with LookupServer(rate=FAST, burst=FAST) as server:
        server.add_events("eu-west-1", traffic(1234, window.start, window.end, "eu-west-1"))
        server.add_events(
            "eu-west-1",
            [
                {  # a data event: LookupEvents never shows it
                    **traffic(1, window.start, window.end, "eu-west-1", seed=9)[0],
                    "eventID": "data-1",
                    "eventName": "GetObject",
                    "managementEvent": False,
                    "eventCategory": "Data",
                }
            ],
        )
        with Store.open(":memory:") as store:
            # The window's paging (the day before's change lookups: test_the_day_before_…).
            result, coverages = ingest_lookup(store, aws(server), window=window, rate=FAST, account=ACCOUNT,
                                              change_lookback=False)

            ids = stored_ids(store)
            assert len(ids) == len(set(ids)) == 1234 and "data-1" not in ids
            assert result.records == result.new_events == 1234 and result.files == 25 + 1
            # Default regions: us-east-1 (empty here) and the session's region.
            assert server.calls_by_region == {"eu-west-1": 25, "us-east-1": 1} and server.throttled == 0
            for call in server.requests:
                assert call.params["MaxResults"] == 50 and "LookupAttributes" not in call.params
            assert [(c.region, c.status, c.events) for c in coverages] == [
                ("us-east-1", COMPLETE, 0),
                ("eu-west-1", COMPLETE, 1234),
            ]
            assert all("data events" in c.detail and c.account == ACCOUNT for c in coverages)
            rows = store.query(
                "SELECT region, status, events FROM coverage WHERE source = 'lookup' ORDER BY region"
            )[1]
            assert rows == [("eu-west-1", "complete", 1234), ("us-east-1", "complete", 0)]


def test_the_day_before_the_window_is_read_for_its_change_events_only(aws):
    """A full read pages the window, then looks up the change events of the 24 hours before
    it by name (the change a refusal began after may precede the window): IAM's and
    Organizations' in us-east-1, where CloudTrail records them, the regional ones everywhere;
    nothing else of the day before is stored."""
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=6), end)
    rng = random.Random(12)
    alice = iam_user_identity(ACCOUNT, "alice", "AKIAALICE0000000001")

    def call(when, region, source, name, *, read_only=False):
        return api_call(rng, when=when, region=region, account=ACCOUNT, identity=alice, event_source=source,
                        event_name=name, read_only=read_only, request_parameters={"roleName": "payments-api"})

    trust = call(window.start - timedelta(hours=3), "us-east-1", "iam.amazonaws.com", "UpdateAssumeRolePolicy")
    association = call(window.start - timedelta(hours=5), "eu-west-1", "eks.amazonaws.com",
                       "DeletePodIdentityAssociation")
    read = call(window.start - timedelta(hours=1), "us-east-1", "iam.amazonaws.com", "GetRole", read_only=True)
    older = call(window.start - timedelta(hours=30), "us-east-1", "iam.amazonaws.com", "PutRolePolicy")
    with LookupServer(rate=FAST, burst=FAST) as server:
        server.add_events("us-east-1", [trust, read, older, *traffic(60, window.start, end, "us-east-1", seed=2)])
        server.add_events("eu-west-1", [association, *traffic(80, window.start, end, "eu-west-1", seed=3)])
        with Store.open(":memory:") as store:
            _, coverages = ingest_lookup(store, aws(server), window=window, rate=FAST, account=ACCOUNT)
            ids = set(stored_ids(store))
    assert {trust["eventID"], association["eventID"]} <= ids and len(ids) == 60 + 80 + 2
    assert not {read["eventID"], older["eventID"]} & ids
    lookups = [c for c in server.requests if "LookupAttributes" in c.params]
    asked = {(c.region, c.params["LookupAttributes"][0]["AttributeValue"]) for c in lookups}
    changes = change_event_names()
    assert asked == {(region, name) for source, name in changes for region in ("us-east-1", "eu-west-1")
                     if source not in GLOBAL_SOURCES or region == "us-east-1"}
    assert {(c.params["StartTime"], c.params["EndTime"]) for c in lookups} == {
        ((window.start - timedelta(hours=24)).timestamp(), window.start.timestamp())}
    by_region = {c.region: c for c in coverages}
    assert all(c.status == COMPLETE for c in coverages)
    assert "and 1 change event of the 24 hours before the window" in by_region["us-east-1"].detail
    assert "and 1 change event of the 24 hours before the window" in by_region["eu-west-1"].detail


def test_the_window_is_half_open_and_clamped_to_90_days(aws):
    end = now() - timedelta(hours=2)
    records = traffic(6, end - timedelta(days=100), end, "eu-west-1")
    at = {
        "before": end - timedelta(days=1, seconds=1),
        "start": end - timedelta(days=1),
        "inside": end - timedelta(hours=5),
        "end": end,  # the window is [start, end): not this one
        "day-89": end - timedelta(days=89),
        "day-91": end - timedelta(days=91),
    }
    for record, (name, moment) in zip(records, at.items(), strict=True):
        record.update(eventID=name, eventTime=iso(moment))
    with LookupServer(rate=FAST, burst=FAST) as server:
        server.add_events("eu-west-1", records)
        session = aws(server)
        with Store.open(":memory:") as store:
            _, [day] = ingest_lookup(
                store,
                session,
                window=Window(at["start"], end),
                regions=["eu-west-1"],
                rate=FAST,
                account=ACCOUNT,
                change_lookback=False,
            )
            assert sorted(stored_ids(store)) == ["inside", "start"]
            assert day.status == COMPLETE and "clamped" not in day.detail
            sent = server.requests[-1].params
            assert (sent["StartTime"], sent["EndTime"]) == (at["start"].timestamp(), end.timestamp())

            asked = Window(end - timedelta(days=120), end)
            _, [long] = ingest_lookup(
                store, session, window=asked, regions=["eu-west-1"], rate=FAST, account=ACCOUNT, change_lookback=False
            )
            assert "day-89" in stored_ids(store) and "day-91" not in stored_ids(store)
            assert long.status == PARTIAL and "clamped to LookupEvents' 90 days" in long.detail
            floor = long.window_start
            assert timedelta(days=89, hours=23) < now() - floor <= timedelta(days=90)
            assert server.requests[-1].params["StartTime"] >= floor.timestamp()

            calls = server.calls
            old = Window(end - timedelta(days=200), end - timedelta(days=95))
            _, [gone] = ingest_lookup(
                store, session, window=old, regions=["eu-west-1"], rate=FAST, account=ACCOUNT
            )
            assert gone.status == FAILED and "only the last 90 days" in gone.detail and server.calls == calls


def test_regions_are_read_in_parallel(aws):
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=6), end)
    regions = ["us-east-1", "eu-west-1", "ap-southeast-2"]
    with LookupServer(rate=10.0, burst=2.0) as server:
        for n, region in enumerate(regions):
            server.add_events(region, traffic(400, window.start, window.end, region, seed=n))
        with Store.open(":memory:") as store:
            _, coverages = ingest_lookup(
                store, aws(server), window=window, regions=regions, rate=10.0, account=ACCOUNT, change_lookback=False
            )
            assert store.count_events() == 1200 and all(c.status == COMPLETE for c in coverages)
    # 8 pages a region at 10/s: ~0.7 s each; side by side, not one region after the other.
    times = {r: [c.at for c in server.requests if c.region == r] for r in regions}
    assert all(len(t) == 8 for t in times.values())
    assert max(t[0] for t in times.values()) < min(t[-1] for t in times.values())
    overall = max(t[-1] for t in times.values()) - min(t[0] for t in times.values())
    assert overall < 1.3 * max(t[-1] - t[0] for t in times.values())
    assert server.throttled == 0


def test_at_the_real_two_requests_a_second_nothing_is_throttled(aws):
    """Both sides at AWS's 2 requests/s and burst 2, per region: a 200-call run (four regions
    side by side, 50 pages each, ~25 s) has ≤ 5% of its calls throttled — none, in fact — and
    takes the floor's time (pages ÷ 2 per second, regions in parallel)."""
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=24), end)
    regions = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2"]
    with LookupServer() as server:  # rate 2, burst 2, per region
        for n, region in enumerate(regions):
            server.add_events(region, traffic(50 * 50 - 10, window.start, window.end, region, seed=n))
        with Store.open(":memory:") as store:
            started = time.monotonic()
            _, coverages = ingest_lookup(store, aws(server), window=window, regions=regions, account=ACCOUNT,
                                         change_lookback=False)
            elapsed = time.monotonic() - started
            assert store.count_events() == len(regions) * (50 * 50 - 10)
    assert all(c.status == COMPLETE for c in coverages)
    assert server.calls == 200 and server.throttled <= 0.05 * server.calls
    floor = 50 / 2.0
    assert floor - 1.0 <= elapsed <= floor * 1.15


def test_throttling_is_retried_and_never_a_failure(aws):
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=3), end)
    with LookupServer() as server:  # 2 requests/s; the client asks for ten times that
        server.add_events("eu-west-1", traffic(230, window.start, window.end, "eu-west-1"))
        with Store.open(":memory:") as store:
            _, [coverage] = ingest_lookup(
                store, aws(server), window=window, regions=["eu-west-1"], rate=20.0, account=ACCOUNT,
                change_lookback=False,
            )
            assert store.count_events() == 230
    assert server.throttled > 0 and coverage.status == COMPLETE
    retried = f"({server.throttled} retried after throttling or a transient error)"
    assert f"5 pages in {server.calls} calls {retried}" in coverage.detail


# -- quick mode ---------------------------------------------------------------------------------------


def quick_fixture(window: Window, rng: random.Random) -> tuple[dict[str, list[dict]], set[str], set[str]]:
    """Records per region, the event ids quick mode must find, and those it cannot see."""
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/5C1A7E0E5A1B2C3D"
    regions = {
        "us-east-1": traffic(150, window.start, window.end, "us-east-1", seed=3),
        "eu-west-1": traffic(400, window.start, window.end, "eu-west-1", seed=4),
    }
    regions["eu-west-1"] += list(
        sample_failures(rng, start=window.start, end=window.end, account=ACCOUNT, region="eu-west-1")
    )
    must, hidden = set(), set()
    for record in regions["eu-west-1"]:
        if record.get("errorCode") and record["eventName"] == "AssumeRoleWithWebIdentity":
            must.add(record["eventID"])
        elif record.get("errorCode"):  # orders-worker's and the node role's: no session minted
            hidden.add(record["eventID"])

    def mint(region: str, when: datetime, session: RoleSession, *, with_response: bool = True) -> dict:
        return web_identity_call(
            rng,
            when=when,
            region=region,
            account=ACCOUNT,
            provider_arn=provider,
            subject="system:serviceaccount:payments:api",
            role_arn=session.role_arn,
            # Without the session, a granted call whose response is not in the record.
            session=session if with_response else None,
            session_name=session.session_name,
        )

    def denied(region: str, when: datetime, session: RoleSession, name: str = "SendMessage") -> dict:
        return api_call(
            rng,
            when=when,
            region=region,
            account=ACCOUNT,
            identity=session.user_identity(when),
            event_source="sqs.amazonaws.com",
            event_name=name,
            read_only=False,
            error_code="AccessDenied",
            error_message=f"User: {session.arn} is not authorized to perform: sqs:{name}",
        )

    # A session minted in the window by the regional STS endpoint: its denied calls in both regions.
    api = RoleSession(ACCOUNT, "payments-api", "botocore-session-1", access_key_id(rng))
    t0 = window.start + timedelta(hours=2)
    regions["eu-west-1"].append(mint("eu-west-1", t0, api))
    found = [denied("eu-west-1", t0 + timedelta(minutes=m), api) for m in (5, 20, 50)]
    found.append(denied("us-east-1", t0 + timedelta(minutes=30), api, "ListQueues"))
    # Minted by the global endpoint (logged in us-east-1) 30 min before the window: its call inside.
    early = RoleSession(ACCOUNT, "payments-api", "botocore-session-2", access_key_id(rng))
    regions["us-east-1"].append(mint("us-east-1", window.start - timedelta(minutes=30), early))
    found.append(denied("eu-west-1", window.start + timedelta(minutes=10), early))
    # A web-identity event without responseElements: found by session name (Username).
    named = RoleSession(ACCOUNT, "reports", "reports-nightly", access_key_id(rng))
    regions["eu-west-1"].append(mint("eu-west-1", t0, named, with_response=False))
    found.append(denied("eu-west-1", t0 + timedelta(minutes=7), named, "ReceiveMessage"))
    # Pod Identity: the agent (node role) calls AssumeRoleForPodIdentity, EKS calls AssumeRole.
    node = RoleSession(
        ACCOUNT, "eks-node-role", "i-0a1b2c3d4e5f60718", access_key_id(rng), ec2_role_delivery=True
    )
    pod = RoleSession(ACCOUNT, "orders-pod", "eks-prod-orders-7d9f-1b2c", access_key_id(rng))
    t1 = window.start + timedelta(hours=5)
    for minute, error in ((0, None), (1, "AccessDenied")):
        afpi = pod_identity_agent_call(
            rng,
            when=t1 + timedelta(minutes=minute),
            region="eu-west-1",
            account=ACCOUNT,
            node=node,
            cluster="prod",
            created=t1,
            error_code=error,
        )
        regions["eu-west-1"].append(afpi)
        must.add(afpi["eventID"])
    assume = pod_identity_assume_role(
        rng,
        when=t1,
        region="eu-west-1",
        account=ACCOUNT,
        role_arn=pod.role_arn,
        cluster="prod",
        namespace="orders",
        service_account="worker",
        pod="orders-7d9f-1b2c",
        session=pod,
    )
    regions["eu-west-1"].append(assume)
    must.add(assume["eventID"])
    found.append(denied("eu-west-1", t1 + timedelta(minutes=3), pod, "DeleteMessage"))
    for record in found:
        regions[record["awsRegion"]].append(record)
        must.add(record["eventID"])
    return regions, must, hidden


def test_quick_mode_finds_refusals_and_the_sessions_they_minted(aws):
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=24), end)
    records, must, hidden = quick_fixture(window, random.Random(5))
    # A change to a role, by a person, where IAM records it: quick mode reads change events too.
    change = api_call(random.Random(6), when=window.start - timedelta(hours=2), region="us-east-1", account=ACCOUNT,
                      identity=iam_user_identity(ACCOUNT, "alice", "AKIAALICE0000000001"),
                      event_source="iam.amazonaws.com", event_name="UpdateAssumeRolePolicy", read_only=False,
                      request_parameters={"roleName": "payments-api", "policyDocument": "{}"})
    records["us-east-1"].append(change)
    must.add(change["eventID"])
    with LookupServer(rate=FAST, burst=FAST) as server:
        for region, batch in records.items():
            server.add_events(region, batch)
        with Store.open(":memory:") as store:
            _, coverages = ingest_lookup(
                store, aws(server), window=window, quick=True, rate=FAST, account=ACCOUNT
            )
            ids = set(stored_ids(store))
            failed_web = store.query(
                "SELECT count(*) FROM events "
                "WHERE event_name = 'AssumeRoleWithWebIdentity' AND error_code IS NOT NULL"
            )
            tokens = store.query("SELECT count(*) FROM events WHERE raw::VARCHAR LIKE '%IQoJb3JpZ2lu%'")
    assert must <= ids, sorted(must - ids)
    assert not hidden & ids  # quick mode cannot see these: the coverage must say so
    assert failed_web[1] == [(3,)] and tokens[1] == [(0,)]
    everything = sum(len(batch) for batch in records.values())
    assert len(ids) < everything / 10
    for call in server.requests:
        assert len(call.params.get("LookupAttributes", [])) == 1
    keys = Counter(call.params["LookupAttributes"][0]["AttributeKey"] for call in server.requests)
    # One lookup per change event name: IAM's and Organizations' in us-east-1 only, the others in both regions.
    changes = change_event_names()
    regional = sum(1 for source, _ in changes if source not in GLOBAL_SOURCES)
    expected = 5 + len(changes) + regional  # AssumeRole only where Pod Identity is
    assert keys == {"EventName": expected, "AccessKeyId": 6, "Username": 2}
    for coverage in coverages:
        assert coverage.status == PARTIAL
        assert "NOT visible in quick mode" in coverage.detail and "node's instance role" in coverage.detail
        assert "run without --quick" in coverage.detail and "data events" in coverage.detail
    eu = next(c for c in coverages if c.region == "eu-west-1")
    assert "5 AssumeRoleWithWebIdentity (3 refused) and 2 AssumeRoleForPodIdentity (1 refused)" in eu.detail
    assert "4 sessions minted in the window (3 by access key, 1 by session name)" in eu.detail
    us = next(c for c in coverages if c.region == "us-east-1")
    assert "1 change events (IAM and Organizations ones in us-east-1)" in us.detail


def test_quick_mode_says_when_iam_changes_cannot_be_read(aws):
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=24), end)
    records, _, _ = quick_fixture(window, random.Random(5))
    with LookupServer(rate=FAST, burst=FAST) as server:
        server.add_events("eu-west-1", records["eu-west-1"])
        with Store.open(":memory:") as store:
            _, coverages = ingest_lookup(store, aws(server), window=window, quick=True, rate=FAST, account=ACCOUNT,
                                         regions=["eu-west-1"])
    [coverage] = coverages
    assert "IAM and Organizations changes NOT read" in coverage.detail and coverage.status == PARTIAL


# -- interruption, resuming, errors ------------------------------------------------------------------


def test_an_interrupted_run_resumes_where_it_stopped(aws):
    end = now() - timedelta(hours=2)
    window = Window(end - timedelta(hours=24), end)
    with LookupServer(rate=20.0, burst=2.0) as server:  # slow enough that the interruption lands mid-way
        server.add_events("eu-west-1", traffic(1500, window.start, window.end, "eu-west-1"))
        session = aws(server)
        with Store.open(":memory:") as store:
            seen = []

            def impatient(label, done, total):
                seen.append((label, done, total))
                if done == 10:
                    raise KeyboardInterrupt

            with pytest.raises(KeyboardInterrupt):
                ingest_lookup(
                    store,
                    session,
                    window=window,
                    regions=["eu-west-1"],
                    rate=20.0,
                    account=ACCOUNT,
                    progress=impatient,
                )
            first_calls = server.calls
            kept = store.count_events()
            assert 10 * 50 <= kept < 1500
            status, detail = store.query("SELECT status, detail FROM coverage")[1][0]
            assert status == PARTIAL and "interrupted" in detail
            # Progress: pages done and an estimated total (30 pages) from the time covered.
            assert seen[0][0] == "lookup eu-west-1: connecting"  # before the first answer
            pages = [entry for entry in seen if ": " not in entry[0]]
            assert pages[0][0] == "lookup eu-west-1" and all(22 <= total <= 40 for _, _, total in pages[3:])

            server.reset_counters()
            _, [coverage] = ingest_lookup(
                store, session, window=window, regions=["eu-west-1"], rate=20.0, account=ACCOUNT
            )
            ids = stored_ids(store)
            assert len(ids) == len(set(ids)) == 1500
            assert coverage.status == COMPLETE and "already stored by an earlier run" in coverage.detail
            paged = len(server.paging_calls())  # then the day before's change lookups, by name
            assert paged <= 30 - 10 + 1 and first_calls + paged <= 30 + 2

            server.reset_counters()  # done: the same window again costs nothing
            _, [again] = ingest_lookup(
                store, session, window=window, regions=["eu-west-1"], rate=FAST, account=ACCOUNT
            )
            assert server.paging_calls() == [] and again.status == COMPLETE and store.count_events() == 1500


def test_access_denied_is_partial_or_failed_coverage_never_an_empty_answer(aws):
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=12), end)
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    with DenyingServer(deny={"eu-west-1": 3, "ap-south-1": 0}, rate=FAST, burst=FAST) as server:
        for n, region in enumerate(regions):
            server.add_events(region, traffic(500, window.start, window.end, region, seed=n))
        with Store.open(":memory:") as store:
            _, coverages = ingest_lookup(
                store, aws(server), window=window, regions=regions, rate=FAST, account=ACCOUNT
            )
            by_region = {c.region: c for c in coverages}
            per_region = dict(store.query("SELECT aws_region, count(*) FROM events GROUP BY ALL")[1])
    assert by_region["us-east-1"].status == COMPLETE and per_region["us-east-1"] == 500
    assert by_region["eu-west-1"].status == PARTIAL and by_region["eu-west-1"].events == 150
    assert by_region["ap-south-1"].status == FAILED and by_region["ap-south-1"].events == 0
    for region in ("eu-west-1", "ap-south-1"):
        assert by_region[region].detail.startswith("stopped by AccessDeniedException: User: arn:aws:sts::")
        assert "cloudtrail:LookupEvents" in by_region[region].detail
    assert server.calls_by_region["ap-south-1"] == 1  # not retried: an authorization error is final


def test_no_credentials_is_a_clear_error(aws, monkeypatch):
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    with Store.open(":memory:") as store, pytest.raises(SourceError, match="no AWS credentials"):
        ingest_lookup(
            store, boto3.Session(region_name="eu-west-1"), window=Window(now() - timedelta(hours=1), now())
        )


# -- the command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_sts(moto_server) -> str:
    """The moto server (tests/conftest.py), for ``sts:GetCallerIdentity`` (the account the CLI
    labels coverage with)."""
    return moto_server.endpoint_url


def cli_env(moto_sts: str, lookup: LookupServer, tmp_path) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto_sts,  # STS (and everything else) …
        "AWS_ENDPOINT_URL_CLOUDTRAIL": lookup.endpoint_url,  # … but CloudTrail: the loopback server
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": str(tmp_path / "absent-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "TRAILSCAN_DB": str(tmp_path / "store.duckdb"),
    }


@pytest.fixture
def no_profile(monkeypatch):
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)


@pytest.mark.usefixtures("no_profile")
def test_cli_ingest_lookup(moto_sts, tmp_path):
    end = now() - timedelta(hours=1)
    with LookupServer() as server:
        for n, region in enumerate(["us-east-1", "eu-west-1", "ap-south-1"]):
            server.add_events(region, traffic(60, end - timedelta(hours=23), end, region, seed=n))
        env = cli_env(moto_sts, server, tmp_path)
        done = run_cli("ingest", "lookup", "--since", "24h", env=env)
        assert done.returncode == 0, done.stderr
        # Default regions; then the day before's change events, looked up by name.
        assert Counter(c.region for c in server.paging_calls()) == {"us-east-1": 2, "eu-west-1": 2}
        lookups = len(server.requests) - 4
        assert f"read 120 events in {4 + lookups} pages from 2 regions: 120 new events stored" in done.stderr
        assert "us-east-1: complete" in done.stderr and "data events" in done.stderr
        assert done.stdout == ""

        server.reset_counters()
        done = CliRunner().invoke(
            main,
            [
                "ingest",
                "lookup",
                "--since",
                "2026-01-01",
                "--until",
                "25h",
                "--regions",
                "eu-west-1,ap-south-1",
                "--regions",
                "us-east-1",
            ],
            env=env,
        )
        assert done.exit_code == 3, done.stderr  # clamped to 90 days: not complete
        assert set(server.calls_by_region) == {"eu-west-1", "ap-south-1", "us-east-1"}
        assert "clamped to LookupEvents' 90 days" in done.stderr

        with Store.open(tmp_path / "store.duckdb") as store:
            assert store.count_events() == 120
            assert {row[0] for row in store.query("SELECT DISTINCT account FROM coverage")[1]} == {ACCOUNT}


@pytest.mark.usefixtures("no_profile")
def test_cli_access_denied_exits_3(moto_sts, tmp_path):
    end = now() - timedelta(hours=1)
    with DenyingServer(deny={"eu-west-1": 0}) as server:
        server.add_events("us-east-1", traffic(20, end - timedelta(hours=5), end, "us-east-1"))
        done = CliRunner().invoke(
            main, ["ingest", "lookup", "--since", "6h", "--quick"], env=cli_env(moto_sts, server, tmp_path)
        )
    assert done.exit_code == 3
    assert "eu-west-1: failed" in done.stderr and "AccessDeniedException" in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("trailscan: error: LookupEvents coverage is not complete")
    )
    assert done.stdout == ""


def test_cli_rejects_a_bad_window_and_a_missing_profile(tmp_path):
    runner = CliRunner()
    done = runner.invoke(
        main, ["ingest", "lookup", "--since", "yesterday"], env={"TRAILSCAN_DB": str(tmp_path / "s.duckdb")}
    )
    assert done.exit_code == 2 and "neither a duration nor a date" in done.stderr
    env = {
        "TRAILSCAN_DB": str(tmp_path / "s.duckdb"),
        "AWS_PROFILE": "nowhere",
        "AWS_CONFIG_FILE": str(tmp_path / "absent-config"),
    }
    done = runner.invoke(main, ["ingest", "lookup", "--since", "1h"], env=env)
    assert done.exit_code == 2 and "The config profile (nowhere) could not be found" in done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_pacing_adapts_to_a_strict_one_second_sliding_window(aws, record_property):
    """Issue 22.4: against 2 requests/s enforced as a strict sliding window, at most 5% of
    the calls are throttled (evenly spaced requests had a quarter) and the run takes
    within 5% of the floor (pages ÷ 2 per second, regions in parallel)."""
    end = now() - timedelta(hours=1)
    window = Window(end - timedelta(hours=24), end)
    regions = ["us-east-1", "eu-west-1"]
    pages = 40
    with LookupServer(sliding_window=True) as server:
        for n, region in enumerate(regions):
            server.add_events(region, traffic(pages * 50 - 10, window.start, window.end, region, seed=n))
        with Store.open(":memory:") as store:
            started = time.monotonic()
            _, coverages = ingest_lookup(store, aws(server), window=window, regions=regions, account=ACCOUNT,
                                         change_lookback=False)
            elapsed = time.monotonic() - started
            assert store.count_events() == len(regions) * (pages * 50 - 10)
    assert all(c.status == COMPLETE for c in coverages)
    floor = pages / 2.0
    record_property("throttled_share", round(server.throttled / server.calls, 4))
    record_property("seconds_over_floor", round(elapsed / floor, 4))
    assert server.throttled <= 0.05 * server.calls, (server.throttled, server.calls)
    assert elapsed <= floor * 1.05 + 0.5, (elapsed, floor)  # the first pair goes out at once: floor − 0.5 s


@pytest.fixture
def dropping_endpoint():
    """A loopback endpoint that drops packets: a listening socket that never accepts, its
    accept queue filled, so the kernel drops every further SYN and a connect hangs."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(1.0)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.skip("this kernel does not drop SYNs on a full accept queue")
    except OSError:
        pass
    finally:
        probe.close()
    yield f"http://127.0.0.1:{port}"
    for sock in (*fillers, listener):
        sock.close()


def test_a_network_that_drops_packets_is_given_up_within_30_s_with_progress(
        dropping_endpoint, monkeypatch, tmp_path, record_property):
    """Issue 22.4: LookupEvents against a packet-dropping endpoint says connecting, then
    retrying, on the progress line, and gives up within ~30 s with a failed coverage that
    names the timeout (before: ~170 s of a blank progress line)."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", dropping_endpoint)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1")
    end = now() - timedelta(hours=1)
    lines: list[str] = []
    started = time.monotonic()
    with Store.open(":memory:") as store:
        try:
            _, coverages = ingest_lookup(store, session, window=Window(end - timedelta(hours=1), end),
                                         regions=["eu-west-1"], progress=lambda text, *_: lines.append(text))
            detail = " ".join(c.detail for c in coverages)
            assert all(c.status == FAILED for c in coverages), coverages
        except SourceError as error:
            detail = str(error)
    elapsed = time.monotonic() - started
    record_property("seconds_to_give_up", round(elapsed, 1))
    assert elapsed <= 30.0, elapsed
    assert "timeout" in detail.lower() or "timed out" in detail.lower(), detail
    assert any(line.endswith(": connecting") for line in lines), lines
    assert any(": retrying: no answer (ConnectTimeoutError)" in line for line in lines), lines
