"""Shared fixtures: every test gets a real, freshly initialised workspace on disk."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real workspace in tmp_path, used by the Python API and by child processes (env)."""
    from workbench.workspace import init_workspace, use_workspace

    home = tmp_path / ".workbench"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    workspace = init_workspace(home)
    use_workspace(workspace)
    yield workspace
    use_workspace(None)


@pytest.fixture()
def cli(ws):
    """Run the `workbench` CLI in a subprocess against the test workspace."""
    import subprocess

    def run(*args: str, check: bool = False, input: str | None = None, timeout: float = 120):
        env = dict(os.environ, WORKBENCH_HOME=str(ws.root), COLUMNS="200", NO_COLOR="1")
        proc = subprocess.run(
            [str(VENV_BIN / "workbench"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ws.root.parent,
            input=input,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"workbench {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture(scope="session")
def wine_frame():
    from sklearn.datasets import load_wine

    return load_wine(as_frame=True).frame
