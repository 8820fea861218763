"""The instance metadata probe: fast where no machine says it is EC2, absent where one says
it is not (issue: networks that fail slowly).

A metadata service that accepts connections and never answers is served on 127.0.0.1
(AWS_EC2_METADATA_SERVICE_ENDPOINT), the worst case off EC2 behind a firewall that drops
packets; ``benchmarks/metadata_probe.py`` measures the time against botocore's defaults.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from trailscan import aws


@pytest.fixture
def silent_imds(monkeypatch) -> Iterator[list[socket.socket]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}/")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    yield accepted
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


def _dmi(monkeypatch, tmp_path, vendor: str | None) -> None:
    folder = tmp_path / "dmi"
    folder.mkdir()
    if vendor is not None:
        (folder / "sys_vendor").write_text(vendor + "\n")
    monkeypatch.setattr(aws, "_DMI", str(folder) + "/")


@pytest.mark.parametrize("vendor, expected", [("Amazon EC2", True), ("QEMU", False), ("Dell Inc.", False), (None, None)])
def test_on_ec2_reads_the_firmware(monkeypatch, tmp_path, vendor, expected):
    _dmi(monkeypatch, tmp_path, vendor)
    monkeypatch.setattr(aws, "_read", lambda path, real=aws._read: real(path) if path.startswith(str(tmp_path)) else None)
    assert aws.on_ec2() is expected


def test_where_ec2_cannot_be_told_the_probe_is_one_short_attempt(monkeypatch, tmp_path, silent_imds):
    _dmi(monkeypatch, tmp_path, None)
    session = aws.default_session()
    [provider] = [p for p in session._session.get_component("credential_provider").providers if p.METHOD == "iam-role"]
    assert provider._role_fetcher._timeout == aws.METADATA_TIMEOUT and provider._role_fetcher._num_attempts == 1
    started = time.monotonic()
    assert aws.has_credentials(session) is False
    assert time.monotonic() - started < 4 * aws.METADATA_TIMEOUT + 0.5  # botocore's defaults wait 2 s here
    assert len(silent_imds) <= 2  # the IMDSv2 token, then one IMDSv1 attempt


def test_off_ec2_the_metadata_service_is_not_asked(monkeypatch, tmp_path, silent_imds):
    _dmi(monkeypatch, tmp_path, "QEMU")
    session = aws.default_session()
    assert "iam-role" not in [p.METHOD for p in session._session.get_component("credential_provider").providers]
    assert aws.has_credentials(session) is False
    assert silent_imds == []


def test_the_users_metadata_settings_win(monkeypatch, tmp_path, silent_imds):
    _dmi(monkeypatch, tmp_path, "QEMU")
    monkeypatch.setenv("AWS_METADATA_SERVICE_TIMEOUT", "2")
    session = aws.default_session()
    [provider] = [p for p in session._session.get_component("credential_provider").providers if p.METHOD == "iam-role"]
    assert provider._role_fetcher._timeout == 2
