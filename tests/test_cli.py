"""The command line as a whole: help everywhere, README coverage, windows, entry points."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import click
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT, run_cli
from trailscan.cli import main
from trailscan.errors import UsageError
from trailscan.window import make_window, parse_duration, parse_moment


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


COMMANDS = list(all_commands(main))


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_and_is_in_the_readme(path, command):
    assert command.help, f"trailscan {' '.join(path)} has no help text"
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    if not isinstance(command, click.Group):
        readme = (ROOT / "README.md").read_text()
        assert f"trailscan {' '.join(path)}" in readme, f"README does not mention `trailscan {' '.join(path)}`"


def test_python_dash_m_and_version():
    done = run_cli("--version")
    assert done.returncode == 0 and done.stdout.startswith("trailscan, version ")


NOW = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [("30m", timedelta(minutes=30)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)), ("2W", timedelta(weeks=2))],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "-1d", "1y", "24 hours"])
def test_bad_durations(text):
    with pytest.raises(UsageError):
        parse_duration(text)


def test_moments_are_utc():
    assert parse_moment("2026-11-27", NOW) == datetime(2026, 11, 27, tzinfo=timezone.utc)
    assert parse_moment("2026-11-27T08:00:00+02:00", NOW) == datetime(2026, 11, 27, 6, tzinfo=timezone.utc)
    assert parse_moment("2026-11-27T06:00:00Z", NOW).tzinfo == timezone.utc
    assert parse_moment("24h", NOW) == NOW - timedelta(hours=24)
    with pytest.raises(UsageError, match="neither a duration nor a date"):
        parse_moment("yesterday", NOW)


def test_windows():
    window = make_window("24h", now=NOW)
    assert (window.start, window.end) == (NOW - timedelta(hours=24), NOW)
    window = make_window("2h", until="2026-11-27T12:00:00Z", now=NOW)
    assert window.start == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    with pytest.raises(UsageError, match="at or after it ends"):
        make_window("2026-11-28", until="2026-11-27", now=NOW)


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "pip install '.[test]'" in line).strip()
    assert command in (ROOT / ".ci" / "run").read_text()


def test_importing_trailscan_prints_nothing():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import trailscan, trailscan.cli, trailscan.store"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""


def test_aws_region_is_honoured_as_the_other_sdks_do(monkeypatch, tmp_path):
    from trailscan.aws import default_session

    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert default_session().region_name == "eu-west-3"
    monkeypatch.delenv("AWS_REGION")
    assert default_session().region_name == "us-east-2"
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(UsageError, match="AWS configuration"):
        default_session()


# -- issue 17.7: windows out of range, and any usage error, are one line and exit 2 -----------------


@pytest.mark.parametrize(
    "args, named",
    [
        (("since", "1000000d"), "'1000000d' reaches back before year 1"),
        (("findings", "--since", "99999999d"), "'99999999d' reaches back before year 1"),
        (("findings", "--until", "99999999d"), "'99999999d' reaches back before year 1"),
        (("since", "99999999999d"), "'99999999999d' is too long a duration"),
        (("findings", "--since", "0001-01-01T00:00:00+01:00"), "is out of range"),
        (("since", "1d", "--until", "0001-01-01"), "'1d' reaches back before year 1"),
        (("ingest", "lookup", "--since", "1000000d"), "'1000000d' reaches back before year 1"),
        (("ingest", "s3", "--since", "1000000d"), "'1000000d' reaches back before year 1"),
        (("report", "--since", "1000000d", "--to", "out"), "'1000000d' reaches back before year 1"),
        (("findings", "--format", "xml"), "'xml' is not one of"),
        (("since",), "Missing argument 'DURATION'"),
        (("--bogus",), "No such option '--bogus'"),
        (("nosuch",), "No such command 'nosuch'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, named):
    store = () if args[0] in ("--bogus", "nosuch") else ("--db", str(tmp_path / "store.duckdb"))
    ran = run_cli(*args, *store, cwd=tmp_path)
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr and ran.stdout == ""
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("trailscan: error: ") and named in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was started: no store, no report


def test_a_group_named_alone_still_shows_its_help():
    ran = run_cli("ingest")
    assert "Usage: " in ran.stderr + ran.stdout and "files" in ran.stderr + ran.stdout
