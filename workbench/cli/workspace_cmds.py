"""`workbench init`: create the workspace."""

from __future__ import annotations

from typing import Optional

import typer

from workbench.cli.app import app, console
from workbench.workspace import init_workspace


@app.command("init")
def init_cmd(
    path: Optional[str] = typer.Argument(
        None, help="Workspace folder (default: --home, $WORKBENCH_HOME or ./.workbench)."
    ),
) -> None:
    """Create a workspace (DuckDB catalog + blob store); harmless if it already exists."""
    ws = init_workspace(path)
    console.print(f"Workspace ready at [bold]{ws.root}[/]")
