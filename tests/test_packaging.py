"""Packaging tested as users install it: the built wheel, in a fresh virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_ships_the_queries_and_works_from_any_directory(tmp_path):
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(dist.glob("trailscan-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("trailscan/queries/"))
    assert shipped == sorted(p.name for p in (ROOT / "queries").glob("*.sql"))
    assert "trailscan/py.typed" in names

    # A clean venv holding only the wheel; its dependencies are borrowed from this
    # environment through a .pth line (so no network), after the venv's own site-packages.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True).stdout.strip()
    Path(site, "borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    listed = subprocess.run([str(env_dir / "bin" / "trailscan"), "queries", "list"],
                            capture_output=True, text=True, cwd=elsewhere, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "failed_web_identity" in listed.stdout
    where = subprocess.run([str(python), "-c", "import trailscan; print(trailscan.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, env=env).stdout
    assert where.startswith(str(env_dir))
