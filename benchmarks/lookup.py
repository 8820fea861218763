"""LookupEvents source against its floor: ``python -m benchmarks.lookup`` (from the repository root).

A 24-hour window holding 20,000 management events in two regions (made by
:mod:`trailscan.generate`, with a few refusals planted) is served by the loopback LookupEvents
server at AWS's real limit — 2 requests/s per region, burst 2, 50 events a page.  The floor is
what that limit allows: the busiest region's pages ÷ 2 per second (regions are read side by
side).  The default mode should come within 15% of it, without being throttled; ``--quick`` is
measured on the same window for its call count, and checked to find every planted refusal it
is meant to see.

Options: ``--events N`` (default 20000), ``--seed``, ``--skip-full`` (quick mode only).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3

from tests.support.lookup_server import DEFAULT_ACCOUNT, LookupServer
from trailscan.generate import (
    RoleSession,
    access_key_id,
    api_call,
    healthy_traffic,
    sample_failures,
    web_identity_call,
)
from trailscan.model import Window
from trailscan.sources.lookup import PAGE_SIZE, RATE, ingest_lookup
from trailscan.store import Store

REGIONS = ("us-east-1", "eu-west-1")
CLUSTER_REGION = "eu-west-1"


def planted_sessions(rng: random.Random, window: Window, count: int = 3) -> list[dict]:
    """``count`` IRSA sessions minted in the window (successful AssumeRoleWithWebIdentity, with
    the access key CloudTrail records), each refused twice afterwards."""
    provider = (
        f"arn:aws:iam::{DEFAULT_ACCOUNT}:oidc-provider/oidc.eks.{CLUSTER_REGION}.amazonaws.com/id/BENCH"
    )
    subject = "system:serviceaccount:payments:api"
    records = []
    for n in range(count):
        session = RoleSession(
            DEFAULT_ACCOUNT, "payments-api", f"botocore-session-{1800000000 + n}", access_key_id(rng)
        )
        minted = window.start + timedelta(hours=2 + 6 * n)
        records.append(
            web_identity_call(
                rng,
                when=minted,
                region=CLUSTER_REGION,
                account=DEFAULT_ACCOUNT,
                provider_arn=provider,
                subject=subject,
                role_arn=session.role_arn,
                session=session,
            )
        )
        for minutes in (10, 40):
            when = minted + timedelta(minutes=minutes)
            records.append(
                api_call(
                    rng,
                    when=when,
                    region=CLUSTER_REGION,
                    account=DEFAULT_ACCOUNT,
                    identity=session.user_identity(minted),
                    event_source="s3.amazonaws.com",
                    event_name="PutBucketPolicy",
                    read_only=False,
                    error_code="AccessDenied",
                    error_message=f"User: {session.arn} is not authorized to perform: s3:PutBucketPolicy",
                )
            )
    return records


def build(events: int, seed: int) -> tuple[Window, dict[str, list[dict]], set[str], set[str]]:
    """The window, its records per region, the refusals quick mode must find and those it cannot see."""
    rng = random.Random(seed)
    end = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    window = Window(end - timedelta(hours=24), end)
    failures = list(
        sample_failures(
            rng, start=window.start, end=window.end, account=DEFAULT_ACCOUNT, region=CLUSTER_REGION
        )
    )
    planted = planted_sessions(rng, window)
    healthy = healthy_traffic(
        rng,
        count=events - len(failures) - len(planted),
        start=window.start,
        end=window.end,
        accounts=[DEFAULT_ACCOUNT],
        regions=REGIONS,
    )
    by_region: dict[str, list[dict]] = {region: [] for region in REGIONS}
    for record in [*healthy, *failures, *planted]:
        by_region[record["awsRegion"]].append(record)
    visible = {r["eventID"] for r in planted if r.get("errorCode")}
    visible |= {r["eventID"] for r in failures if r["eventName"] == "AssumeRoleWithWebIdentity"}
    hidden = {r["eventID"] for r in failures if r["eventName"] != "AssumeRoleWithWebIdentity"}
    return window, by_region, visible, hidden


def run(server: LookupServer, window: Window, db: Path, *, quick: bool) -> dict:
    # Standard AWS configuration, as users point SDKs at another endpoint.
    os.environ["AWS_ENDPOINT_URL_CLOUDTRAIL"] = server.endpoint_url
    session = boto3.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name=CLUSTER_REGION
    )
    server.reset_counters()
    with Store.open(db) as store:
        started = time.monotonic()
        result, coverages = ingest_lookup(
            store, session, window=window, regions=list(REGIONS), quick=quick, account=DEFAULT_ACCOUNT
        )
        elapsed = time.monotonic() - started
        ids = {row[0] for row in store.query("SELECT event_id FROM events")[1]}
    return {
        "elapsed": elapsed,
        "calls": server.calls,
        "throttled": server.throttled,
        "by_region": dict(server.calls_by_region),
        "pages": result.files,
        "stored": len(ids),
        "ids": ids,
        "status": {c.region: c.status for c in coverages},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lookup", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-full", action="store_true", help="measure --quick only")
    args = parser.parse_args(argv)

    window, by_region, visible, hidden = build(args.events, args.seed)
    pages = {region: max(1, math.ceil(len(records) / PAGE_SIZE)) for region, records in by_region.items()}
    floor = max(pages.values()) / RATE
    print(
        f"window {window.start:%Y-%m-%dT%H:%M}Z .. {window.end:%Y-%m-%dT%H:%M}Z, {args.events} events: "
        + ", ".join(f"{r} {len(by_region[r])} ({pages[r]} pages)" for r in REGIONS)
    )
    print(f"floor at {RATE:g} requests/s per region, regions in parallel: {floor:.1f} s")

    ok = True
    with LookupServer() as server, tempfile.TemporaryDirectory(prefix="bench-lookup-") as folder:
        for region, records in by_region.items():
            server.add_events(region, records)
        if not args.skip_full:
            full = run(server, window, Path(folder) / "full.duckdb", quick=False)
            ratio = full["elapsed"] / floor
            print(
                f"default: {full['elapsed']:.1f} s = {ratio:.3f} x floor; {full['calls']} calls "
                f"({full['by_region']}), {full['throttled']} throttled; {full['stored']} events stored; "
                f"coverage {full['status']}"
            )
            ok &= (
                ratio <= 1.15 and full["stored"] == args.events and full["throttled"] <= 0.05 * full["calls"]
            )
        quick = run(server, window, Path(folder) / "quick.duckdb", quick=True)
        attributes = Counter(
            call.params["LookupAttributes"][0]["AttributeKey"]
            for call in server.requests
            if call.params.get("LookupAttributes")
        )
        found, missed = visible & quick["ids"], visible - quick["ids"]
        print(
            f"--quick: {quick['elapsed']:.1f} s, {quick['calls']} calls ({dict(attributes)}), "
            f"{quick['throttled']} throttled; {quick['stored']} events stored; "
            f"{len(found)}/{len(visible)} planted refusals it should see found, "
            f"{len(hidden & quick['ids'])}/{len(hidden)} of those it cannot see (the node role's, and "
            f"those of a session whose minting is not in the window); coverage {quick['status']}"
        )
        ok &= not missed and not hidden & quick["ids"]
    print("OK" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
