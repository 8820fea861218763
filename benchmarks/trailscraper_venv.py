"""trailscraper 0.10.0 in a venv of its own, for the benchmarks that measure against it
(``ingest_files.py``, ``ingest_s3.py``).  Standard library only: importing it costs the
measuring process nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TRAILSCRAPER = "trailscraper==0.10.0"


def trailscraper_executable(venv: Path) -> tuple[Path | None, str]:
    """trailscraper's console script in ``venv``, installing it there first if needed;
    ``(None, why)`` when it cannot be had."""
    script = venv / "bin" / "trailscraper"
    version = TRAILSCRAPER.split("==")[1]

    def works() -> bool:
        try:
            probe = subprocess.run(
                [str(script), "--version"], check=False, capture_output=True, text=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return probe.returncode == 0 and version in probe.stdout

    if works():
        return script, ""
    print(f"installing {TRAILSCRAPER} into {venv} …", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    try:
        venv.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return None, f"cannot create {venv.parent}: {exc.strerror}"
    for step in (
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", TRAILSCRAPER],
    ):
        done = subprocess.run(step, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in (done.stderr + done.stdout).splitlines() if "WARNING" not in line]
            return None, f"`{' '.join(step[-3:])}` failed: {' | '.join(lines[-3:]) or done.returncode}"
    if not works():
        return None, f"{script} --version does not print {version}"
    return script, ""
