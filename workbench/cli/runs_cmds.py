"""`workbench runs list / show / compare`: query and compare tracked runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.text import Text

from workbench.cli.app import JsonOption, app, console, err_console, print_json, workspace_or_server
from workbench.cli.run_cmds import short_headers, show_run
from workbench.cli.tables import fits, is_terminal, print_table, ranked

runs_app = typer.Typer(help="Query, inspect and compare tracked runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _short(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


@runs_app.command("list")
def list_cmd(
    experiment: Optional[list[str]] = typer.Option(None, "--experiment", "-e", help="Only these experiments."),
    filter: Optional[str] = typer.Option(
        None, "--filter", "-f", help="e.g. \"metrics.rmse < 0.3 and params.depth >= 5 and status = 'finished'\"."
    ),
    order_by: Optional[list[str]] = typer.Option(
        None, "--order-by", "-o", help="e.g. 'metrics.rmse' or 'created_at desc'."
    ),
    limit: int = typer.Option(50, "--limit", "-n", help="At most this many runs (0: all)."),
    status: Optional[str] = typer.Option(None, "--status", help="Only runs with this status."),
    as_json: bool = JsonOption,
) -> None:
    """Runs as a table: status, params and last metric values (newest first unless --order-by)."""
    from workbench.runs.query import runs

    frame = runs(experiment or None, filter, order_by or None, limit or None, status, workspace_or_server())
    if as_json:
        print_json([{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")])
        return
    wanted = ["run_id", "experiment", "status", "duration_s"]
    columns = wanted + [c for c in frame.columns if c.startswith(("params.", "metrics."))]
    rows = [[_short(row[c]) for c in columns] for _, row in frame.iterrows()]
    sort_keys = [key.split()[0] for key in order_by or []]  # a narrow terminal keeps these first
    priority = ranked(columns, "run_id", "status", *sort_keys, "params.", "metrics.", "experiment")
    print_table(f"{len(frame)} run(s)", short_headers(columns), rows, priority=priority)


@runs_app.command("show")
def show_cmd(run_id: str = typer.Argument(..., help="Run id."), as_json: bool = JsonOption) -> None:
    """Everything a run recorded: params, metrics, tags, lineage, artifacts, environment, error."""
    from workbench.runs.store import get_run

    run = get_run(run_id, workspace_or_server())
    if as_json:
        print_json(run.to_dict())
        return
    show_run(run)
    facts = [
        ("notebook", run.notebook), ("kernel", run.kernel), ("created", run.created_at), ("by", run.creator),
        ("host", run.host), ("git", f"{run.git_commit or '-'}{' (dirty)' if run.git_dirty else ''}"),
        ("python", run.python_version), ("inputs", ", ".join(run.inputs) or "-"),
        ("tags", ", ".join(f"{k}={v}" for k, v in run.tags.items()) or "-"),
        ("parent", run.parent_run_id), ("sweep", run.sweep_id),
    ]  # fmt: skip
    for key, value in facts:
        if value:
            console.print(f"  {key + ':':9}{value}", highlight=False)
    if run.artifacts:
        print_table("Artifacts", ["name", "kind", "bytes"], [(a.name, a.kind, a.size) for a in run.artifacts])
    if run.error and run.error.get("traceback"):
        console.print("\n".join(run.error["traceback"]), highlight=False, markup=False)


@runs_app.command("compare")
def compare_cmd(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids."),
    metric: Optional[str] = typer.Option(
        None, "--metric", "-m", help="Metric for the charts (default: one with a step history, else the most common)."
    ),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a standalone HTML report with the charts."),
    all_rows: bool = typer.Option(False, "--all", help="Show equal rows too (default: only differences)."),
    as_json: bool = JsonOption,
) -> None:
    """Params and metrics of several runs side by side, differences highlighted."""
    from workbench.compare import compare

    comparison = compare(run_ids, metric, workspace_or_server())
    table = comparison.table
    if html:
        comparison.to_html(html)
    if as_json:
        records = [{"key": key, **{k: _plain(v) for k, v in row.items()}} for key, row in table.iterrows()]
        print_json({"metric": comparison.metric, "rows": records})
        return
    shown = table if all_rows else table[table["differs"]]
    run_columns = [c for c in table.columns if c != "differs"]
    rows = [[Text(str(key), style="bold yellow" if row["differs"] else ""), *[_short(row[c]) for c in run_columns]]
            for key, row in shown.iterrows()]  # fmt: skip
    hidden = len(table) - len(shown)
    title = f"Comparison ({hidden} equal row(s) hidden; --all shows them)" if hidden else "Comparison"
    headers = ["key", *run_columns]
    if fits(headers, rows) or not is_terminal():
        print_table(title, headers, rows)
    else:  # one column per run id does not fit: one row per key and run instead, ids whole
        long_rows = [[row[0], run_id, value]
                     for row in rows for run_id, value in zip(run_columns, row[1:], strict=True)]  # fmt: skip
        print_table(title, ["key", "run", "value"], long_rows, ids=(0, 1))
    if html:  # on stderr in a pipe, where stdout is TSV rows only
        (console if is_terminal() else err_console).print(f"Report: {html}")
