"""How fast is explaining, and does it grow with failures rather than with events?  (issue 5)

    python benchmarks/explain.py [--events 1000000] [--small 100000] [--failures 300] [--repeat 3]

Builds three DuckDB stores with trailscan's own schema and ingest:

- ``small``: ``--small`` healthy events + ``--failures`` failed events;
- ``large``: ``--events`` healthy events + the same failures;
- ``large, 2× failures``: ``--events`` healthy events + twice as many failures.

Healthy traffic comes from ``trailscan.generate.healthy_traffic`` (50,000 records,
ingested with ``Store.ingest_documents``), then is replicated in SQL with fresh event ids
and shifted times up to the wanted size: every row is a full CloudTrail record as the
store holds it (``raw`` included), at a fraction of the generation time.  The failures are
built like the test scenarios: refused web identities against roles whose trust policy
names another subject, successful web identities whose sessions are then refused API
calls (silent EC2 ``Client.UnauthorizedOperation`` and messages that name the reason —
every other one made through a role chain, the pod's session assuming a partner role),
node-role fallbacks and failed Pod Identity requests, over 30 workloads; beside them,
2,000 role sessions IAM users assumed and never used (minted, not refused); the inventory
(roles with trust and permission policies, annotated service accounts) is built in
memory so that every cause is computed, not skipped.

Beside them, the change events of issue 20 (each role created the day before the window,
its trust policy updated, its inline policy put and a managed policy attached in it, and
an SCP attached), so that every finding is judged as of its failures and their changes
read with one filtered scan (``collect_changes``, timed on its own: ≤ 0.5 s on the large store).

Then times ``explain_store(store, inventory, window=24h)`` (collect in SQL, explain per
group) on each store, best of ``--repeat``, and prints the times, the ratios
large/small (flat when cost does not grow with events) and 2×failures/large (about 2 at
most when cost grows with failures), and PASS/FAIL: large ≤ 3 s, large/small ≤ 2,
2×failures/large ≤ 2.5.  It checks that every failed event is in exactly one finding,
and that every call made through a role chain is its pod's (``exact``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trailscan.explain import explain_store
from trailscan.explain.changes import collect_changes
from trailscan.generate import (
    RoleSession,
    access_key_id,
    api_call,
    assume_role_call,
    healthy_traffic,
    iam_user_identity,
    pod_identity_agent_call,
    web_identity_call,
)
from trailscan.inventory import authorization_details_inventory
from trailscan.kube import ServiceAccount
from trailscan.model import Window
from trailscan.store import Store

ACCOUNT = "111122223333"
REGION = "eu-west-1"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(hours=24), NOW)
ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/5C1A7E0E5A1B2C3D4E5F60718293A4B5"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"
BASE_EVENTS = 50_000
WORKLOADS = 30
TARGET_SECONDS = 3.0
TARGET_EVENTS_RATIO = 2.0
TARGET_FAILURES_RATIO = 2.5
TARGET_CHANGES_SECONDS = 0.5
UNUSED_SESSIONS = 2_000


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def trust_document(n: int) -> dict:
    return policy({
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{ISSUER}:sub": f"system:serviceaccount:team-{n}:app-old",
                                       f"{ISSUER}:aud": "sts.amazonaws.com"}},
    })


S3_POLICY = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})


def changes(rng: random.Random) -> list[dict]:
    """Each role created the day before the window, its trust policy updated (URL-encoded, as
    IAM records it), its inline policy put, a managed policy attached in the window; an SCP
    attached.  The documents are today's, so the findings are the same as without them."""
    from urllib.parse import quote

    alice = iam_user_identity(ACCOUNT, "alice", "AKIAALICE00000000001")
    records = []

    def change(when: datetime, name: str, params: dict, source: str = "iam.amazonaws.com") -> None:
        records.append(api_call(rng, when=when, region="us-east-1", identity=alice, account=ACCOUNT,
                                event_source=source, event_name=name, read_only=False, request_parameters=params))

    for n in range(WORKLOADS):
        role = f"app-{n}"
        change(WINDOW.start - timedelta(hours=6), "CreateRole",
               {"roleName": role, "assumeRolePolicyDocument": quote(json.dumps(trust_document(n)))})
        change(WINDOW.start + timedelta(hours=12, minutes=n), "UpdateAssumeRolePolicy",
               {"roleName": role, "policyDocument": quote(json.dumps(trust_document(n)))})
        change(WINDOW.start + timedelta(hours=13, minutes=n), "PutRolePolicy",
               {"roleName": role, "policyName": "s3", "policyDocument": json.dumps(S3_POLICY)})
        change(WINDOW.start + timedelta(hours=14, minutes=n), "AttachRolePolicy",
               {"roleName": role, "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"})
    change(WINDOW.start + timedelta(hours=1), "AttachPolicy", {"policyId": "p-guard", "targetId": "ou-ab12-cdef3456"},
           "organizations.amazonaws.com")
    return records


def inventory():
    """Roles (trust for a neighbouring subject; permissions without the refused actions)
    and the service accounts annotated with them."""
    roles = []
    accounts = []
    for n in range(WORKLOADS):
        name = f"app-{n}"
        roles.append(
            {
                "Arn": f"arn:aws:iam::{ACCOUNT}:role/{name}",
                "RoleName": name,
                "AssumeRolePolicyDocument": trust_document(n),
                "RolePolicyList": [{"PolicyName": "s3", "PolicyDocument": S3_POLICY}],
                "AttachedManagedPolicies": [],
            }
        )
        accounts.append(ServiceAccount("", f"team-{n}", name, role_arn=f"arn:aws:iam::{ACCOUNT}:role/{name}"))
    found = authorization_details_inventory({"RoleDetailList": roles, "Policies": []}, source="benchmark")
    return found.with_service_accounts(accounts)


def failures(rng: random.Random, count: int) -> list[dict]:
    """About *count* failed events (plus the successful web identities and role chains that minted
    sessions, and sessions minted and never used)."""
    records: list[dict] = []
    per_kind = max(1, count // 4)
    span = (WINDOW.end - WINDOW.start).total_seconds()

    def when() -> datetime:
        return WINDOW.start + timedelta(seconds=rng.random() * span)

    sessions = []
    for n in range(WORKLOADS):
        subject = f"system:serviceaccount:team-{n}:app-{n}"
        role = f"arn:aws:iam::{ACCOUNT}:role/app-{n}"
        session = RoleSession(ACCOUNT, f"app-{n}", f"botocore-session-{n}", access_key_id(rng))
        sessions.append(session)
        records.append(web_identity_call(
            rng, when=WINDOW.start + timedelta(minutes=n), region=REGION, account=ACCOUNT, provider_arn=PROVIDER,
            subject=subject, role_arn=role, session=session,
        ))
    for i in range(per_kind):  # refused web identities: the trust names another subject
        n = i % WORKLOADS
        records.append(web_identity_call(
            rng, when=when(), region=REGION, account=ACCOUNT, provider_arn=PROVIDER,
            subject=f"system:serviceaccount:team-{n}:app-{n}", role_arn=f"arn:aws:iam::{ACCOUNT}:role/app-{n}",
            error_code="AccessDenied", session_name=f"s-{i}",
        ))
    for i in range(per_kind):  # silent EC2 refusals: the role's policies decide
        session = sessions[i % WORKLOADS]
        moment = when()
        records.append(api_call(
            rng, when=moment, region=REGION, account=ACCOUNT, identity=session.user_identity(moment),
            event_source="ec2.amazonaws.com", event_name=rng.choice(["DescribeVolumes", "DescribeSnapshots"]),
            error_code="Client.UnauthorizedOperation", error_message="You are not authorized to perform this operation.",
        ))
    for i in range(per_kind):  # messages that name the reason; every other call through a role chain
        session = sessions[i % WORKLOADS]
        moment = when()
        if i % 2:
            chained = RoleSession(ACCOUNT, f"app-{i % WORKLOADS}-partner", f"chain-{i}", access_key_id(rng))
            records.append(assume_role_call(rng, when=moment - timedelta(minutes=10), region=REGION, account=ACCOUNT,
                                            caller=session.user_identity(moment), session=chained))
            session = chained
        records.append(api_call(
            rng, when=moment, region=REGION, account=ACCOUNT, identity=session.user_identity(moment),
            event_source="sqs.amazonaws.com", event_name="SendMessage", read_only=False, error_code="AccessDenied",
            error_message=f"User: {session.arn} is not authorized to perform: sqs:sendmessage on resource: "
                          f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders because no identity-based policy allows the "
                          "sqs:sendmessage action",
        ))
    for i in range(UNUSED_SESSIONS):  # role sessions minted and never refused: read past, not followed
        records.append(assume_role_call(rng, when=when(), region=REGION, account=ACCOUNT,
                                        caller=iam_user_identity(ACCOUNT, f"ci-{i % 7}", f"AKIACI{i % 7:014d}"),
                                        session=RoleSession(ACCOUNT, "deployer", f"ci-{i}", access_key_id(rng))))
    node = RoleSession(ACCOUNT, "eks-node-group-role", "i-0a1b2c3d4e5f60718", access_key_id(rng), ec2_role_delivery=True)
    for i in range(count - 3 * per_kind):  # node-role fallbacks and Pod Identity refusals
        moment = when()
        if i % 2:
            records.append(api_call(
                rng, when=moment, region=REGION, account=ACCOUNT, identity=node.user_identity(moment),
                event_source="s3.amazonaws.com", event_name="GetObject", error_code="AccessDenied",
                error_message=f'User: {node.arn} is not authorized to perform: s3:GetObject on resource: '
                              '"arn:aws:s3:::data/x" because no identity-based policy allows the s3:GetObject action',
                user_agent="Boto3/1.9.100 Python/3.7.3 Linux/4.14 Botocore/1.12.100",
            ))
        else:
            records.append(pod_identity_agent_call(
                rng, when=moment, region=REGION, account=ACCOUNT, node=node, cluster="prod", created=moment,
                error_code="AccessDenied",
            ))
    records.extend(changes(rng))
    return records


def build_store(path: Path, healthy: int, failed: int, seed: int) -> None:
    rng = random.Random(seed)
    with Store.open(path, memory_limit="4GB") as store:
        base = list(healthy_traffic(rng, count=min(BASE_EVENTS, healthy), start=WINDOW.start, end=WINDOW.end,
                                    accounts=[ACCOUNT], regions=[REGION, "us-east-1"]))
        store.ingest_documents([json.dumps({"Records": base[i:i + 5000]}) for i in range(0, len(base), 5000)],
                               origin="benchmark")
        copies = (healthy + BASE_EVENTS - 1) // BASE_EVENTS
        if copies > 1:
            # Replicate the generated rows with fresh ids, spread over the same window.
            columns = [row[0] for row in store.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'event_rows' "
                "ORDER BY ordinal_position"
            ).fetchall()]
            replaced = {
                "event_id": "md5(event_id || '#' || n)",
                "event_time": "event_time - to_seconds((n * 7919) % 3600)",
            }
            select = ", ".join(replaced.get(column, column) for column in columns)
            store.con.execute(
                f"INSERT INTO event_rows ({', '.join(columns)}) SELECT {select} FROM event_rows, range(1, $copies) AS r(n)",
                {"copies": copies},
            )
            excess = store.count_events() - healthy
            if excess > 0:
                store.con.execute(
                    "DELETE FROM event_rows WHERE event_id IN (SELECT event_id FROM event_rows ORDER BY event_id LIMIT $n)",
                    {"n": excess},
                )
        store.ingest_documents([json.dumps({"Records": failures(rng, failed)})], origin="benchmark")
        store.con.execute("CHECKPOINT")


def measure(path: Path, inventory_, repeat: int) -> tuple[float, int, int, int, float]:
    best = float("inf")
    best_changes = float("inf")
    with Store.open(path, read_only=True) as store:
        events = store.count_events()
        failed = store.query(
            "SELECT count(*) FROM events WHERE error_code IS NOT NULL AND event_time >= $s AND event_time < $e",
            {"s": WINDOW.start, "e": WINDOW.end},
        )[1][0][0]
        for _ in range(repeat):
            started = time.perf_counter()
            report = explain_store(store, inventory_, window=WINDOW)
            best = min(best, time.perf_counter() - started)
            started = time.perf_counter()
            read = collect_changes(store, WINDOW)
            best_changes = min(best_changes, time.perf_counter() - started)
    if len(read) != 4 * WORKLOADS + 1:
        raise SystemExit(f"FAIL: {len(read)} change events read, {4 * WORKLOADS + 1} written")
    if not any(f.changes for f in report.findings):
        raise SystemExit("FAIL: no finding names the changes to its role")
    explained = sum(f.count for f in report.findings)
    chained = [f for f in report.findings if f.role_arn and f.role_arn.endswith("-partner")]
    if not chained or any(f.workload.resolution != "exact" or "role chain" not in f.explanation for f in chained):
        raise SystemExit("FAIL: calls made through a role chain were not traced to their pods")
    return best, events, failed, explained, best_changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="healthy events of the large store")
    parser.add_argument("--small", type=int, default=100_000, help="healthy events of the small store")
    parser.add_argument("--failures", type=int, default=300, help="failed events (the 2× store has twice as many)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the stores in this folder and keep them")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="trailscan-bench-explain-"))
    folder.mkdir(parents=True, exist_ok=True)
    cases = [
        ("small", args.small, args.failures),
        ("large", args.events, args.failures),
        ("large, 2x failures", args.events, 2 * args.failures),
    ]
    paths = {}
    for name, healthy, failed in cases:
        path = folder / f"explain-{healthy}-{failed}.duckdb"
        if not path.exists():
            started = time.perf_counter()
            try:
                build_store(path, healthy, failed, seed=11)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            print(f"built {name}: {path.name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        paths[name] = path

    inv = inventory()
    results = {}
    changes_seconds = {}
    print(f"{'store':<20} {'events':>10} {'failed':>7} {'findings s':>11} {'changes s':>10}")
    for name, _healthy, _failed in cases:
        seconds, events, failed, explained, changes_seconds[name] = measure(paths[name], inv, args.repeat)
        results[name] = seconds
        print(f"{name:<20} {events:>10,} {failed:>7} {seconds:>11.3f} {changes_seconds[name]:>10.3f}")
        if explained != failed:
            print(f"FAIL: {name}: {explained} events in findings, {failed} failed events", file=sys.stderr)
            return 1
    by_events = results["large"] / results["small"]
    by_failures = results["large, 2x failures"] / results["large"]
    print(f"large / small (10x events, same failures): {by_events:.2f}x")
    print(f"2x failures / large (same events):         {by_failures:.2f}x")
    checks = [
        (f"large store ≤ {TARGET_SECONDS} s", results["large"] <= TARGET_SECONDS),
        (f"large/small ≤ {TARGET_EVENTS_RATIO}", by_events <= TARGET_EVENTS_RATIO),
        (f"2x failures/large ≤ {TARGET_FAILURES_RATIO}", by_failures <= TARGET_FAILURES_RATIO),
        (f"change events of the large store ≤ {TARGET_CHANGES_SECONDS} s", changes_seconds["large"] <= TARGET_CHANGES_SECONDS),
    ]
    for label, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
