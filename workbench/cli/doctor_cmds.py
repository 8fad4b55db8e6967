"""`workbench doctor`: integrity checks and safe repairs."""

from __future__ import annotations

import typer

from workbench.cli.app import JsonOption, app, console, print_json, workspace
from workbench.doctor import run_checks

_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


@app.command("doctor")
def doctor(
    fix: bool = typer.Option(False, "--fix", help="Repair what can be repaired safely."),
    rebuild: bool = typer.Option(
        False,
        "--rebuild-catalog",
        help="Move the catalog aside and rebuild it from the run folders (and whatever the old file still holds).",
    ),  # fmt: skip
    as_json: bool = JsonOption,
) -> None:
    """Check the workspace: catalog, runs, models, data, orphan and scratch files (exit 1 on errors)."""
    if rebuild:
        from workbench.runs.rebuild import describe, rebuild_catalog

        report = rebuild_catalog(workspace())
        if as_json:
            print_json(report)
        else:
            for line in describe(report):
                console.print(line, highlight=False)
        raise typer.Exit(1 if report["not_recovered"] else 0)
    findings = run_checks(workspace(), fix=fix)
    if as_json:
        print_json([f.to_dict() for f in findings])
    else:
        for f in findings:
            state = " (fixed)" if f.fixed else (" (fixable with --fix)" if f.fixable else "")
            console.print(f"[{_STYLE[f.severity]}]{f.severity:>7}[/] {f.check}: {f.message}{state}")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)
