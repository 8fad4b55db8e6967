"""`workbench export prometheus DIR`: the files that hook model servers into Prometheus and Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from workbench.cli.app import JsonOption, app, console, print_json

export_app = typer.Typer(help="Write files that run or watch models outside the workbench.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("prometheus")
def prometheus_cmd(
    directory: Path = typer.Argument(..., help="Folder to write into (made if missing)."),
    target: Optional[list[str]] = typer.Option(
        None,
        "--target",
        "-t",
        metavar="HOST:PORT",
        help="A model server for the sample scrape config to scrape (repeatable; default: 127.0.0.1:8000).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace files already in the folder."),
    as_json: bool = JsonOption,
) -> None:
    """Write alerts.yml (alert rules), grafana-dashboard.json and a sample prometheus.yml that loads
    the rules and scrapes the model servers' /metrics. See docs/operations.md."""
    from workbench.serving.prometheus.files import export_files

    written = export_files(directory, target or None, force=force)
    if as_json:
        print_json([str(path) for path in written])
        return
    for path in written:
        console.print(f"Wrote {path}", soft_wrap=True)
