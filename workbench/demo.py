"""The end-to-end demo behind `workbench demo` (and the README's `make demo`).

The story lives in the example notebooks (`notebooks/0*_*.ipynb`): register data, train, sweep
and compare, promote and serve. The demo executes them headless, in order, with papermill, on
one workspace, exactly as a user would run them in JupyterLab; every notebook is idempotent, so
the demo can run again on the same workspace. Everything it writes goes into the workspace
(executed notebooks in `demo/`, the sweep report in `reports/`), never into the checkout.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console

from workbench.errors import WorkbenchError
from workbench.workspace import ENV_HOME, init_workspace

console = Console()
NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def demo_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise WorkbenchError(
            f"No example notebooks found in {folder}.",
            "Run the demo from a checkout of the Workbench repository.",
        )
    return notebooks


DEMO_MODEL = "wine-classifier@production"


def start_model_server(home: Path, port: int) -> str:
    """Serve the demo's model from a detached process; returns what to tell the user."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return f"port {port} is busy; serve it with: .venv/bin/workbench serve {DEMO_MODEL} --port PORT"
    log = open(home / "demo" / "server.log", "ab")  # noqa: SIM115  (handed to the server process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", DEMO_MODEL, "--port", str(port)],
        env={**os.environ, ENV_HOME: str(home)}, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return f"http://127.0.0.1:{port}/predict  (pid {proc.pid}; stop it with: kill {proc.pid})"
        time.sleep(0.3)
    return f"the server did not start; see {home / 'demo' / 'server.log'}"


def demo_parameters(notebook: Path, reports: Path) -> dict[str, str]:
    """Papermill parameters for one demo notebook: where to write reports, if it writes any.

    A notebook runs with its own folder as the working directory, so a relative output path
    would land in the repository; every output goes to the workspace instead.
    """
    from workbench.runs.params import notebook_parameters

    return {"report_dir": str(reports)} if "report_dir" in notebook_parameters(notebook) else {}


def execute_notebook(notebook: Path, out_dir: Path, reports: Path) -> None:
    """Run one demo notebook headless; a failing cell becomes a one-line error naming the executed copy."""
    import papermill

    from workbench.kernels.readiness import kernel_start_timeout
    from workbench.runs.runner import kernel_manager_with_env

    try:
        papermill.execute_notebook(
            str(notebook), str(out_dir / notebook.name), parameters=demo_parameters(notebook, reports),
            cwd=str(notebook.parent), progress_bar=False, log_output=False,
            kernel_manager_class=kernel_manager_with_env({}, out_dir / f"{notebook.stem}.kernel.log"),
            start_timeout=kernel_start_timeout(),  # a busy machine: as tracked runs wait
        )  # fmt: skip
    except papermill.PapermillExecutionError as exc:
        raise WorkbenchError(
            f"Demo notebook {notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
            f"See the executed notebook {out_dir / notebook.name}.",
        ) from exc


def run_demo(home: str | None = None, folder: Path = NOTEBOOKS_DIR, serve_port: int | None = 8000) -> None:
    ws = init_workspace(home)
    os.environ[ENV_HOME] = str(ws.root)  # the notebooks' kernels use this workspace
    out_dir, reports = ws.root / "demo", ws.root / "reports"
    out_dir.mkdir(exist_ok=True)
    reports.mkdir(exist_ok=True)
    console.print(f"Workspace: [bold]{ws.root}[/]")
    for notebook in demo_notebooks(folder):
        console.rule(f"[bold]{notebook.stem}")
        start = time.perf_counter()
        execute_notebook(notebook, out_dir, reports)
        console.print(f"  ran in {time.perf_counter() - start:.1f} s -> {out_dir / notebook.name}")
    served = start_model_server(ws.root, serve_port) if serve_port else f"workbench serve {DEMO_MODEL}"
    console.rule("[bold]Done")
    console.print(
        f"Workspace:  {ws.root}\n"
        f"Notebooks:  executed copies in {out_dir}\n"
        f"Reports:    {reports} (sweep_report.html: the sweep's comparison)\n"
        f"Model:      {DEMO_MODEL} served at {served}\n"
        "Explore:    .venv/bin/workbench runs list -e wine-sweep -o metrics.log_loss · "
        ".venv/bin/workbench models show wine-classifier · .venv/bin/workbench monitor wine-classifier\n"
        "Open:       .venv/bin/jupyter lab   (Workbench sidebar on the left)",
        highlight=False,
    )
