"""The example notebooks in notebooks/ run top to bottom (nbval), in order, on one workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
def test_example_notebooks_run_in_order(tmp_path):
    assert NOTEBOOKS, "no example notebooks found"
    env = dict(os.environ, WORKBENCH_HOME=str(tmp_path / ".workbench"), WORKBENCH_DEMO_FAST="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), *map(str, NOTEBOOKS)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
