"""Publishing a report safely (issue: hostile input and faults, points 4 and 14).

- Local folders: files are created exclusively and renamed into place, so a symlink planted
  where trailscan writes is replaced, never followed; modes are 0600/0700 unless asked.
- ``latest/`` is switched only once the dated folder is complete; a publish that fails
  partway names what was written and what was not, and leaves the dated folder whole.
- S3 objects can be encrypted with a KMS key of the operator's choice.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from botocore.awsrequest import AWSResponse

from tests.conftest import run_cli
from tests.support.moto_server import MotoServer
from tests.test_report import findings_document
from trailscan.errors import InputError
from trailscan.report import ARTIFACTS, write_report

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
STAMP = "2026-11-28T060000Z"


def events() -> pa.Table:
    return pa.table({"event_id": ["a"], "event_time": pa.array([NOW], pa.timestamp("us", tz="UTC"))})


def publish(destination: str, **options):
    return write_report(findings_document(), events(), destination=destination, now=NOW, **options)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_local_report_is_private_by_default(tmp_path):
    publish(str(tmp_path / "reports"))
    for sub in (STAMP, "latest"):
        folder = tmp_path / "reports" / sub
        assert mode(folder) == 0o700, sub
        for name in ARTIFACTS:
            assert mode(folder / name) == 0o600, (sub, name)
    assert mode(tmp_path / "reports") == 0o700


def test_local_report_mode_can_be_asked_for(tmp_path):
    publish(str(tmp_path / "reports"), file_mode=0o644)
    assert mode(tmp_path / "reports" / "latest" / "report.html") == 0o644
    assert mode(tmp_path / "reports" / "latest") == 0o755


def test_symlinks_planted_where_the_report_is_written_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    victims = tmp_path / "victims"
    victims.mkdir()
    (victims / "report.html").write_text("precious")
    root = tmp_path / "reports"
    (root / STAMP).mkdir(parents=True)
    # The names the previous version wrote through, and names a guess could target.
    for name in ARTIFACTS:
        os.symlink(victim, root / STAMP / f".{name}.partial")
        os.symlink(victim, root / STAMP / name)
    os.symlink(victims, root / "latest")
    location = publish(str(root))
    assert victim.read_text() == "precious" and (victims / "report.html").read_text() == "precious"
    assert not (root / "latest").is_symlink() and (root / "latest" / "report.html").stat().st_size > 1000
    assert not (root / STAMP / "report.html").is_symlink()
    assert location.latest == str(root / "latest") + os.sep


def test_a_dated_folder_that_is_a_symlink_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "reports"
    root.mkdir()
    os.symlink(elsewhere, root / STAMP)
    with pytest.raises(InputError, match="symbolic link"):
        publish(str(root))
    assert list(elsewhere.iterdir()) == []


def test_a_failing_local_latest_leaves_the_dated_folder_complete(tmp_path, monkeypatch):
    from trailscan.report import publish as module

    real = module.replace_dir

    def failing(new, target):
        if target.name == "latest":
            raise OSError(28, "No space left on device")
        return real(new, target)

    monkeypatch.setattr(module, "replace_dir", failing)
    with pytest.raises(InputError) as raised:
        publish(str(tmp_path / "reports"))
    assert "latest" in str(raised.value) and "is complete" in str(raised.value)
    assert sorted(p.name for p in (tmp_path / "reports" / STAMP).iterdir()) == sorted(ARTIFACTS)


@pytest.fixture(scope="module")
def moto():
    with MotoServer() as server:
        yield server


def _fail_key(session, key: str) -> None:
    class Raw:
        def stream(self, **_):
            yield b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>We encountered an internal error</Message></Error>"

    def before_send(request, **_):
        if request.url.split("?")[0].endswith(key):
            return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, Raw())
        return None

    session.events.register("before-send.s3.PutObject", before_send)


def test_s3_latest_is_switched_only_after_the_dated_folder_and_a_failure_names_the_mix(moto):
    moto.reset()
    session = moto.session("us-east-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="reports")
    for name in ARTIFACTS:  # yesterday's latest/
        s3.put_object(Bucket="reports", Key=f"nightly/latest/{name}", Body=b"yesterday")
    failing = moto.session("us-east-1")
    _fail_key(failing, "nightly/latest/report.md")
    with pytest.raises(InputError) as raised:
        publish("s3://reports/nightly/", session=failing)
    message = str(raised.value)
    assert f"the report is complete in s3://reports/nightly/{STAMP}/" in message
    assert "events.parquet, findings.json from this run" in message
    assert "report.md, report.html still the previous run's" in message and "\n" not in message
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="reports")["Contents"]}
    assert {f"nightly/{STAMP}/{name}" for name in ARTIFACTS} <= keys
    html = s3.get_object(Bucket="reports", Key="nightly/latest/report.html")["Body"].read()
    assert html == b"yesterday"  # the page is switched last, so latest/ never shows a new page on old data


def test_s3_a_failing_dated_folder_leaves_latest_alone(moto):
    moto.reset()
    session = moto.session("us-east-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="reports")
    s3.put_object(Bucket="reports", Key="nightly/latest/findings.json", Body=b"yesterday")
    failing = moto.session("us-east-1")
    _fail_key(failing, f"nightly/{STAMP}/report.md")
    with pytest.raises(InputError):
        publish("s3://reports/nightly/", session=failing)
    assert s3.get_object(Bucket="reports", Key="nightly/latest/findings.json")["Body"].read() == b"yesterday"


def test_s3_report_objects_are_encrypted_with_the_given_key(moto):
    moto.reset()
    session = moto.session("us-east-1")
    s3 = session.client("s3")
    s3.create_bucket(Bucket="reports")
    key = session.client("kms").create_key()["KeyMetadata"]["Arn"]
    publish("s3://reports/nightly/", session=session, kms_key=key)
    for sub in (STAMP, "latest"):
        head = s3.head_object(Bucket="reports", Key=f"nightly/{sub}/report.html")
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == key


def test_kms_key_for_a_local_folder_and_a_bad_mode_are_usage_errors(tmp_path):
    with pytest.raises(Exception, match="s3:// destination"):
        publish(str(tmp_path / "r"), kms_key="arn:aws:kms:us-east-1:111122223333:key/x")
    done = run_cli("report", "--since", "24h", "--to", str(tmp_path / "r"), "--file-mode", "9z", "--source", "files",
                   "--path", str(tmp_path), "--offline", "--db", ":memory:")
    assert done.returncode == 2 and "--file-mode" in done.stderr and "Traceback" not in done.stderr
