"""`workbench run`, `sweep`, `rerun`, `cancel`: tracked notebook executions from the shell."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import typer

from workbench.cli.app import JsonOption, app, console, err_console, fail, print_json, workspace_or_server
from workbench.cli.tables import is_terminal, print_table, ranked
from workbench.runs.store import Run

ParamOption = typer.Option(
    None, "-p", "--param", metavar="NAME VALUE",
    help="A parameter (repeatable): -p lr 0.1 or -p lr=0.1. Typed like the notebook's default.",
)  # fmt: skip
TagOption = typer.Option(None, "--tag", "-t", metavar="KEY=VALUE", help="A tag for the run (repeatable).")
ExperimentOption = typer.Option(None, "--experiment", "-e", help="Experiment to file the run(s) under.")
FastOption = typer.Option(
    None, "--fast/--no-fast", help="Start kernels from a warm fork server (default: on; setting fast_kernels)."
)
AllowNewOption = typer.Option(
    False, "--allow-new-params", help="Inject parameters the notebook's parameters cell does not declare."
)
KernelOption = typer.Option(None, "--kernel", "-k", help="Kernel name (default: the notebook's).")
AutologOption = typer.Option(
    None, "--autolog/--no-autolog", help="Record scikit-learn fits, scores and metrics (default: on; setting autolog)."
)


def split_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"Invalid {what} {pair!r}.", f"Write {what} NAME=VALUE (or -p NAME VALUE).")
        result[key.strip()] = value
    return result


def collect_params(pairs: list[str] | None, params_file: str | None) -> dict[str, Any]:
    from workbench.runs.params import load_params_file

    params: dict[str, Any] = load_params_file(params_file) if params_file else {}
    params.update(split_pairs(pairs, "-p"))
    return params


def show_run(run: Run) -> None:
    style = {"finished": "green", "failed": "bold red", "killed": "yellow"}.get(run.status, "cyan")
    duration = f" in {run.duration_s:.1f} s" if run.duration_s is not None else ""
    console.print(f"Run [bold]{run.run_id}[/] ({run.experiment}) [{style}]{run.status}[/]{duration}")
    if run.params:
        console.print("  params:  " + ", ".join(f"{k}={v!r}" for k, v in run.params.items()), highlight=False)
    if run.metrics:
        console.print("  metrics: " + ", ".join(f"{k}={v:.6g}" for k, v in run.metrics.items() if v is not None),
                      highlight=False)  # fmt: skip
    if run.error:
        where = f"cell {run.error['cell_index']}: " if run.error.get("cell_index") is not None else ""
        console.print(f"  [red]error:[/] {where}{run.error.get('ename')}: {run.error.get('evalue')}", highlight=False)


def _warn_to_console() -> Any:
    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        err_console.print(f"[yellow]Warning:[/] {message}", highlight=False, soft_wrap=True)

    return show


@app.command("run")
def run_cmd(
    notebook: str = typer.Argument(..., help="The notebook to execute."),
    param: Optional[list[str]] = ParamOption,
    params_file: Optional[str] = typer.Option(None, "--params-file", "-f", help="YAML file of parameters."),
    experiment: Optional[str] = ExperimentOption,
    tag: Optional[list[str]] = TagOption,
    allow_new_params: bool = AllowNewOption,
    kernel: Optional[str] = KernelOption,
    background: bool = typer.Option(False, "--background", help="Return at once; the run continues alone."),
    fast: Optional[bool] = FastOption,
    autolog: Optional[bool] = AutologOption,
    as_json: bool = JsonOption,
) -> None:
    """Execute NOTEBOOK with papermill as a tracked run (exit 1 if the run fails)."""
    from workbench.runs.launch import run

    with console.status(f"Running {notebook} ...", spinner="dots"):  # the workspace, or a team server
        result = run(notebook, collect_params(param, params_file), experiment=experiment,
                     tags=split_pairs(tag, "--tag"), allow_new_params=allow_new_params, kernel=kernel,
                     background=background, params_from_text=True, fast=fast, autolog=autolog)  # fmt: skip
    if as_json:
        print_json(result.to_dict())
    else:
        show_run(result)
    if result.status in ("failed", "killed"):
        raise typer.Exit(1)


@app.command("sweep")
def sweep_cmd(
    notebook: Optional[str] = typer.Argument(None, help="The notebook to execute once per parameter set."),
    grid: Optional[list[str]] = typer.Option(
        None,
        "--grid",
        "-g",
        metavar="NAME=V1,V2,...",
        help="Values of one parameter (repeatable); with --random also uniform(a,b), loguniform(a,b), randint(a,b).",
    ),  # fmt: skip
    random: Optional[int] = typer.Option(None, "--random", help="Sample N parameter sets instead of the full grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random sampling."),
    param: Optional[list[str]] = ParamOption,
    params_file: Optional[str] = typer.Option(None, "--params-file", "-f", help="YAML file of fixed parameters."),
    parallel: Optional[int] = typer.Option(None, "--parallel", "-j", help="Runs at a time (default: cores)."),
    experiment: Optional[str] = ExperimentOption,
    tag: Optional[list[str]] = TagOption,
    metric: Optional[str] = typer.Option(None, "--metric", "-m", help="Sort the summary by this metric."),
    maximize: bool = typer.Option(False, "--maximize", help="Higher metric is better (default: lower)."),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address, tcp://host:8786."),
    allow_new_params: bool = AllowNewOption,
    kernel: Optional[str] = KernelOption,
    fast: Optional[bool] = FastOption,
    autolog: Optional[bool] = AutologOption,
    resume: Optional[str] = typer.Option(
        None, "--resume", metavar="SWEEP_ID", help="Finish a sweep that was interrupted: re-run what never completed."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Run NOTEBOOK for every combination of --grid values, K at a time; summary sorted by --metric."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workbench.runs.params import notebook_parameters
    from workbench.sweeps import parse_grid_option, sweep

    if (notebook is None) == (resume is None):
        fail("Give a NOTEBOOK to sweep, or --resume SWEEP_ID.", "E.g. workbench sweep train.ipynb --grid lr=0.1,1")
    space = {}
    if notebook is not None:
        declared = notebook_parameters(notebook)
        space = dict(parse_grid_option(text, declared, allow_new_params) for text in grid or [])
    progress = Progress(
        TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[green]{task.fields[finished]} finished[/] [red]{task.fields[failed]} failed[/] "
                   "[cyan]{task.fields[running]} running[/]"),
        TimeElapsedColumn(), console=err_console, disable=as_json,
    )  # fmt: skip
    task = progress.add_task("sweep", total=None, finished=0, failed=0, running=0)

    def on_progress(state: dict[str, int]) -> None:
        progress.update(task, total=state["total"], completed=state["finished"] + state["failed"],
                        finished=state["finished"], failed=state["failed"], running=state["running"])  # fmt: skip

    with progress:
        if resume:
            from workbench.sweeps import resume as resume_sweep

            result = resume_sweep(resume, parallel=parallel, executor=executor, scheduler=scheduler,
                                  on_progress=on_progress, ws=workspace_or_server())  # fmt: skip
        else:
            result = sweep(
                notebook, space, random=random, seed=seed, params=collect_params(param, params_file),
                parallel=parallel, experiment=experiment, tags=split_pairs(tag, "--tag"), executor=executor,
                scheduler=scheduler, allow_new_params=allow_new_params, params_from_text=True, kernel=kernel,
                fast=fast, autolog=autolog, on_progress=on_progress, ws=workspace_or_server(),
            )  # fmt: skip
    table = result.table(metric, ascending=not maximize, ws=workspace_or_server())
    if as_json:
        print_json({"sweep_id": result.sweep_id, "experiment": result.experiment,
                    "runs": table.to_dict(orient="records")})  # fmt: skip
    else:
        columns = [c for c in table.columns if c != "duration_s"]
        rows = [[_cell(row[c]) for c in columns] for _, row in table.iterrows()]
        priority = ranked(columns, "run_id", "status", f"metrics.{metric}", "params.", "metrics.")
        print_table(f"Sweep {result.sweep_id} ({result.experiment})", short_headers(columns), rows, priority=priority)
        summary = f"{len(result.run_ids) - len(result.failed)} finished, {len(result.failed)} failed."
        (console if is_terminal() else err_console).print(summary)  # a pipe's stdout: the TSV rows only
    if result.failed:
        raise typer.Exit(1)


def short_headers(columns: list[str]) -> list[str]:
    """`params.lr` -> `lr` where that stays unambiguous (narrow terminals)."""
    short = [c.split(".", 1)[1] if c.startswith(("params.", "metrics.", "tags.")) else c for c in columns]
    return [s if short.count(s) == 1 else c for s, c in zip(short, columns, strict=True)]


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


@app.command("rerun")
def rerun_cmd(
    run_id: str = typer.Argument(..., help="The run to reproduce."),
    experiment: Optional[str] = ExperimentOption,
    background: bool = typer.Option(False, "--background", help="Return at once; the rerun continues alone."),
    as_json: bool = JsonOption,
) -> None:
    """Execute RUN_ID again: same notebook content, parameters and snapshot versions (with a team
    server configured: the server's run, rerun here and logged there as a new run)."""
    from workbench.runs.launch import rerun

    with warnings.catch_warnings():
        warnings.showwarning = _warn_to_console()
        with console.status(f"Re-running {run_id} ...", spinner="dots"):
            result = rerun(run_id, experiment=experiment, background=background, ws=workspace_or_server())
    if as_json:
        print_json(result.to_dict())
    else:
        show_run(result)
        console.print(f"  reproduces {run_id}" + (f" (follow it: workbench runs show {result.run_id})"
                                                  if background else ""))  # fmt: skip
    if result.status in ("failed", "killed"):
        raise typer.Exit(1)


@app.command("cancel")
def cancel_cmd(run_id: str = typer.Argument(..., help="The queued or running run to stop.")) -> None:
    """Cancel a queued or running run (it ends as killed, keeping what it logged)."""
    from workbench.runs.launch import cancel_run

    if cancel_run(run_id, workspace_or_server()):
        console.print(f"Cancelling {run_id}.")
    else:
        console.print(f"Run {run_id} has already ended.")
