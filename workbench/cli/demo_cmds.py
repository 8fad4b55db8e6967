"""`workbench demo`: the end-to-end tour on the wine data."""

from __future__ import annotations

from typing import Optional

import typer

from workbench.cli.app import app


@app.command("demo")
def demo(
    path: Optional[str] = typer.Argument(None, help="Workspace folder (default: ./.workbench)."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Leave the promoted model served in the background."),
    port: int = typer.Option(8000, "--port", help="Port of the demo model server."),
) -> None:
    """Run the end-to-end demo: snapshots, tracked runs, sweep, compare, promote, serve.

    Everything it writes goes into the workspace: executed notebooks in demo/, reports in reports/.
    """
    from workbench.demo import run_demo

    run_demo(path, serve_port=port if serve else None)
