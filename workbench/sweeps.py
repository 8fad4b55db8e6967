"""Parameter sweeps: many runs of one notebook, K at a time, locally or on a Dask cluster.

Every combination becomes a queued run first (so the UI shows the whole sweep at once), then an
executor works through them: a local process pool of K workers, each kernel limited to about
cores/K BLAS/OpenMP threads so parallel runs never oversubscribe the machine, or a
`dask.distributed` cluster. A failed run is recorded and the sweep goes on.

Grid values are comma lists (`lr=0.01,0.1,1`); with `random=N`, N combinations are sampled from
the grid, and a parameter may also be a distribution: `uniform(a,b)`, `loguniform(a,b)` or
`randint(a,b)` (both ends included).

A sweep is refused before anything is queued when it has more runs than `max_sweep_runs` or
asks for more runs at a time than `max_parallel` (see `sweep_limits`): one REST call, one widget
click or one typo in a shell loop must not queue ten thousand runs or start a billion kernels.
For the same reason a Dask sweep connects to its scheduler (bounded by `dask_connect_timeout`)
before it queues anything, and ends the runs that never started at once if the connection drops.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import os
import random as random_module
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.catalog import transaction
from workbench.errors import ValidationError
from workbench.identity import current_user
from workbench.names import validate_name
from workbench.runs.events import EVENTS_FILE, read_events, run_dir
from workbench.runs.ids import new_run_id
from workbench.runs.ingest import fold, index_runs
from workbench.runs.launch import check_tags, fast_options
from workbench.runs.params import coerce_text, read_notebook
from workbench.runs.runner import CANCEL_FILE, execute_queued, init_worker_process, prepare, queue, reopen
from workbench.runs.store import get_run
from workbench.workspace import Workspace, current_workspace, positive_setting

_DISTRIBUTION = re.compile(r"^(uniform|loguniform|randint)\(\s*([^,()]+)\s*,\s*([^,()]+)\s*\)$")


@dataclass(frozen=True)
class Distribution:
    """A range to sample from in a random sweep."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random_module.Random) -> float | int:
        if self.kind == "randint":
            return rng.randint(int(self.low), int(self.high))
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


Space = dict[str, "list[Any] | Distribution"]


@dataclass
class SweepResult:
    """The runs of one sweep and how they ended."""

    sweep_id: str
    experiment: str
    run_ids: list[str]
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [r for r, s in self.statuses.items() if s != "finished"]

    def table(self, metric: str | None = None, ascending: bool = True, ws: Workspace | None = None) -> pd.DataFrame:
        """One row per run: status, params, last metric values; sorted by `metric` if given."""
        rows = []
        for run_id in self.run_ids:
            run = get_run(run_id, ws)
            rows.append({"run_id": run_id, "status": run.status, "duration_s": run.duration_s,
                         **{f"params.{k}": v for k, v in run.params.items()},
                         **{f"metrics.{k}": v for k, v in run.metrics.items()}})  # fmt: skip
        frame = pd.DataFrame(rows)
        column = f"metrics.{metric}"
        if metric and column in frame:
            frame = frame.sort_values(column, ascending=ascending, na_position="last").reset_index(drop=True)
        return frame


def parse_grid_option(text: str, declared: dict[str, dict[str, Any]], allow_new: bool = False) -> tuple[str, Any]:
    """`lr=0.01,0.1` -> ("lr", [0.01, 0.1]) with values typed like the notebook's default."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise ValidationError(f"Invalid --grid {text!r}.", "Write NAME=V1,V2,... e.g. --grid lr=0.01,0.1")
    if name not in declared and not allow_new:
        known = ", ".join(sorted(declared)) or "none"
        raise ValidationError(f"Unknown parameter {name!r} in --grid (known: {known}).",
                              "Fix the name, or pass --allow-new-params.")  # fmt: skip
    type_name = declared.get(name, {}).get("type", "any")
    match = _DISTRIBUTION.match(values.strip())
    if match:
        try:
            low, high = float(match.group(2)), float(match.group(3))
        except ValueError as exc:
            raise ValidationError(f"Invalid range in --grid {text!r}.", "Bounds must be numbers.") from exc
        if low >= high or (match.group(1) == "loguniform" and low <= 0):
            raise ValidationError(f"Invalid range in --grid {text!r}.", "Need low < high (and low > 0 for loguniform).")
        return name, Distribution(match.group(1), low, high)
    return name, [coerce_text(name, v.strip(), type_name) for v in values.split(",")]


#: Most runs one sweep may queue by default (workspace setting `max_sweep_runs`, env below).
DEFAULT_MAX_SWEEP_RUNS = 1000
#: Default most runs at a time, per core: room for notebooks that mostly wait (on I/O, remote
#: services), while each extra kernel still costs a process and its memory (~100 MB+ each).
PARALLEL_PER_CORE = 4
ENV_MAX_SWEEP_RUNS = "WORKBENCH_MAX_SWEEP_RUNS"
ENV_MAX_PARALLEL = "WORKBENCH_MAX_PARALLEL"
#: Seconds to wait for a Dask scheduler (setting `dask_connect_timeout`, env below): short, so a
#: wrong address or a scheduler that is down is a quick error rather than a long hang.
DEFAULT_DASK_TIMEOUT = 10
ENV_DASK_TIMEOUT = "WORKBENCH_DASK_TIMEOUT"


@dataclass(frozen=True)
class SweepLimits:
    """The caps a sweep must fit in (see `sweep_limits`)."""

    max_runs: int
    max_parallel: int


def sweep_limits(ws: Workspace | None = None) -> SweepLimits:
    """The caps on a sweep: `$WORKBENCH_MAX_SWEEP_RUNS` / setting `max_sweep_runs` (default 1,000
    runs) and `$WORKBENCH_MAX_PARALLEL` / setting `max_parallel` (default 4 x cores)."""
    ws = ws or current_workspace()
    return SweepLimits(
        max_runs=positive_setting(ws, "max_sweep_runs", ENV_MAX_SWEEP_RUNS, DEFAULT_MAX_SWEEP_RUNS),
        max_parallel=positive_setting(ws, "max_parallel", ENV_MAX_PARALLEL, PARALLEL_PER_CORE * default_parallel()),
    )


def _how_to_raise(setting: str, env: str) -> str:
    return f"raise the limit with ${env}=N or the workspace setting: wb.Workspace(...).set_setting({setting!r}, N)."


def check_parallel(parallel: Any, ws: Workspace | None = None) -> int:
    """Runs at a time for a sweep: `parallel` if it is a whole number within the cap, else a clear
    error; None means one per core (within the cap)."""
    cap = sweep_limits(ws).max_parallel
    if parallel is None:
        return min(default_parallel(), cap)
    if isinstance(parallel, bool) or not isinstance(parallel, numbers.Integral) or parallel < 1:
        raise ValidationError(f"parallel must be a whole number of at least 1, not {parallel!r}.")
    if parallel > cap:
        raise ValidationError(f"parallel={int(parallel):,} is more than the limit of {cap:,} runs at a time.",
                              "Ask for fewer, or " + _how_to_raise("max_parallel", ENV_MAX_PARALLEL))  # fmt: skip
    return int(parallel)


def sweep_size(space: Space, random: Any = None) -> int:
    """How many runs `expand(space, random)` makes, computed without building them."""
    if random is not None and (isinstance(random, bool) or not isinstance(random, numbers.Integral) or random < 1):
        raise ValidationError(f"random must be a whole number of at least 1, not {random!r}.")
    grid = math.prod(len(v) for v in space.values() if not isinstance(v, Distribution))
    if random is None:
        return grid
    if any(isinstance(v, Distribution) for v in space.values()):
        return int(random)
    return min(int(random), grid)


def check_sweep_size(space: Space, random: Any = None, ws: Workspace | None = None) -> int:
    """The number of runs of the sweep, refused (before anything is queued) past `max_sweep_runs`."""
    size = sweep_size(space, random)
    cap = sweep_limits(ws).max_runs
    if size > cap:
        raise ValidationError(f"This sweep has {size:,} runs, more than the limit of {cap:,} per sweep.",
                              "Sweep fewer values (or sample some with --random N), or "
                              + _how_to_raise("max_sweep_runs", ENV_MAX_SWEEP_RUNS))  # fmt: skip
    return size


def _combination(lists: list[list[Any]], index: int) -> tuple[Any, ...]:
    """The `index`-th tuple of `itertools.product(*lists)`, without building the others."""
    picked = []
    for values in reversed(lists):
        index, position = divmod(index, len(values))
        picked.append(values[position])
    return tuple(reversed(picked))


def expand(space: Space, random: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Parameter sets of a sweep: the full grid, or `random` samples from it."""
    if not space:
        raise ValidationError("A sweep needs at least one parameter to vary.", "Add --grid NAME=V1,V2,...")
    for name, values in space.items():
        if not isinstance(values, Distribution) and not values:
            raise ValidationError(f"Parameter {name!r} has no values to sweep over.")
    names = list(space)
    has_distribution = any(isinstance(v, Distribution) for v in space.values())
    if random is None:
        if has_distribution:
            raise ValidationError("Ranges like uniform(a,b) need a random sweep.", "Add --random N.")
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*space.values())]
    if random < 1:
        raise ValidationError(f"--random must be at least 1, got {random}.")
    rng = random_module.Random(seed)
    if not has_distribution:
        # Sample positions, not a list of every combination: a 100^4 grid is 10^8 tuples. Same
        # draws as sampling the list (random.sample only uses its length).
        lists = [list(values) for values in space.values()]  # type: ignore[arg-type]
        total = math.prod(len(values) for values in lists)
        picked = [_combination(lists, index) for index in rng.sample(range(total), min(random, total))]
        return [dict(zip(names, combo, strict=True)) for combo in picked]
    return [
        {name: values.sample(rng) if isinstance(values, Distribution) else rng.choice(values)
         for name, values in space.items()}
        for _ in range(random)
    ]  # fmt: skip


def default_parallel() -> int:
    """One run per usable core: each kernel then gets a thread budget of about one core."""
    from workbench.runs.runner import usable_cores

    return usable_cores()


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
    ws = ws or current_workspace()
    check_executor(executor, scheduler)
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
    client = connect_dask(scheduler or "", ws) if executor == "dask" else None  # before anything is recorded
    try:
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
        statuses = _execute(ws, run_ids, parallel, on_progress, client, scheduler or "")
    finally:
        if client is not None:
            client.close()
    return SweepResult(sweep_id, experiment, run_ids, statuses)


def check_executor(executor: str, scheduler: str | None) -> None:
    """A known executor, with the scheduler address the dask one needs."""
    if executor not in ("local", "dask"):
        raise ValidationError(f"Unknown executor {executor!r}.", "Use 'local' or 'dask'.")
    if executor == "dask" and not scheduler:
        raise ValidationError("The dask executor needs a scheduler address.", "Pass --scheduler tcp://HOST:8786.")


def dask_timeout(ws: Workspace) -> int:
    """Seconds to wait for the Dask scheduler: `$WORKBENCH_DASK_TIMEOUT` / setting `dask_connect_timeout` (10)."""
    return positive_setting(ws, "dask_connect_timeout", ENV_DASK_TIMEOUT, DEFAULT_DASK_TIMEOUT)


def connect_dask(scheduler: str, ws: Workspace) -> Any:
    """A client of the scheduler at `scheduler`, or a one-line error naming the address.

    Called before any run is queued: an unreachable scheduler used to leave every run of the
    sweep queued, to be reaped as `killed` long after the sweep had given up.
    """
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise ValidationError(
            "The Dask executor needs dask.distributed, which is not installed.",
            "Install it with: pip install 'workbench[dask]' (or run the sweep with the local executor).",
        ) from exc

    timeout = dask_timeout(ws)
    try:
        return Client(scheduler, timeout=f"{timeout}s")
    except (OSError, ValueError) as exc:  # refused, timed out, unknown host, malformed address
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
        reason = f"no answer within {timeout} s" if text.startswith("Timed out") else text
        raise ValidationError(
            f"Cannot reach the Dask scheduler at {scheduler} ({reason}); nothing was queued.",
            f"Start it with 'dask scheduler' and check the address (${ENV_DASK_TIMEOUT} or the setting "
            "dask_connect_timeout sets how long to wait).",
        ) from exc


def _execute(ws: Workspace, run_ids: list[str], parallel: int, on_progress: Callable[[dict[str, int]], None] | None,
             client: Any, scheduler: str) -> dict[str, str]:  # fmt: skip
    """Execute queued runs on the Dask `client` if there is one, else in a local process pool."""
    if client is not None:
        return _run_on_dask(ws, client, run_ids, scheduler, parallel, on_progress)
    return _run_locally(ws, run_ids, parallel, on_progress)


def _report(on_progress: Callable[[dict[str, int]], None] | None, statuses: dict[str, str], total: int,
            running: int) -> None:  # fmt: skip
    if on_progress is None:
        return
    finished = sum(1 for s in statuses.values() if s == "finished")
    on_progress({"total": total, "finished": finished, "failed": len(statuses) - finished, "running": running})


def _run_locally(ws: Workspace, run_ids: list[str], parallel: int,
                 on_progress: Callable[[dict[str, int]], None] | None) -> dict[str, str]:  # fmt: skip
    """A pool of `parallel` worker processes; each executes queued runs one after another.

    Workers do not index their runs in the catalog: this coordinator, idle otherwise, does it as
    runs complete, so a worker goes straight on to its next run (and workers never wait for each
    other's catalog writes).
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    statuses: dict[str, str] = {}
    workers = min(parallel, len(run_ids))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker_process) as pool:
        futures = {pool.submit(execute_queued, str(ws.root), run_id, parallel, False): run_id for run_id in run_ids}
        pending = set(futures)
        _report(on_progress, statuses, len(run_ids), min(workers, len(pending)))
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                statuses[futures[future]] = _status_of(future)
            index_runs(ws, [futures[future] for future in done])
            _report(on_progress, statuses, len(run_ids), min(workers, len(pending)))
    return statuses


def _status_of(future: Any) -> str:
    try:
        return future.result()
    except Exception:  # a worker died (e.g. kill -9): the run is reaped as killed by the next reader
        return "killed"


def _run_on_dask(ws: Workspace, client: Any, run_ids: list[str], scheduler: str, parallel: int,
                 on_progress: Callable[[dict[str, int]], None] | None) -> dict[str, str]:  # fmt: skip
    """Submit every run to a connected Dask cluster; workers must see the workspace folder."""
    from dask.distributed import as_completed

    statuses: dict[str, str] = {}
    threads = sum(client.nthreads().values()) or parallel
    futures = {
        client.submit(execute_queued, str(ws.root), run_id, threads, key=f"workbench-run-{run_id}", pure=False):
        run_id
        for run_id in run_ids
    }  # fmt: skip
    _report(on_progress, statuses, len(run_ids), min(threads, len(run_ids)))
    for future in as_completed(futures):
        statuses[futures[future]] = _dask_status(ws, futures[future], future, scheduler)
        _report(on_progress, statuses, len(run_ids), min(threads, len(run_ids) - len(statuses)))
    return statuses


def _dask_status(ws: Workspace, run_id: str, future: Any, scheduler: str) -> str:
    """The run's final status; a task that ended without running it (lost scheduler) ends it now."""
    try:
        return future.result()
    except Exception as exc:
        lost = "scheduler-connection-lost" in str(exc)
        detail = (str(exc).splitlines() or [""])[0]
        why = (f"The connection to the Dask scheduler at {scheduler} was lost before the run started." if lost
               else f"Its Dask task ended before the run started: {type(exc).__name__}: {detail}")  # fmt: skip
        return end_unstarted(ws, run_id, "SchedulerLost" if lost else "NotStarted", why)


def end_unstarted(ws: Workspace, run_id: str, ename: str, why: str) -> str:
    """End a still-queued run as `killed` with `why`, at once instead of at the 30 s reaping; returns its status.

    A run that started is left alone (it ends on its own, or is reaped when its heartbeat stops).
    The cancel file makes a worker that still gets the task end it without executing it.
    """
    folder = run_dir(ws, run_id)
    item = fold(read_events(folder / EVENTS_FILE))
    status = item["run"]["status"] if item else "killed"
    if status != "queued":
        return "killed" if status == "running" else status
    (folder / CANCEL_FILE).touch()
    _prepared, record, _pins = reopen(ws, run_id)
    record.end("killed", {"cell_index": None, "ename": ename, "evalue": why, "traceback": []})
    record.sync()
    return "killed"


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
    client = connect_dask(scheduler or "", ws) if executor == "dask" and redo else None  # before re-queueing
    try:
        new_ids = _requeue(ws, sweep_id, experiment, redo)
        statuses = {run_id: get_run(run_id, ws).status for run_id in keep}
        if new_ids:
            statuses.update(_execute(ws, new_ids, parallel, on_progress, client, scheduler or ""))
    finally:
        if client is not None:
            client.close()
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
