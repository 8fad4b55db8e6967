"""Parameter sweeps: many runs of one notebook, K at a time, locally or on a Dask cluster.

Every combination becomes a queued run first (so the UI shows the whole sweep at once), then an
executor works through them (`workbench.sweep_executors`). A failed run is recorded and the sweep
goes on; `resume` finishes a sweep whose coordinator died.

This module owns the sweep's lifecycle (validate, record, queue, execute, resume). What runs a
sweep makes lives in `workbench.sweep_grid`, the caps it must fit in (checked before anything is
queued) in `workbench.sweep_limits`, and where runs execute in `workbench.sweep_executors`; their
public names are re-exported here, where the CLI, widgets and REST forms import them from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.catalog import transaction
from workbench.errors import ValidationError
from workbench.identity import current_user
from workbench.names import validate_name
from workbench.runs.ids import new_run_id
from workbench.runs.launch import check_tags, fast_options
from workbench.runs.params import read_notebook
from workbench.runs.runner import prepare, queue, reopen
from workbench.runs.store import get_run
from workbench.sweep_executors import (
    DEFAULT_DASK_TIMEOUT,
    ENV_DASK_TIMEOUT,
    check_executor,
    connect_dask,
    dask_timeout,
    end_unstarted,
    execute_runs,
    execute_tasks,
    open_executor,
)
from workbench.sweep_grid import Distribution, Space, expand, parse_grid_option, sweep_size
from workbench.sweep_limits import (
    DEFAULT_MAX_SWEEP_RUNS,
    ENV_MAX_PARALLEL,
    ENV_MAX_SWEEP_RUNS,
    PARALLEL_PER_CORE,
    SweepLimits,
    check_parallel,
    check_sweep_size,
    default_parallel,
    sweep_limits,
)
from workbench.workspace import Workspace, current_workspace


@dataclass
class SweepResult:
    """The runs of one sweep and how they ended."""

    sweep_id: str
    experiment: str
    run_ids: list[str]
    statuses: dict[str, str] = field(default_factory=dict)
    #: where its runs are read back from (a team server's); None: the workspace given to `table`
    place: Any = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> list[str]:
        return [r for r, s in self.statuses.items() if s != "finished"]

    def table(self, metric: str | None = None, ascending: bool = True, ws: Workspace | None = None) -> pd.DataFrame:
        """One row per run: status, params, last metric values; sorted by `metric` if given."""
        rows = []
        for run_id in self.run_ids:
            run = self.place.get_run(run_id) if self.place is not None else get_run(run_id, ws)
            rows.append({"run_id": run_id, "status": run.status, "duration_s": run.duration_s,
                         **{f"params.{k}": v for k, v in run.params.items()},
                         **{f"metrics.{k}": v for k, v in run.metrics.items()}})  # fmt: skip
        frame = pd.DataFrame(rows)
        column = f"metrics.{metric}"
        if metric and column in frame:
            frame = frame.sort_values(column, ascending=ascending, na_position="last").reset_index(drop=True)
        return frame


def sweep(
    notebook: str | os.PathLike[str],
    grid: dict[str, Any] | None = None,
    *,
    random: int | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    parallel: int | None = None,
    experiment: str | None = None,
    tags: dict[str, Any] | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    allow_new_params: bool = False,
    params_from_text: bool = False,
    kernel: str | None = None,
    fast: bool | None = None,
    parent_run_id: str | None = None,
    pipeline_run: str | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    ws: Workspace | None = None,
) -> SweepResult:
    """Run `notebook` once per parameter set of `grid` (or `random` samples of it).

    `grid` maps a parameter to a list of values (or a `Distribution`); `params` are fixed values
    for every run. Returns when every run has ended; failures are in `result.failed`. A sweep
    bigger than `sweep_limits(ws)` allows, or whose Dask scheduler cannot be reached, is refused
    with nothing queued. `parent_run_id` and `pipeline_run` are recorded on every run (a pipeline
    step links its runs to the previous step's selected run).
    """
    from workbench.remote.runs import run_place

    check_executor(executor, scheduler)
    place = run_place(ws)  # the workspace, or a team server's spool (`ws` not given, a server configured)
    ws = place.ws
    parallel = check_parallel(parallel, ws)
    space: Space = {name: values if isinstance(values, Distribution) else list(values)
                    for name, values in (grid or {}).items()}  # fmt: skip
    check_sweep_size(space, random, ws)  # before building (or queueing) a single run
    read_notebook(notebook)  # a missing or broken notebook fails before anything else
    combos = expand(space, random, seed)
    experiment = validate_name(experiment or f"sweep-{os.path.splitext(os.path.basename(notebook))[0]}",
                               "experiment name")  # fmt: skip
    clean_tags = check_tags(tags)
    options = fast_options(ws, fast)
    # Validate every parameter set before anything is recorded.
    prepared = [
        prepare(notebook, {**(params or {}), **combo}, allow_new_params=allow_new_params,
                from_text=params_from_text, kernel_name=kernel, **options)
        for combo in combos
    ]  # fmt: skip
    if place.remote is not None:  # self-contained tasks: workers need no workspace folder
        from workbench.remote.tasks import RunTask

        sweep_id = new_run_id()
        tasks = [RunTask(place.remote, new_run_id(), p.notebook.name, p.source, p.params, p.kernel, experiment,
                         {**clean_tags, "sweep": sweep_id}, sweep_id, parent_run_id, pipeline_run,
                         bool(options["fast"]), parallel) for p in prepared]  # fmt: skip
        statuses = execute_tasks(executor, scheduler, parallel, tasks, ws, on_progress)
        return SweepResult(sweep_id, experiment, [t.run_id for t in tasks], statuses, place)
    with open_executor(executor, scheduler, parallel, ws) as runner:  # connects before anything is recorded
        sweep_id = new_run_id()
        spec = {"grid": {k: (v if isinstance(v, list) else repr(v)) for k, v in space.items()}, "random": random,
                "seed": seed, "params": params or {}, "parallel": parallel, "executor": executor}  # fmt: skip
        with transaction(ws) as con:
            con.execute(
                "INSERT INTO sweeps VALUES (?, ?, ?, ?, now(), ?)",
                [sweep_id, experiment, str(prepared[0].notebook), json.dumps(spec, default=str), current_user()],
            )
        records = [queue(ws, p, experiment=experiment, tags={**clean_tags, "sweep": sweep_id}, sweep_id=sweep_id,
                         parent_run_id=parent_run_id, pipeline_run=pipeline_run) for p in prepared]  # fmt: skip
        run_ids = [r.run_id for r in records]
        statuses = execute_runs(runner, ws, run_ids, on_progress)
    return SweepResult(sweep_id, experiment, run_ids, statuses)


def resume(
    sweep_id: str,
    *,
    parallel: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
    ws: Workspace | None = None,
) -> SweepResult:
    """Finish a sweep whose coordinator died: re-run its runs that never completed.

    Runs that finished or failed on their own are kept; runs still queued (never started) or
    killed are ended as `killed` (if not already) and executed again as new runs of the same
    sweep, each linked to the run it replaces (`parent_run_id`). Runs still running elsewhere
    are left alone.
    """
    from workbench.catalog import connect
    from workbench.runs.ids import check_run_id
    from workbench.runs.ingest import index_runs

    ws = ws or current_workspace()
    check_run_id(sweep_id)
    check_executor(executor, scheduler)
    index_runs(ws)
    with connect(ws) as con:
        row = con.execute("SELECT experiment, spec FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone()
        runs = con.execute(
            "SELECT run_id, status FROM runs WHERE sweep_id = ? ORDER BY created_at", [sweep_id]
        ).fetchall()
    if row is None:
        raise ValidationError(f"No sweep {sweep_id}.", "Sweep ids are printed by 'workbench sweep' (and tag runs).")
    experiment, spec = row[0], json.loads(row[1])
    if parallel is None:  # the sweep's own choice, within today's cap
        parallel = min(int(spec.get("parallel") or default_parallel()), sweep_limits(ws).max_parallel)
    parallel = check_parallel(parallel, ws)  # before re-queueing anything
    superseded = {r for (r,) in _superseded(ws, [r for r, _ in runs])}
    redo = [run_id for run_id, status in runs if status in ("queued", "killed") and run_id not in superseded]
    keep = [run_id for run_id, status in runs if run_id not in redo and run_id not in superseded]
    statuses = {run_id: get_run(run_id, ws).status for run_id in keep}
    if not redo:  # nothing to execute: no executor (and no scheduler connection) needed
        return SweepResult(sweep_id, experiment, keep, statuses)
    with open_executor(executor, scheduler, parallel, ws) as runner:  # connects before re-queueing
        new_ids = _requeue(ws, sweep_id, experiment, redo)
        statuses.update(execute_runs(runner, ws, new_ids, on_progress))
    return SweepResult(sweep_id, experiment, keep + new_ids, statuses)


def _requeue(ws: Workspace, sweep_id: str, experiment: str, redo: list[str]) -> list[str]:
    """End each run of `redo` that is still queued and queue it again as a new run of the sweep."""
    new_ids: list[str] = []
    for run_id in redo:
        prepared, old, pins = reopen(ws, run_id)
        if get_run(run_id, ws).status == "queued":
            old.end("killed", {"cell_index": None, "ename": "Superseded", "evalue": "Re-run by 'sweep --resume'.",
                               "traceback": []})  # fmt: skip
            old.sync()
        tags = {**get_run(run_id, ws).tags, "sweep": sweep_id}
        record = queue(ws, prepared, experiment=experiment, tags=tags, parent_run_id=run_id, sweep_id=sweep_id,
                       pins=pins)  # fmt: skip
        new_ids.append(record.run_id)
    return new_ids


def _superseded(ws: Workspace, run_ids: list[str]) -> list[tuple[str]]:
    """Runs of the sweep that an earlier resume already replaced."""
    from workbench.catalog import connect

    if not run_ids:
        return []
    with connect(ws) as con:
        con.register("__wb_ids", pd.DataFrame({"run_id": run_ids}))
        return con.execute(
            "SELECT DISTINCT parent_run_id FROM runs WHERE parent_run_id IN (SELECT run_id FROM __wb_ids)"
        ).fetchall()


__all__ = [
    "DEFAULT_DASK_TIMEOUT",
    "DEFAULT_MAX_SWEEP_RUNS",
    "ENV_DASK_TIMEOUT",
    "ENV_MAX_PARALLEL",
    "ENV_MAX_SWEEP_RUNS",
    "PARALLEL_PER_CORE",
    "Distribution",
    "Space",
    "SweepLimits",
    "SweepResult",
    "check_executor",
    "check_parallel",
    "check_sweep_size",
    "connect_dask",
    "dask_timeout",
    "default_parallel",
    "end_unstarted",
    "expand",
    "parse_grid_option",
    "resume",
    "sweep",
    "sweep_limits",
    "sweep_size",
]
