"""`trailscan report` end to end, as the nightly job runs it: a trail bucket in moto (server
mode, 127.0.0.1) → store → explain → the four artifacts published to s3://…/nightly/."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from trailscan import generate
from trailscan.explain.causes import CAUSES

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-1"
HOSTILE_AGENT = '<script>alert("ua")</script> aws-sdk-go/1.44.0'
SECRET = "IQoJb3JpZ2luX2VjEPLANTEDSECRETTOKEN"


@pytest.fixture(scope="module")
def trail(moto_module):
    session = moto_module.session(REGION)
    s3 = session.client("s3")
    s3.create_bucket(Bucket="trail", CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.create_bucket(Bucket="reports", CreateBucketConfiguration={"LocationConstraint": REGION})
    rng = random.Random(3)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(hours=20)
    records = list(generate.healthy_traffic(rng, count=300, start=start, end=now, accounts=[ACCOUNT],
                                            regions=[REGION]))
    failures = list(generate.sample_failures(rng, start=start, end=now, account=ACCOUNT, region=REGION))
    for record in failures:
        if record["eventName"] == "DescribeSnapshots":  # the node-role fallback: its SDK is quoted
            record["userAgent"] = HOSTILE_AGENT
    minted = generate.web_identity_call(
        rng, when=now - timedelta(hours=1), region=REGION, account=ACCOUNT,
        provider_arn=f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.{REGION}.amazonaws.com/id/5C1A7E0E5A1B2C3D",
        subject="system:serviceaccount:shop:web", role_arn=f"arn:aws:iam::{ACCOUNT}:role/shop-web",
        session=generate.RoleSession(ACCOUNT, "shop-web", "botocore-session-1", "ASIAPLANTED000000001"),
    )
    minted["responseElements"]["credentials"]["sessionToken"] = SECRET
    for key, body in generate.delivery_files(records + failures + [minted], rng):
        s3.put_object(Bucket="trail", Key=key, Body=body)
    return moto_module


def test_report_to_s3_writes_the_four_artifacts(trail, tmp_path):
    done = run_cli(
        "report", "--since", "24h", "--bucket", "trail", "--to", "s3://reports/nightly/", "--offline",
        "--db", str(tmp_path / "nightly.duckdb"), env=trail.environ(REGION),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "s3://reports/nightly/" in done.stderr

    s3 = trail.session(REGION).client("s3")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="reports")["Contents"])
    dated = {k.split("/")[1] for k in keys} - {"latest"}
    assert len(dated) == 1
    names = ("events.parquet", "findings.json", "report.html", "report.md")
    for folder in (dated.pop(), "latest"):
        assert sorted(k.rsplit("/", 1)[1] for k in keys if k.split("/")[1] == folder) == list(names)

    def get(name):
        return s3.get_object(Bucket="reports", Key=f"nightly/latest/{name}")

    html = get("report.html")
    assert html["ContentType"].startswith("text/html")
    page = html["Body"].read().decode()
    assert "&lt;script&gt;alert(" in page and '<script>alert("ua")' not in page

    document = json.loads(get("findings.json")["Body"].read())
    assert document["schema"] == "trailscan.findings/v1"
    # The SPEC §7 keys; a published findings.json also carries "notes" when the inventory had
    # gaps or something was left out (issue 22), and only then.
    assert set(document) - {"notes"} == {"schema", "generated_at", "window", "coverage", "findings"}
    assert all(isinstance(note, str) and note for note in document.get("notes", []))
    assert document["coverage"] and all(c["status"] == "complete" for c in document["coverage"])
    kinds = {f["kind"] for f in document["findings"]}
    assert kinds == {"irsa", "denied_call"}
    for finding in document["findings"]:
        assert (finding["kind"], finding["cause"]) in {(c.kind, c.code) for c in CAUSES} or finding["cause"] == "UNEXPLAINED"
        assert set(finding["workload"]) == {"cluster", "namespace", "service_account", "resolution", "candidates"}
        assert 1 <= len(finding["sample_event_ids"]) <= finding["count"]
    assert sum(f["count"] for f in document["findings"]) == 11  # 3 web identity + 8 denied calls planted

    table = pq.read_table(io.BytesIO(get("events.parquet")["Body"].read()))
    assert table.num_rows == 300 + 11 + 1
    every_artifact = b"".join(
        s3.get_object(Bucket="reports", Key=k)["Body"].read() for k in keys
    )
    assert SECRET.encode() not in every_artifact
    assert b"ASIAPLANTED000000001" in every_artifact  # the key id is kept: only the token is secret


def test_report_to_a_missing_bucket_is_one_line(trail, tmp_path):
    done = run_cli(
        "report", "--since", "24h", "--bucket", "trail", "--to", "s3://no-such-reports/x/", "--offline",
        "--db", str(tmp_path / "n.duckdb"), env=trail.environ(REGION),
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "no-such-reports" in done.stderr
