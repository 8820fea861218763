"""The notebooks run top to bottom on a real Jupyter kernel, as part of ``pytest``.

Each notebook is executed by nbmake (``pytest --nbmake``) in a child pytest, so the kernel is
the one Jupyter would start (``python3``, from ipykernel in this environment), the notebook's
own folder is its working directory, and its failures are nbmake's own report.  The store
and anything a notebook might write stay in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_dir

NOTEBOOKS = ROOT / "notebooks"
NAMES = ("01-investigate.ipynb", "02-your-trail.ipynb")
#: Absolute paths of a developer's machine have no place in a committed notebook.
MACHINE_PATH = re.compile(r"(/home/|/Users/|/root/|/tmp/|/work/|[A-Z]:\\)")


def nbmake(notebook: Path, tmp_path: Path, *, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MPLBACKEND"))}
    env.update(
        TRAILSCAN_DB=str(tmp_path / "default-store.duckdb"),  # never the user's own store
        TRAILSCAN_SHARED=str(shared_dir().resolve()),
        AWS_CONFIG_FILE=str(tmp_path / "absent-aws-config"),  # never the user's own AWS
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "absent-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        JUPYTER_PLATFORM_DIRS="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        MPLCONFIGDIR=str(tmp_path / "matplotlib"),
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=300", "-p", "no:cacheprovider",
         "--rootdir", str(notebook.parent), "-q", str(notebook)],
        check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout,
    )


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_clean(name):
    notebook = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{name} cell {index} has outputs: strip them before committing"
            assert cell["execution_count"] is None, f"{name} cell {index} has an execution count"
        source = "".join(cell["source"])
        assert not MACHINE_PATH.search(source), f"{name} cell {index} holds a machine path"


def test_your_trail_has_papermill_parameters_defaulting_to_the_demo():
    notebook = json.loads((NOTEBOOKS / "02-your-trail.ipynb").read_text(encoding="utf-8"))
    tagged = [cell for cell in notebook["cells"] if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    assert re.search(r'^SOURCE = "demo"', source, re.MULTILINE)
    assert notebook["cells"].index(tagged[0]) == 1  # first code cell, after the title


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path):
    done = nbmake(NOTEBOOKS / name, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "1 passed" in done.stdout


def test_a_broken_cell_fails_the_suite(tmp_path):
    """A notebook whose cell raises fails nbmake, so it fails ``pytest``."""
    notebook = json.loads((NOTEBOOKS / "01-investigate.ipynb").read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    target = next(cell for cell in code if "ts.ingest_files(trail)" in "".join(cell["source"]))
    target["source"] = ["ts.ingest_files(trail / 'no-such-folder')\n"]  # a realistic slip: a wrong path
    copy = tmp_path / "notebooks" / "01-broken.ipynb"
    copy.parent.mkdir()
    copy.write_text(json.dumps(notebook), encoding="utf-8")
    done = nbmake(copy, tmp_path)
    assert done.returncode != 0
    assert "1 failed" in done.stdout
    assert "InputError" in done.stdout and "no-such-folder" in done.stdout
