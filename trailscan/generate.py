"""The project's own CloudTrail generator: realistic records in AWS's delivery layout.

Used by the benchmarks, the tests and ``trailscan demo``.  Records are shaped as
CloudTrail writes them (``userIdentity`` with ``sessionContext``, ``tlsDetails``,
``recipientAccountId`` …) so that every stage sees what it sees in production.
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import gzip
import hashlib
import random
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

#: (eventSource, eventName, readOnly) of ordinary healthy workload traffic.
HEALTHY_CALLS: tuple[tuple[str, str, bool], ...] = (
    ("s3.amazonaws.com", "ListBuckets", True),
    ("sts.amazonaws.com", "GetCallerIdentity", True),
    ("ec2.amazonaws.com", "DescribeInstances", True),
    ("ec2.amazonaws.com", "DescribeVolumes", True),
    ("dynamodb.amazonaws.com", "DescribeTable", True),
    ("sqs.amazonaws.com", "GetQueueAttributes", True),
    ("kms.amazonaws.com", "Decrypt", True),
    ("secretsmanager.amazonaws.com", "GetSecretValue", True),
    ("ssm.amazonaws.com", "GetParameter", True),
    ("logs.amazonaws.com", "CreateLogStream", False),
    ("monitoring.amazonaws.com", "PutMetricData", False),
    ("ecr.amazonaws.com", "GetAuthorizationToken", True),
)

USER_AGENTS = (
    "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.210 md/arch#x86_64 lang/python#3.11.8 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.69",
    "aws-sdk-go-v2/1.26.1 os/linux lang/go#1.22.2 md/GOOS#linux md/GOARCH#amd64 api/sts#1.28.6",
    "aws-sdk-java/2.25.16 Linux/5.10.213 OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/legacy",
    "aws-sdk-js/3.540.0 ua/2.0 os/linux#5.10.213 lang/js md/nodejs#20.12.0 api/s3#3.540.0",
)


def event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def access_key_id(rng: random.Random, prefix: str = "ASIA") -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return prefix + "".join(rng.choice(alphabet) for _ in range(16))


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RoleSession:
    """An assumed-role session as CloudTrail shows it in ``userIdentity``."""

    account: str
    role_name: str
    session_name: str
    access_key_id: str
    role_id: str = "AROAEXAMPLEROLEID0001"
    ec2_role_delivery: bool = False

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.role_name}"

    @property
    def arn(self) -> str:
        return f"arn:aws:sts::{self.account}:assumed-role/{self.role_name}/{self.session_name}"

    def user_identity(self, created: datetime) -> dict:
        context: dict = {
            "sessionIssuer": {
                "type": "Role",
                "principalId": self.role_id,
                "arn": self.role_arn,
                "accountId": self.account,
                "userName": self.role_name,
            },
            "attributes": {"creationDate": iso(created), "mfaAuthenticated": "false"},
        }
        if self.ec2_role_delivery:
            context["ec2RoleDelivery"] = "2.0"
        else:
            context["webIdFederationData"] = {}
        return {
            "type": "AssumedRole",
            "principalId": f"{self.role_id}:{self.session_name}",
            "arn": self.arn,
            "accountId": self.account,
            "accessKeyId": self.access_key_id,
            "sessionContext": context,
        }


def api_call(
    rng: random.Random,
    *,
    when: datetime,
    region: str,
    identity: dict,
    account: str,
    event_source: str,
    event_name: str,
    read_only: bool = True,
    user_agent: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    request_parameters: dict | None = None,
    response_elements: dict | None = None,
    resources: list | None = None,
) -> dict:
    """One management API call record, field order as CloudTrail writes it."""
    service = event_source.split(".")[0]
    record: dict = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": iso(when),
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "userAgent": user_agent or rng.choice(USER_AGENTS),
    }
    if error_code:
        record["errorCode"] = error_code
        record["errorMessage"] = error_message or ""
    record["requestParameters"] = request_parameters
    record["responseElements"] = response_elements
    record["requestID"] = event_id(rng)
    record["eventID"] = event_id(rng)
    record["readOnly"] = read_only
    if resources:
        record["resources"] = resources
    record["eventType"] = "AwsApiCall"
    record["managementEvent"] = True
    record["recipientAccountId"] = account
    record["eventCategory"] = "Management"
    record["tlsDetails"] = {
        "tlsVersion": "TLSv1.3",
        "cipherSuite": "TLS_AES_128_GCM_SHA256",
        "clientProvidedHostHeader": f"{service}.{region}.amazonaws.com",
    }
    return record


def healthy_traffic(
    rng: random.Random,
    *,
    count: int,
    start: datetime,
    end: datetime,
    accounts: Iterable[str],
    regions: Iterable[str],
) -> Iterator[dict]:
    """``count`` successful calls spread over the window, accounts and regions."""
    accounts, regions = list(accounts), list(regions)
    sessions = [
        RoleSession(
            account=acct,
            role_name=f"app-{n}",
            session_name=f"botocore-session-{1700000000 + n}",
            access_key_id=access_key_id(rng),
        )
        for acct in accounts
        for n in range(8)
    ]
    span = (end - start).total_seconds()
    for _ in range(count):
        session = rng.choice(sessions)
        source, name, read_only = rng.choice(HEALTHY_CALLS)
        when = start + timedelta(seconds=rng.random() * span)
        yield api_call(
            rng,
            when=when,
            region=rng.choice(regions),
            identity=session.user_identity(when - timedelta(minutes=5)),
            account=session.account,
            event_source=source,
            event_name=name,
            read_only=read_only,
            request_parameters={"maxResults": 100} if read_only else {"logGroupName": "/app/service"},
        )


def delivery_key(account: str, region: str, delivered: datetime, rng: random.Random,
                 *, prefix: str = "", org_id: str | None = None) -> str:
    """The S3 key CloudTrail uses for a log file delivered at ``delivered``."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    stamp = delivered.strftime("%Y%m%dT%H%MZ")
    suffix = "".join(rng.choice(alphabet) for _ in range(16))
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    org = f"{org_id}/" if org_id else ""
    return (
        f"{head}AWSLogs/{org}{account}/CloudTrail/{region}/{delivered:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{stamp}_{suffix}.json.gz"
    )


def delivery_files(
    records: Iterable[dict],
    rng: random.Random,
    *,
    prefix: str = "",
    org_id: str | None = None,
    per_file: int = 100,
    lag: timedelta = timedelta(minutes=5),
) -> Iterator[tuple[str, bytes]]:
    """Group records as CloudTrail delivers them: per account, region and ~5 minutes,
    gzip-compressed ``{"Records": [...]}`` documents under the dated key layout.

    Yields ``(key, gzip bytes)``.  The key's timestamp is the delivery time (event time
    plus ``lag``), which is why readers must look at a margin around their window.
    """
    groups: dict[tuple[str, str, datetime], list[dict]] = {}
    for record in records:
        when = datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        slot = when.replace(minute=when.minute - when.minute % 5, second=0)
        groups.setdefault((record["recipientAccountId"], record["awsRegion"], slot), []).append(record)
    for (account, region, slot), batch in sorted(groups.items(), key=lambda item: item[0][2]):
        batch.sort(key=lambda r: r["eventTime"])
        for offset in range(0, len(batch), per_file):
            chunk = batch[offset : offset + per_file]
            key = delivery_key(account, region, slot + lag, rng, prefix=prefix, org_id=org_id)
            yield key, gzip.compress(orjson.dumps({"Records": chunk}), compresslevel=6)


def write_delivery_tree(root: Path, files: Iterable[tuple[str, bytes]]) -> int:
    """Write ``(key, bytes)`` pairs below ``root``; returns the number of files."""
    count = 0
    for key, body in files:
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        count += 1
    return count


def sample_failures(rng: random.Random, *, start: datetime, end: datetime, account: str, region: str) -> Iterator[dict]:
    """A handful of the refusals trailscan exists to explain: a web-identity token
    refused for a role, and calls denied to a workload's role and to a node role."""
    provider = f"arn:aws:iam::{account}:oidc-provider/oidc.eks.{region}.amazonaws.com/id/5C1A7E0E5A1B2C3D4E5F60718293A4B5"
    span = (end - start).total_seconds()
    for n in range(3):
        when = start + timedelta(seconds=rng.random() * span)
        yield api_call(
            rng,
            when=when,
            region=region,
            account=account,
            identity={
                "type": "WebIdentityUser",
                "principalId": f"{provider}:sts.amazonaws.com:system:serviceaccount:payments:api",
                "userName": "system:serviceaccount:payments:api",
                "identityProvider": provider,
            },
            event_source="sts.amazonaws.com",
            event_name="AssumeRoleWithWebIdentity",
            error_code="AccessDenied",
            error_message="An unknown error occurred",
            request_parameters={
                "roleArn": f"arn:aws:iam::{account}:role/payments-api",
                "roleSessionName": f"botocore-session-{1700000000 + n}",
            },
        )
    worker = RoleSession(account, "orders-worker", "botocore-session-1700000100", access_key_id(rng))
    node = RoleSession(account, "eks-node-group-role", "i-0a1b2c3d4e5f60718", access_key_id(rng), ec2_role_delivery=True)
    for n in range(4):
        when = start + timedelta(seconds=rng.random() * span)
        yield api_call(
            rng,
            when=when,
            region=region,
            account=account,
            identity=worker.user_identity(when - timedelta(minutes=3)),
            event_source="sqs.amazonaws.com",
            event_name="SendMessage",
            read_only=False,
            error_code="AccessDenied",
            error_message=(
                f"User: {worker.arn} is not authorized to perform: sqs:sendmessage on resource: "
                f"arn:aws:sqs:{region}:{account}:orders because no identity-based policy allows the "
                "sqs:sendmessage action"
            ),
        )
        yield api_call(
            rng,
            when=when,
            region=region,
            account=account,
            identity=node.user_identity(when - timedelta(hours=1)),
            event_source="ec2.amazonaws.com",
            event_name="DescribeSnapshots",
            error_code="Client.UnauthorizedOperation",
            error_message="You are not authorized to perform this operation.",
        )



# --------------------------------------------------------------------------
# Web identity, Pod Identity and digest files, as AWS writes them
# --------------------------------------------------------------------------

#: The ``aud`` of an IRSA token unless ``eks.amazonaws.com/audience`` says otherwise.
STS_AUDIENCE = "sts.amazonaws.com"


def web_identity_call(
    rng: random.Random,
    *,
    when: datetime,
    region: str,
    account: str,
    provider_arn: str,
    subject: str,
    role_arn: str,
    audience: str = STS_AUDIENCE,
    user_agent: str | None = None,
    error_code: str | None = None,
    error_message: str = "An unknown error occurred",
    session: RoleSession | None = None,
    global_endpoint: bool = False,
) -> dict:
    """An ``sts:AssumeRoleWithWebIdentity`` record: a pod trading its service-account
    token for role credentials.

    Refused (``error_code`` given): the shape of the real refusal — ``WebIdentityUser``
    identity, ``responseElements`` null, the role in ``resources``, and more often than
    not the message "An unknown error occurred".  Granted: ``session`` is the role
    session minted, and ``responseElements`` carries its access key (and a session
    token, which trailscan must never store).  ``global_endpoint``: the SDK called
    ``sts.amazonaws.com`` (old SDK defaults), which CloudTrail records in us-east-1.
    """
    identity = {
        "type": "WebIdentityUser",
        "principalId": f"{provider_arn}:{audience}:{subject}",
        "userName": subject,
        "identityProvider": provider_arn,
    }
    session_name = session.session_name if session else f"botocore-session-{int(when.timestamp()) - 3}"
    record = api_call(
        rng,
        when=when,
        region=region,
        identity=identity,
        account=account,
        event_source="sts.amazonaws.com",
        event_name="AssumeRoleWithWebIdentity",
        user_agent=user_agent,
        error_code=error_code,
        error_message=error_message if error_code else None,
        request_parameters={"roleArn": role_arn, "roleSessionName": session_name},
        resources=[{"accountId": role_arn.split(":")[4], "type": "AWS::IAM::Role", "ARN": role_arn}],
    )
    record["sourceIPAddress"] = f"52.{rng.randrange(16, 95)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if global_endpoint:
        record["tlsDetails"]["clientProvidedHostHeader"] = "sts.amazonaws.com"
    if not error_code and session is not None:
        record["responseElements"] = {
            "credentials": {
                "accessKeyId": session.access_key_id,
                "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE" + "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(40)),
                "expiration": _sts_time(when + timedelta(hours=1)),
            },
            "subjectFromWebIdentityToken": subject,
            "assumedRoleUser": {"assumedRoleId": f"{session.role_id}:{session.session_name}", "arn": session.arn},
            "provider": provider_arn,
            "audience": audience,
        }
    return record


def pod_identity_assume_role(
    rng: random.Random,
    *,
    when: datetime,
    region: str,
    account: str,
    role_arn: str,
    cluster: str,
    namespace: str,
    service_account: str,
    pod: str,
    error_code: str | None = None,
    error_message: str = "Access denied",
    session: RoleSession | None = None,
) -> dict:
    """The ``sts:AssumeRole`` EKS Pod Identity makes on a pod's behalf: the caller is the
    service ``pods.eks.amazonaws.com``, and the pod is named only in the session tags.
    Granted with a ``session``, the response names its access key, as in the real record."""
    tags = [
        {"key": "eks-cluster-arn", "value": f"arn:aws:eks:{region}:{account}:cluster/{cluster}"},
        {"key": "eks-cluster-name", "value": cluster},
        {"key": "kubernetes-namespace", "value": namespace},
        {"key": "kubernetes-service-account", "value": service_account},
        {"key": "kubernetes-pod-name", "value": pod},
        {"key": "kubernetes-pod-uid", "value": str(uuid.UUID(int=rng.getrandbits(128), version=4))},
    ]
    record = api_call(
        rng,
        when=when,
        region=region,
        account=account,
        identity={"type": "AWSService", "invokedBy": "pods.eks.amazonaws.com"},
        event_source="sts.amazonaws.com",
        event_name="AssumeRole",
        user_agent="pods.eks.amazonaws.com",
        error_code=error_code,
        error_message=error_message if error_code else None,
        request_parameters={
            "roleArn": role_arn,
            "roleSessionName": f"eks-{cluster}-{pod}"[:64],
            "durationSeconds": 21600,
            "tags": tags,
            "transitiveTagKeys": [tag["key"] for tag in tags],
        },
    )
    record["sourceIPAddress"] = "pods.eks.amazonaws.com"
    if not error_code and session is not None:
        record["responseElements"] = {
            "credentials": {
                "accessKeyId": session.access_key_id,
                "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE" + "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(40)),
                "expiration": _sts_time(when + timedelta(hours=6)),
            },
            "assumedRoleUser": {"assumedRoleId": f"{session.role_id}:{session.session_name}", "arn": session.arn},
        }
    return record


def iam_user_identity(account: str, name: str, key: str, user_id: str = "AIDAEXAMPLEUSERID0001") -> dict:
    """``userIdentity`` of a call signed with an IAM user's access key, as CloudTrail writes it."""
    return {
        "type": "IAMUser",
        "principalId": user_id,
        "arn": f"arn:aws:iam::{account}:user/{name}",
        "accountId": account,
        "accessKeyId": key,
        "userName": name,
    }


def assume_role_call(
    rng: random.Random,
    *,
    when: datetime,
    region: str,
    account: str,
    caller: dict,
    session: RoleSession,
    user_agent: str | None = None,
    error_code: str | None = None,
    error_message: str = "",
    duration_seconds: int = 3600,
) -> dict:
    """An ``sts:AssumeRole`` record made with the ``caller``'s credentials (its
    ``userIdentity``: an IAM user's, or a role session's — a role chain).  Granted, the
    response names the new ``session``'s access key, as in the real records (the session
    token is there too, and must never be stored); refused, the response is null."""
    record = api_call(
        rng,
        when=when,
        region=region,
        identity=caller,
        account=account,
        event_source="sts.amazonaws.com",
        event_name="AssumeRole",
        user_agent=user_agent,
        error_code=error_code,
        error_message=error_message if error_code else None,
        request_parameters={
            "roleArn": session.role_arn,
            "roleSessionName": session.session_name,
            "durationSeconds": duration_seconds,
        },
        resources=[{"accountId": session.account, "type": "AWS::IAM::Role", "ARN": session.role_arn}],
    )
    if not error_code:
        record["responseElements"] = {
            "credentials": {
                "accessKeyId": session.access_key_id,
                "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE" + "".join(rng.choice("ABCDEFGHIJ0123456789") for _ in range(40)),
                "expiration": _sts_time(when + timedelta(seconds=duration_seconds)),
            },
            "assumedRoleUser": {"assumedRoleId": f"{session.role_id}:{session.session_name}", "arn": session.arn},
        }
    return record


def _sts_time(moment: datetime) -> str:
    """STS's way of writing a credential's expiry in CloudTrail: ``Nov 28, 2026, 7:00:00 AM``."""
    hour = moment.hour % 12 or 12
    return f"{moment:%b %d, %Y}, {hour}:{moment:%M:%S} {'AM' if moment.hour < 12 else 'PM'}"


_LOG_KEY = re.compile(
    r"^(?P<head>.*AWSLogs/(?:o-[a-z0-9]+/)?)(?P<account>\d{12})/CloudTrail/(?P<region>[a-z0-9-]+)/"
    r"\d{4}/\d{2}/\d{2}/[^/]+_(?P<stamp>\d{8}T\d{4})Z_[^/]+\.json\.gz$"
)


def digest_files(
    files: Iterable[tuple[str, bytes]],
    rng: random.Random,
    *,
    bucket: str,
    trail_name: str,
    home_region: str,
) -> Iterator[tuple[str, bytes]]:
    """The hourly digest files CloudTrail writes beside ``files`` (the ``(key, gzip
    bytes)`` pairs of :func:`delivery_files`): per account and region, under
    ``CloudTrail-Digest/``, each listing the hour's log files with the SHA-256 of their
    content and chained to the previous digest.  Readers must skip them.
    """
    hours: dict[tuple[str, str, str, datetime], list[tuple[str, bytes]]] = {}
    for key, body in files:
        match = _LOG_KEY.match(key)
        if not match:
            continue
        delivered = datetime.strptime(match["stamp"], "%Y%m%dT%H%M").replace(tzinfo=timezone.utc)
        hour = delivered.replace(minute=0) + timedelta(hours=1)
        hours.setdefault((match["head"], match["account"], match["region"], hour), []).append((key, body))
    previous: dict[tuple[str, str], tuple[str, str, str]] = {}  # key, signature, SHA-256
    for (head, account, region, end), members in sorted(hours.items(), key=lambda item: item[0][3]):
        logs = []
        for key, body in members:
            times = [r["eventTime"] for r in orjson.loads(gzip.decompress(body))["Records"]]
            logs.append({
                "s3Bucket": bucket,
                "s3Object": key,
                "hashValue": hashlib.sha256(gzip.decompress(body)).hexdigest(),
                "hashAlgorithm": "SHA-256",
                "newestEventTime": max(times),
                "oldestEventTime": min(times),
            })
        key = (
            f"{head}{account}/CloudTrail-Digest/{region}/{end:%Y/%m/%d}/"
            f"{account}_CloudTrail-Digest_{region}_{trail_name}_{home_region}_{end:%Y%m%dT%H%M%S}Z.json.gz"
        )
        prior_key, prior_signature, prior_hash = previous.get((account, region), (None, None, None))
        document = {
            "awsAccountId": account,
            "digestStartTime": iso(end - timedelta(hours=1)),
            "digestEndTime": iso(end),
            "digestS3Bucket": bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": "".join(rng.choice("0123456789abcdef") for _ in range(32)),
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": max(log["newestEventTime"] for log in logs),
            "oldestEventTime": min(log["oldestEventTime"] for log in logs),
            "previousDigestS3Bucket": bucket if prior_key else None,
            "previousDigestS3Object": prior_key,
            "previousDigestHashValue": prior_hash,
            "previousDigestHashAlgorithm": "SHA-256" if prior_key else None,
            "previousDigestSignature": prior_signature,
            "logFiles": logs,
        }
        content = orjson.dumps(document)
        signature = "".join(rng.choice("0123456789abcdef") for _ in range(512))
        previous[(account, region)] = (key, signature, hashlib.sha256(content).hexdigest())
        yield key, gzip.compress(content, compresslevel=6)


def main(argv: list[str] | None = None) -> int:
    """``python -m trailscan.generate OUT [--events N]``: write a sample trail of the
    last 24 hours in S3 delivery layout (gzip files under ``OUT/AWSLogs/…``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trailscan.generate", description=main.__doc__)
    parser.add_argument("out", type=Path, help="folder to write the delivery files into")
    parser.add_argument("--events", type=int, default=2000, help="healthy events (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    end = datetime.now(timezone.utc).replace(microsecond=0)
    start = end - timedelta(hours=24)
    accounts, regions = ["111122223333"], ["eu-west-1", "us-east-1"]
    records = list(healthy_traffic(rng, count=args.events, start=start, end=end, accounts=accounts, regions=regions))
    records += list(sample_failures(rng, start=start, end=end, account=accounts[0], region=regions[0]))
    count = write_delivery_tree(args.out, delivery_files(records, rng))
    print(f"wrote {len(records)} events in {count} files under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
