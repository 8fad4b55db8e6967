"""The end-to-end demo behind `workbench demo` (and the README's `make demo`).

The story lives in the example notebooks (`notebooks/0*_*.ipynb`): register data, train, sweep
and compare, promote and serve. The demo executes them headless, in order, with papermill, on
one workspace, exactly as a user would run them in JupyterLab; every notebook is idempotent, so
the demo can run again on the same workspace.
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


def run_demo(home: str | None = None, folder: Path = NOTEBOOKS_DIR) -> None:
    import papermill

    ws = init_workspace(home)
    os.environ[ENV_HOME] = str(ws.root)  # the notebooks' kernels use this workspace
    out_dir = ws.root / "demo"
    out_dir.mkdir(exist_ok=True)
    console.print(f"Workspace: [bold]{ws.root}[/]")
    for notebook in demo_notebooks(folder):
        console.rule(f"[bold]{notebook.stem}")
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook), str(out_dir / notebook.name), cwd=str(notebook.parent),
                progress_bar=False, log_output=False,
            )  # fmt: skip
        except papermill.PapermillExecutionError as exc:
            raise WorkbenchError(
                f"Demo notebook {notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
                f"See the executed notebook {out_dir / notebook.name}.",
            ) from exc
        console.print(f"  ran in {time.perf_counter() - start:.1f} s -> {out_dir / notebook.name}")
    console.rule("[bold]Done")
    console.print(
        f"Workspace:  {ws.root}\n"
        f"Notebooks:  executed copies in {out_dir}\n"
        "Explore:    .venv/bin/workbench snapshot list · .venv/bin/workbench snapshot diff wine@1 wine@2 "
        "--key sample_id\n"
        "Open:       .venv/bin/jupyter lab   (Workbench sidebar on the left)"
    )
