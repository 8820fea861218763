"""The loopback LookupEvents server, driven by real boto3 clients (SPEC §4 lookup, §9)."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.lookup_server import LookupServer, lookup_username
from trailscan.generate import RoleSession, api_call, pod_identity_agent_call, web_identity_call

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
NO_RETRIES = Config(retries={"total_max_attempts": 1})
OIDC_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
WEB_IDENTITY = {
    "type": "WebIdentityUser",
    "principalId": f"{OIDC_PROVIDER}:sts.amazonaws.com:system:serviceaccount:payments:api",
    "userName": "system:serviceaccount:payments:api",
    "identityProvider": OIDC_PROVIDER,
}
NODE = RoleSession("123456789012", "eks-node-role", "i-064d652934ecf0bfc", "ASIANODEEXAMPLE", ec2_role_delivery=True)
NODE_SESSION = NODE.user_identity(NOW - timedelta(hours=1))
IAM_USER = {
    "type": "IAMUser",
    "principalId": "AIDAEXAMPLE",
    "arn": "arn:aws:iam::123456789012:user/alice",
    "accountId": "123456789012",
    "accessKeyId": "AKIAALICEEXAMPLE",
    "userName": "alice",
}


def record(event_id, when, *, name="DescribeInstances", source="ec2.amazonaws.com",
           identity=IAM_USER, read_only=True, resources=None, **extra):
    """A management-event record (``trailscan.generate.api_call``), ``extra`` fields over it."""
    return {
        **api_call(random.Random(event_id), when=when, region="eu-west-1", identity=identity, account="123456789012",
                   event_source=source, event_name=name, read_only=read_only, resources=resources, event_id=event_id),
        **extra,
    }


def client_for(server, region="eu-west-1", config=NO_RETRIES, key="testing"):
    return boto3.client(
        "cloudtrail",
        region_name=region,
        endpoint_url=server.endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key="testing",
        config=config,
    )


def ids(events):
    return [event["EventId"] for event in events]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture
def server():
    """A fast server (no throttling in practice) with a frozen clock."""
    with LookupServer(rate=1000.0, burst=1000.0, clock=lambda: NOW) as running:
        yield running


# -- protocol ---------------------------------------------------------------------------------


def test_botocore_request_and_response_shapes(server):
    rec = record("e-1", NOW - timedelta(hours=1), resources=[
        {"ARN": "arn:aws:ec2:eu-west-1:123456789012:instance/i-1", "type": "AWS::EC2::Instance"}
    ])
    server.add_events("eu-west-1", [rec])
    start = NOW - timedelta(days=1)
    answer = client_for(server).lookup_events(StartTime=start, EndTime=NOW, MaxResults=5)

    sent = server.requests[-1]
    assert (sent.operation, sent.region) == ("LookupEvents", "eu-west-1")
    assert sent.account == "123456789012"
    assert sent.params == {"StartTime": int(start.timestamp()), "EndTime": int(NOW.timestamp()),
                           "MaxResults": 5}
    assert "NextToken" not in answer
    [event] = answer["Events"]
    assert event["EventTime"] == NOW - timedelta(hours=1)
    assert json.loads(event.pop("CloudTrailEvent")) == rec
    event.pop("EventTime")
    assert event == {
        "EventId": "e-1", "EventName": "DescribeInstances", "ReadOnly": "true",
        "AccessKeyId": "AKIAALICEEXAMPLE", "EventSource": "ec2.amazonaws.com", "Username": "alice",
        "Resources": [{"ResourceType": "AWS::EC2::Instance",
                       "ResourceName": "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"}],
    }


def raw_post(server, body, target="LookupEvents", content_type="application/x-amz-json-1.1",
             authorization="AWS4-HMAC-SHA256 Credential=testing/20261128/eu-west-1/cloudtrail/"
                           "aws4_request, SignedHeaders=host, Signature=00"):
    headers = {"X-Amz-Target": f"com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.{target}",
               "Content-Type": content_type}
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(server.endpoint_url + "/", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_errors_are_json_protocol_errors(server):
    assert raw_post(server, {"MaxResults": 51}) == (
        400, {"__type": "InvalidMaxResultsException", "message": "MaxResults must be 1 to 50."})
    assert raw_post(server, {}, target="DescribeTrails")[1]["__type"] == "UnknownOperationException"
    assert raw_post(server, {}, content_type="application/json")[0] == 400
    assert raw_post(server, {}, authorization=None)[0] == 403
    assert raw_post(server, {}) == (200, {"Events": []})


def test_region_comes_from_the_credential_scope_and_account_from_the_key():
    with LookupServer(rate=1000.0, burst=1000.0, clock=lambda: NOW,
                      accounts={"AKIAOTHER": "222233334444"}) as server:
        server.add_events("eu-west-1", [record("mine", NOW)])
        server.add_events("eu-west-1", [record("theirs", NOW)], account="222233334444")
        assert ids(client_for(server).lookup_events()["Events"]) == ["mine"]
        assert ids(client_for(server, key="AKIAOTHER").lookup_events()["Events"]) == ["theirs"]
        assert [(c.account, c.region) for c in server.requests] == [
            ("123456789012", "eu-west-1"), ("222233334444", "eu-west-1")]

    with LookupServer(default_account=None, accounts={"AKIAKNOWN": "111122223333"}) as strict:
        with pytest.raises(ClientError) as excinfo:
            client_for(strict).lookup_events()
        assert error_code(excinfo) == "UnrecognizedClientException"


def test_endpoint_from_environment(server, monkeypatch):
    server.add_events("us-east-1", [record("global-sts", NOW, source="sts.amazonaws.com")])
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDTRAIL", server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.session.Session(region_name="us-east-1").client("cloudtrail", config=NO_RETRIES)
    assert ids(client.lookup_events()["Events"]) == ["global-sts"]


# -- pagination -------------------------------------------------------------------------------


def test_paginator_returns_every_event_once_newest_first(server):
    # 237 events, with runs sharing one eventTime so ties must be ordered too.
    records = [record(f"e-{n:04d}", NOW - timedelta(minutes=n // 3)) for n in range(237)]
    server.add_events("eu-west-1", records)
    paginator = client_for(server).get_paginator("lookup_events")

    pages = list(paginator.paginate(PaginationConfig={"PageSize": 20}))
    events = [event for page in pages for event in page["Events"]]

    assert len(pages) == 12 and server.calls == 12
    assert len(events) == 237 and len(set(ids(events))) == 237
    times = [event["EventTime"] for event in events]
    assert times == sorted(times, reverse=True)
    default_pages = list(paginator.paginate())
    assert [len(page["Events"]) for page in default_pages] == [50, 50, 50, 50, 37]
    assert ids(e for page in default_pages for e in page["Events"]) == ids(events)


def test_next_token_is_a_cursor_unaffected_by_new_events(server):
    older = [record(f"old-{n}", NOW - timedelta(hours=n + 1)) for n in range(6)]
    server.add_events("eu-west-1", older)
    client = client_for(server)
    first = client.lookup_events(MaxResults=3)
    server.add_events("eu-west-1", [record("newer", NOW - timedelta(minutes=1))])
    second = client.lookup_events(MaxResults=3, NextToken=first["NextToken"])
    assert ids(first["Events"]) + ids(second["Events"]) == [f"old-{n}" for n in range(6)]
    assert "NextToken" not in second


def test_next_token_only_valid_with_the_same_parameters(server):
    server.add_events("eu-west-1", [
        record(f"e-{n}", NOW - timedelta(minutes=n), name="AssumeRoleWithWebIdentity")
        for n in range(10)
    ])
    client = client_for(server)
    by_name = [{"AttributeKey": "EventName", "AttributeValue": "AssumeRoleWithWebIdentity"}]
    token = client.lookup_events(LookupAttributes=by_name, MaxResults=4)["NextToken"]

    # Same parameters (a different page size is allowed): the next page.
    page = client.lookup_events(LookupAttributes=by_name, MaxResults=3, NextToken=token)
    assert ids(page["Events"]) == ["e-4", "e-5", "e-6"]

    for changed in (
        {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}]},
        {},
        {"LookupAttributes": by_name, "StartTime": NOW - timedelta(days=1)},
        {"LookupAttributes": by_name, "EndTime": NOW},
    ):
        with pytest.raises(client.exceptions.InvalidNextTokenException):
            client.lookup_events(NextToken=token, **changed)
    with pytest.raises(client.exceptions.InvalidNextTokenException):
        elsewhere = client_for(server, region="us-east-1")
        elsewhere.lookup_events(LookupAttributes=by_name, NextToken=token)
    with pytest.raises(client.exceptions.InvalidNextTokenException):
        client.lookup_events(LookupAttributes=by_name, NextToken=token[:-4] + "AAAA")


# -- parameters -------------------------------------------------------------------------------


def test_one_lookup_attribute_at_most(server):
    client = client_for(server)
    two = [{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"},
           {"AttributeKey": "Username", "AttributeValue": "alice"}]
    with pytest.raises(client.exceptions.InvalidLookupAttributesException) as excinfo:
        client.lookup_events(LookupAttributes=two)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(client.exceptions.InvalidLookupAttributesException):
        client.lookup_events(
            LookupAttributes=[{"AttributeKey": "ErrorCode", "AttributeValue": "AccessDenied"}]
        )


def test_max_results_range(server):
    server.add_events("eu-west-1", [
        record(f"e-{n}", NOW - timedelta(seconds=n)) for n in range(60)
    ])
    client = client_for(server)
    with pytest.raises(client.exceptions.InvalidMaxResultsException):
        client.lookup_events(MaxResults=51)
    assert len(client.lookup_events()["Events"]) == 50
    assert len(client.lookup_events(MaxResults=1)["Events"]) == 1


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("EventId", "web", ["web"]),
        ("EventName", "AssumeRoleWithWebIdentity", ["web"]),
        ("EventSource", "eks-auth.amazonaws.com", ["node"]),
        ("ReadOnly", "false", ["web"]),
        ("Username", "system:serviceaccount:payments:api", ["web"]),
        ("Username", "i-064d652934ecf0bfc", ["node"]),  # an assumed role's session name
        ("Username", "eks-node-role", []),  # ...not its role name
        ("Username", "alice", ["user"]),
        ("AccessKeyId", "ASIANODEEXAMPLE", ["node"]),
        ("ResourceType", "AWS::EKS::Cluster", ["node"]),
        ("ResourceName", "arn:aws:eks:eu-west-1:123456789012:cluster/prod", ["node"]),
    ],
)
def test_lookup_attributes(server, key, value, expected):
    web = web_identity_call(
        random.Random(1), when=NOW - timedelta(minutes=3), region="eu-west-1", account="123456789012",
        provider_arn=OIDC_PROVIDER, subject="system:serviceaccount:payments:api",
        role_arn="arn:aws:iam::123456789012:role/payments-api", error_code="AccessDenied", event_id="web",
    )
    assert web["userIdentity"] == WEB_IDENTITY
    server.add_events("eu-west-1", [
        {**web, "readOnly": False},  # STS writes true: this makes it the one the ReadOnly filter finds
        pod_identity_agent_call(
            random.Random(2), when=NOW - timedelta(minutes=2), region="eu-west-1", account="123456789012",
            node=NODE, cluster="prod", event_id="node",
            resources=[{"ARN": "arn:aws:eks:eu-west-1:123456789012:cluster/prod", "type": "AWS::EKS::Cluster"}],
        ),
        record("user", NOW - timedelta(minutes=1)),
    ])
    answer = client_for(server).lookup_events(
        LookupAttributes=[{"AttributeKey": key, "AttributeValue": value}])
    assert ids(answer["Events"]) == expected


def test_lookup_username_shapes():
    assert lookup_username(NODE_SESSION) == "i-064d652934ecf0bfc"
    assert lookup_username({"type": "AssumedRole", "principalId": "AROA:sess"}) == "sess"
    assert lookup_username(WEB_IDENTITY) == "system:serviceaccount:payments:api"
    assert lookup_username({"type": "Root", "arn": "arn:aws:iam::123456789012:root"}) == "root"
    assert lookup_username({"type": "AWSService", "invokedBy": "eks.amazonaws.com"}) is None
    assert lookup_username(None) is None


def test_time_window_is_inclusive_and_validated(server):
    server.add_events("eu-west-1", [record(f"h-{n}", NOW - timedelta(hours=n)) for n in range(6)])
    client = client_for(server)
    answer = client.lookup_events(
        StartTime=NOW - timedelta(hours=4), EndTime=NOW - timedelta(hours=2)
    )
    assert ids(answer["Events"]) == ["h-2", "h-3", "h-4"]
    with pytest.raises(client.exceptions.InvalidTimeRangeException):
        client.lookup_events(StartTime=NOW, EndTime=NOW - timedelta(hours=1))


def test_ninety_day_floor(server):
    server.add_events("eu-west-1", [
        record("future", NOW + timedelta(minutes=5)),
        record("day-89", NOW - timedelta(days=89)),
        record("day-91", NOW - timedelta(days=91)),
    ])
    client = client_for(server)
    assert ids(client.lookup_events()["Events"]) == ["day-89"]
    clamped = client.lookup_events(
        StartTime=NOW - timedelta(days=120), EndTime=NOW + timedelta(days=1)
    )
    assert ids(clamped["Events"]) == ["day-89"]
    assert client.lookup_events(EndTime=NOW - timedelta(days=90, seconds=1))["Events"] == []

    server.clock = lambda: NOW + timedelta(days=2)  # two days later, day-89 has aged out
    assert ids(client.lookup_events()["Events"]) == ["future"]


def test_data_and_insight_events(server):
    server.add_events("eu-west-1", [
        record("mgmt", NOW - timedelta(minutes=3), name="GetBucketPolicy",
               source="s3.amazonaws.com"),
        record("data", NOW - timedelta(minutes=2), name="GetObject", source="s3.amazonaws.com",
               managementEvent=False, eventCategory="Data"),
        record("data-flag-only", NOW - timedelta(minutes=1), name="PutObject",
               source="s3.amazonaws.com", managementEvent=False),
        record("insight", NOW, eventType="AwsCloudTrailInsight", eventCategory="Insight"),
    ])
    client = client_for(server)
    assert ids(client.lookup_events()["Events"]) == ["mgmt"]
    by_source = [{"AttributeKey": "EventSource", "AttributeValue": "s3.amazonaws.com"}]
    assert ids(client.lookup_events(LookupAttributes=by_source)["Events"]) == ["mgmt"]
    assert ids(client.lookup_events(EventCategory="insight")["Events"]) == ["insight"]
    with pytest.raises(client.exceptions.InvalidEventCategoryException):
        client.lookup_events(EventCategory="data")


def test_regions_are_isolated(server):
    server.add_events("eu-west-1", [record("eu", NOW)])
    server.add_events("us-east-1", [record("us", NOW, source="sts.amazonaws.com")])
    assert ids(client_for(server, "eu-west-1").lookup_events()["Events"]) == ["eu"]
    assert ids(client_for(server, "us-east-1").lookup_events()["Events"]) == ["us"]
    assert client_for(server, "ap-south-1").lookup_events()["Events"] == []
    assert server.calls == 3
    assert server.calls_by_region == {"eu-west-1": 1, "us-east-1": 1, "ap-south-1": 1}


# -- throttling at the real 2 requests/s --------------------------------------------------------


def test_faster_than_two_per_second_is_throttled():
    with LookupServer() as server:
        client = client_for(server)
        outcomes = []
        for _ in range(6):
            try:
                client.lookup_events()
                outcomes.append("ok")
            except ClientError as error:
                outcomes.append(error.response["Error"]["Code"])
                assert error.response["Error"]["Message"] == "Rate exceeded"
                assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
                assert isinstance(error, client.exceptions.ClientError)
        assert outcomes[:2] == ["ok", "ok"]
        assert outcomes.count("ThrottlingException") >= 3
        assert server.throttled == outcomes.count("ThrottlingException")
        assert server.calls == 6

        # The limit is per account and region: another region is not throttled.
        client_for(server, region="us-east-1").lookup_events()


def test_paced_at_two_per_second_is_never_throttled():
    with LookupServer() as server:
        client = client_for(server)
        start = time.monotonic()
        for n in range(8):
            time.sleep(max(0.0, start + n * 0.5 - time.monotonic()))
            client.lookup_events()
        assert server.throttled == 0 and server.calls == 8


@pytest.mark.parametrize("retries", [{"mode": "standard", "total_max_attempts": 2},
                                     {"mode": "legacy", "total_max_attempts": 2}])
def test_botocore_retries_throttling(retries):
    """Both retry modes recognise our ThrottlingException (code + HTTP 400) and retry it."""
    with LookupServer() as server:
        plain, retrying = client_for(server), client_for(server, config=Config(retries=retries))
        plain.lookup_events()
        plain.lookup_events()  # the bucket is empty now
        try:
            retrying.lookup_events()  # throttled, then retried after a jittered backoff ≤ 1 s
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ThrottlingException"
        assert server.calls == 4
        assert server.requests[2].error == "ThrottlingException"
