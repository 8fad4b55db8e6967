"""`workbench demo`: the end-to-end tour on the wine data."""

from __future__ import annotations

from typing import Optional

import typer

from workbench.cli.app import app


@app.command("demo")
def demo(
    path: Optional[str] = typer.Argument(None, help="Workspace folder (default: ./.workbench)."),
) -> None:
    """Run the end-to-end demo: snapshots, tracked runs, sweep, compare, promote, serve."""
    from workbench.demo import run_demo

    run_demo(path)
