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
    group: Optional[str] = typer.Option(
        None, "--group", help="Share the workspace with this Unix group (default: private to you, mode 0700)."
    ),
) -> None:
    """Create a workspace (DuckDB catalog + blob store); harmless if it already exists.

    The workspace is readable only by you unless --group shares it with a Unix group.
    """
    ws = init_workspace(path, group=group)
    console.print(f"Workspace ready at [bold]{ws.root}[/]")
