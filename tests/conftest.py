"""Shared fixtures: every test gets a real, freshly initialised workspace on disk."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# Fork servers of this test session live in a private runtime folder of their own (inherited by
# every child process): tests never reuse a server left by another session or by older code.
_RUNTIME_DIR = tempfile.mkdtemp(prefix="wb-test-runtime-")
os.environ["XDG_RUNTIME_DIR"] = _RUNTIME_DIR


@pytest.fixture(scope="session", autouse=True)
def _stop_fork_servers_at_exit():
    yield
    from workbench.kernels.servers import stop_all

    stop_all()
    shutil.rmtree(_RUNTIME_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_lineage_between_tests():
    """Snapshots read outside a run wait for the next interactive run (`tracking._pending_inputs`):
    one test's reads must not become the lineage of another test's run in this process."""
    yield
    tracking = sys.modules.get("workbench.tracking")
    if tracking is not None:
        tracking._pending_inputs.clear()


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


def write_notebook(path: Path, parameters: str | None, *cells: str) -> Path:
    """A real .ipynb: an optional cell tagged `parameters`, then code cells."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if parameters is not None:
        nb.cells.append(new_code_cell(parameters, metadata={"tags": ["parameters"]}))
    nb.cells += [new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebook(tmp_path: Path):
    """Factory: notebook("name", "lr = 0.1", "import workbench as wb", ...) -> path."""

    def make(name: str, parameters: str | None, *cells: str) -> Path:
        return write_notebook(tmp_path / f"{name}.ipynb", parameters, *cells)

    return make


def run_cli_in_process(capsys, *args: str):
    """The `workbench` CLI in this process (a subprocess per call costs ~1-2 s of imports)."""
    import subprocess

    from workbench.cli.app import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["workbench", *args], code, out, err)
