"""Parameter sweeps: many runs of one notebook, K at a time, locally or on a Dask cluster.

Every combination becomes a queued run first (so the UI shows the whole sweep at once), then an
executor works through them (`workbench.sweep_executors`). A failed run is recorded and the sweep
goes on; `resume` finishes a sweep whose coordinator died.

This module owns the sweep's lifecycle (validate, record, queue, execute, resume). What runs a
sweep makes lives in `workbench.sweep_grid`, the caps it must fit in (checked before anything is
queued) in `workbench.sweep_limits`, and where runs execute in `workbench.sweep_executors`; their
public names are re-exported here, where the CLI, widgets and REST forms import them from.

Against a team server, a sweep executes on the client and is recorded on the server by the client
(`remote.tasks.ServerSweep`); the server keeps the record with `save_sweep` and answers with
`sweep_info` / `list_sweeps` (`server.routes_sweeps`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.catalog import transaction
from workbench.errors import NotFoundError, ValidationError, WorkbenchError
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
from workbench.workspace import Workspace


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
    autolog: bool | None = None,
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
    options = fast_options(ws, fast, autolog)  # autolog: as in `wb.run`
    # Validate every parameter set before anything is recorded.
    prepared = [
        prepare(notebook, {**(params or {}), **combo}, allow_new_params=allow_new_params,
                from_text=params_from_text, kernel_name=kernel, **options)
        for combo in combos
    ]  # fmt: skip
    spec = {"grid": {k: (v if isinstance(v, list) else repr(v)) for k, v in space.items()}, "random": random,
            "seed": seed, "params": params or {}, "parallel": parallel, "executor": executor}  # fmt: skip
    if place.remote is not None:  # self-contained tasks: workers need no workspace folder
        from workbench.remote.tasks import ServerSweep

        shared = {"tags": clean_tags, "fast": bool(options["fast"]), "parent_run_id": parent_run_id,
                  "pipeline_run": pipeline_run}  # fmt: skip
        server_sweep = ServerSweep.new(place.remote, new_run_id(), experiment, prepared, {**spec, **shared})
        statuses = server_sweep.execute(executor, scheduler, parallel, [(p.params, parent_run_id) for p in prepared],
                                        ws, on_progress)  # fmt: skip
        return SweepResult(server_sweep.sweep_id, experiment, list(statuses), statuses, place)
    with open_executor(executor, scheduler, parallel, ws) as runner:  # connects before anything is recorded
        sweep_id = new_run_id()
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

    Against a team server (`ws` not given, a server configured) the server says which parameter
    sets of the sweep have a finished run; every other one (failed, killed, or never started) runs
    again here, from the notebook content the server keeps, linked to the run it replaces.
    """
    from workbench.catalog import connect
    from workbench.remote.runs import run_place
    from workbench.runs.ids import check_run_id
    from workbench.runs.ingest import index_runs

    check_run_id(sweep_id)
    check_executor(executor, scheduler)
    if ws is None:
        place = run_place()  # the workspace, or a team server's spool (asked first whether we may log runs)
        if place.remote is not None:
            return _resume_on_server(place, sweep_id, parallel, executor, scheduler, on_progress)
        ws = place.ws
    index_runs(ws)
    with connect(ws) as con:
        row = con.execute("SELECT experiment, spec FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone()
        runs = con.execute(
            "SELECT run_id, status FROM runs WHERE sweep_id = ? ORDER BY created_at", [sweep_id]
        ).fetchall()
    if row is None:
        raise ValidationError(f"No sweep {sweep_id}.", "Sweep ids are printed by 'workbench sweep' (and tag runs).")
    experiment, spec = row[0], json.loads(row[1])
    parallel = _resume_parallel(parallel, spec, ws)  # before re-queueing anything
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


# ------------------------------------------------------------------------------------------------
# Sweep records as a team server keeps them for its clients (`server.routes_sweeps`): a client's sweep
# executes on the client (or its Dask workers), so the server learns of it from the client, which
# creates the record before the runs start and updates its status at the end. The parameter sets,
# the notebook's blob and the status live in the record's `spec` (the table's free-form part).

SWEEP_STATUSES = ("running", "finished", "failed", "interrupted")
#: What a server's record keeps in `spec` besides how the sweep was asked for.
_RECORD_KEYS = ("param_sets", "status", "notebook_blob")


class NotYourSweepError(WorkbenchError):
    """Updating a sweep another user created (needs maintainer)."""


def save_sweep(ws: Workspace, sweep_id: str, experiment: str, notebook: str, spec: dict[str, Any],
               param_sets: list[dict[str, Any]], status: str, notebook_blob: str | None = None,
               may_edit_others: bool = False) -> dict[str, Any]:  # fmt: skip
    """Create sweep `sweep_id`, or update its status: the same call again changes nothing (client retries).

    The creator is the acting user (the token's, on a server); only they (or, with `may_edit_others`,
    a maintainer) may update it, and an update must describe the same sweep. Creation and every change
    of status are in the audit log. Returns the record as `sweep_info` answers it."""
    from workbench import audit
    from workbench.runs.ids import check_run_id

    check_run_id(sweep_id)
    validate_name(experiment, "experiment name")
    if status not in SWEEP_STATUSES:
        raise ValidationError(f"Unknown sweep status {status!r}.", f"Use one of: {', '.join(SWEEP_STATUSES)}.")
    stored = {**spec, "param_sets": param_sets, "status": status, "notebook_blob": notebook_blob}
    user, target = current_user(), f"sweep:{sweep_id}"
    with transaction(ws) as con:
        row = con.execute("SELECT experiment, notebook, spec, creator FROM sweeps WHERE sweep_id = ?",
                          [sweep_id]).fetchone()  # fmt: skip
        if row is None:
            con.execute("INSERT INTO sweeps VALUES (?, ?, ?, ?, now(), ?)",
                        [sweep_id, experiment, notebook, json.dumps(stored, default=str), user])  # fmt: skip
            audit.record(con, "sweep.started", target, {"experiment": experiment, "notebook": notebook,
                                                        "runs": len(param_sets), "status": status})  # fmt: skip
        else:
            before = json.loads(row[2])
            if row[3] != user and not may_edit_others:
                raise NotYourSweepError(f"Sweep {sweep_id} was started by {row[3]}; only they or a maintainer "
                                        "may update it.", "Start a sweep of your own.")  # fmt: skip
            same = (row[0], row[1], before.get("param_sets")) == (experiment, notebook, stored["param_sets"])
            if not same:
                raise ValidationError(f"Sweep {sweep_id} exists with another experiment, notebook or parameter "
                                      "sets.", "A sweep id names one sweep: start a new sweep.")  # fmt: skip
            if before.get("status") != status:
                con.execute("UPDATE sweeps SET spec = ? WHERE sweep_id = ?",
                            [json.dumps({**before, "status": status}, default=str), sweep_id])  # fmt: skip
                audit.record(con, f"sweep.{status}", target, {"previous": before.get("status")})
    return sweep_info(sweep_id, ws)


def list_sweeps(ws: Workspace, limit: int = 500) -> list[dict[str, Any]]:
    """The newest sweeps first, each with how many of its runs ended how (`counts`, from the runs
    the catalog has) and, for a sweep a client recorded, its status and number of parameter sets."""
    from workbench.catalog import connect
    from workbench.runs.ingest import index_runs

    index_runs(ws)
    with connect(ws) as con:
        rows = con.execute("SELECT sweep_id, experiment, notebook, spec, created_at, creator FROM sweeps "
                           "ORDER BY created_at DESC LIMIT ?", [limit]).fetchall()  # fmt: skip
        counted = con.execute("SELECT sweep_id, status, count(*) FROM runs WHERE sweep_id IN "
                              "(SELECT sweep_id FROM sweeps ORDER BY created_at DESC LIMIT ?) GROUP BY 1, 2",
                              [limit]).fetchall()  # fmt: skip
    counts: dict[str, dict[str, int]] = {}
    for sweep_id, status, n in counted:
        counts.setdefault(sweep_id, {})[status] = n
    return [_sweep_row(row, counts.get(row[0], {})) for row in rows]


def sweep_info(sweep_id: str, ws: Workspace) -> dict[str, Any]:
    """One sweep as `list_sweeps` describes it, plus its spec, parameter sets and runs (each with its
    id, status, params and the run it replaced, oldest first)."""
    from workbench.catalog import connect
    from workbench.runs.ids import check_run_id
    from workbench.runs.ingest import index_runs

    check_run_id(sweep_id)
    index_runs(ws)
    with connect(ws) as con:
        row = con.execute("SELECT sweep_id, experiment, notebook, spec, created_at, creator FROM sweeps "
                          "WHERE sweep_id = ?", [sweep_id]).fetchone()  # fmt: skip
        runs = con.execute("SELECT run_id, status, parent_run_id, created_at FROM runs WHERE sweep_id = ? "
                           "ORDER BY created_at, run_id", [sweep_id]).fetchall()  # fmt: skip
        params = con.execute("SELECT p.run_id, p.key, p.value FROM run_params p JOIN runs r USING (run_id) "
                             "WHERE r.sweep_id = ?", [sweep_id]).fetchall()  # fmt: skip
    if row is None:
        raise NotFoundError(f"No sweep {sweep_id}.", "Sweep ids are printed by 'workbench sweep' (and tag runs).")
    by_run: dict[str, dict[str, Any]] = {}
    for run_id, key, value in params:
        by_run.setdefault(run_id, {})[key] = json.loads(value) if isinstance(value, str) else value
    counts: dict[str, int] = {}
    for _run_id, status, _parent, _at in runs:
        counts[status] = counts.get(status, 0) + 1
    info = _sweep_row(row, counts)
    spec = json.loads(row[3])
    info.update(spec={k: v for k, v in spec.items() if k not in _RECORD_KEYS}, param_sets=spec.get("param_sets"),
                notebook_blob=spec.get("notebook_blob"),
                runs=[{"run_id": run_id, "status": status, "parent_run_id": parent, "created_at": at,
                       "params": by_run.get(run_id, {})} for run_id, status, parent, at in runs])  # fmt: skip
    return info


def _sweep_row(row: tuple[Any, ...], counts: dict[str, int]) -> dict[str, Any]:
    sweep_id, experiment, notebook, spec, created_at, creator = row
    spec = json.loads(spec)
    param_sets = spec.get("param_sets")
    return {"sweep_id": sweep_id, "experiment": experiment, "notebook": notebook, "created_at": created_at,
            "creator": creator, "status": spec.get("status"), "executor": spec.get("executor"),
            "total": len(param_sets) if param_sets is not None else sum(counts.values()), "counts": counts}  # fmt: skip


def _resume_parallel(parallel: int | None, spec: dict[str, Any], ws: Workspace) -> int:
    """Runs at a time for a resumed sweep: `parallel`, else the sweep's own choice within today's cap."""
    if parallel is None:
        parallel = min(int(spec.get("parallel") or default_parallel()), sweep_limits(ws).max_parallel)
    return check_parallel(parallel, ws)


def _resume_on_server(place: Any, sweep_id: str, parallel: int | None, executor: str, scheduler: str | None,
                      on_progress: Callable[[dict[str, int]], None] | None) -> SweepResult:  # fmt: skip
    """`resume` of a sweep recorded on a team server (`place`: its spool): see `resume`."""
    from workbench.remote.tasks import ServerSweep

    server_sweep, info = ServerSweep.recorded(place.remote, sweep_id)
    parallel = _resume_parallel(parallel, server_sweep.spec, place.ws)
    finished, todo = server_sweep.unfinished(info)
    statuses = dict.fromkeys(finished, "finished")
    if todo:
        statuses.update(server_sweep.execute(executor, scheduler, parallel, todo, place.ws, on_progress))
    elif info.get("status") != "finished":  # its runs all finished, but its coordinator did not say so
        server_sweep.record("finished")
    return SweepResult(sweep_id, server_sweep.experiment, list(statuses), statuses, place)


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
    "list_sweeps",
    "connect_dask",
    "dask_timeout",
    "default_parallel",
    "end_unstarted",
    "expand",
    "parse_grid_option",
    "resume",
    "save_sweep",
    "sweep",
    "sweep_info",
    "sweep_limits",
    "sweep_size",
]
