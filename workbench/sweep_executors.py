"""Where the queued runs of a sweep execute: a local process pool or a Dask cluster.

`open_executor` is the one place that picks the executor (and, for Dask, connects to the scheduler
before the caller queues anything), and `execute_runs` the one loop that submits the runs, records
how each ended and reports progress. `LocalPool` and `DaskCluster` define only what differs: how
runs are submitted and awaited, and what a failed task means for its run.

Local: a pool of K workers, each kernel limited to about cores/K BLAS/OpenMP threads so parallel
runs never oversubscribe the machine. Dask: `dask.distributed`, whose workers must see the
workspace folder (against a team server they need none: `execute_tasks` sends self-contained
tasks, `workbench.remote.tasks`); the connection is bounded by `dask_connect_timeout`, and the runs that never
started end at once if the connection drops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from workbench.errors import ValidationError
from workbench.runs.events import EVENTS_FILE, read_events, run_dir
from workbench.runs.ingest import fold, index_runs
from workbench.runs.runner import CANCEL_FILE, execute_queued, init_worker_process, reopen
from workbench.workspace import Workspace, positive_setting

#: Seconds to wait for a Dask scheduler (setting `dask_connect_timeout`, env below): short, so a
#: wrong address or a scheduler that is down is a quick error rather than a long hang.
DEFAULT_DASK_TIMEOUT = 10
ENV_DASK_TIMEOUT = "WORKBENCH_DASK_TIMEOUT"
EXECUTORS = ("local", "dask")

Progress = Callable[[dict[str, int]], None]
#: Submitted runs: their futures (future -> run id) and how many can execute at a time.
Submitted = tuple[dict[Any, str], int]


class Executor(Protocol):
    """What differs between executors; `execute_runs` does the rest the same way for both."""

    def submitted(self, ws: Workspace, run_ids: list[str]) -> AbstractContextManager[Submitted]:
        """Submit every run; the executor is released when the block ends."""
        ...

    def completed(self, futures: dict[Any, str]) -> Iterator[list[Any]]:
        """Batches of futures, each as soon as it has ended."""
        ...

    def status(self, ws: Workspace, run_id: str, future: Any) -> str:
        """How the run of an ended future ended."""
        ...

    def ended(self, ws: Workspace, run_ids: list[str]) -> None:
        """Called after each batch (the local pool indexes its runs here)."""
        ...


def check_executor(executor: str, scheduler: str | None) -> None:
    """A known executor, with the scheduler address the dask one needs."""
    if executor not in EXECUTORS:
        raise ValidationError(f"Unknown executor {executor!r}.", "Use 'local' or 'dask'.")
    if executor == "dask" and not scheduler:
        raise ValidationError("The dask executor needs a scheduler address.", "Pass --scheduler tcp://HOST:8786.")


@contextmanager
def open_executor(executor: str, scheduler: str | None, parallel: int, ws: Workspace) -> Iterator[Executor]:
    """The executor a sweep asked for, ready to use; a Dask client is closed afterwards.

    Enter it before queueing: an unreachable scheduler then refuses the sweep with nothing queued.
    """
    check_executor(executor, scheduler)
    if executor == "local":
        yield LocalPool(parallel)
        return
    client = connect_dask(scheduler or "", ws)
    try:
        yield DaskCluster(client, scheduler or "", parallel)
    finally:
        client.close()


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


def execute_runs(executor: Executor, ws: Workspace, run_ids: list[str], on_progress: Progress | None) -> dict[str, str]:
    """Execute queued runs on `executor`: how each ended (`{run_id: status}`), with progress
    reported after every batch of ended runs. A failed run is recorded and the others go on."""
    statuses: dict[str, str] = {}
    total = len(run_ids)
    with executor.submitted(ws, run_ids) as (futures, slots):
        _report(on_progress, statuses, total, min(slots, total))
        for done in executor.completed(futures):
            for future in done:
                statuses[futures[future]] = executor.status(ws, futures[future], future)
            executor.ended(ws, [futures[future] for future in done])
            _report(on_progress, statuses, total, min(slots, total - len(statuses)))
    return statuses


def execute_tasks(executor: str, scheduler: str | None, parallel: int, tasks: list[Any], ws: Workspace,
                  on_progress: Progress | None, on_start: Callable[[], None] | None = None,
                  ) -> dict[str, str]:  # fmt: skip
    """Execute self-contained run tasks (`workbench.remote.tasks`: a sweep against a team server) on a
    local pool or a Dask cluster: how each ended (`{run_id: status}`). A task that raised, or whose
    worker died, is `killed` (the server may never have heard of its run). `on_start` is called once
    the executor is ready, before the first task is submitted (the sweep is recorded then, so an
    unreachable scheduler leaves no record behind)."""
    from workbench.remote.tasks import run_task

    statuses: dict[str, str] = {}
    total = len(tasks)
    with open_executor(executor, scheduler, parallel, ws) as runner:
        if on_start is not None:
            on_start()
        if isinstance(runner, DaskCluster):
            futures = {runner.client.submit(run_task, task, key=f"workbench-run-{task.run_id}", pure=False): task.run_id
                       for task in tasks}  # fmt: skip
            slots = sum(runner.client.nthreads().values()) or parallel
            _report(on_progress, statuses, total, min(slots, total))
            for done in runner.completed(futures):
                _task_statuses(statuses, futures, done)
                _report(on_progress, statuses, total, min(slots, total - len(statuses)))
            return statuses
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = min(parallel, total)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker_process) as pool:
            futures = {pool.submit(run_task, task): task.run_id for task in tasks}
            _report(on_progress, statuses, total, min(workers, total))
            for done in runner.completed(futures):
                _task_statuses(statuses, futures, done)
                _report(on_progress, statuses, total, min(workers, total - len(statuses)))
    return statuses


def _task_statuses(statuses: dict[str, str], futures: dict[Any, str], done: list[Any]) -> None:
    for future in done:
        try:
            statuses[futures[future]] = future.result()["status"]
        except Exception:
            statuses[futures[future]] = "killed"


def _report(on_progress: Progress | None, statuses: dict[str, str], total: int, running: int) -> None:
    if on_progress is None:
        return
    finished = sum(1 for s in statuses.values() if s == "finished")
    on_progress({"total": total, "finished": finished, "failed": len(statuses) - finished, "running": running})


class LocalPool:
    """A pool of `parallel` worker processes; each executes queued runs one after another.

    Workers do not index their runs in the catalog: this coordinator, idle otherwise, does it as
    runs complete, so a worker goes straight on to its next run (and workers never wait for each
    other's catalog writes).
    """

    def __init__(self, parallel: int) -> None:
        self.parallel = parallel

    @contextmanager
    def submitted(self, ws: Workspace, run_ids: list[str]) -> Iterator[Submitted]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = min(self.parallel, len(run_ids))
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker_process) as pool:
            yield {pool.submit(execute_queued, str(ws.root), run_id, self.parallel, False): run_id
                   for run_id in run_ids}, workers  # fmt: skip

    def completed(self, futures: dict[Any, str]) -> Iterator[list[Any]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            yield list(done)

    def status(self, ws: Workspace, run_id: str, future: Any) -> str:
        try:
            return future.result()
        except Exception:  # a worker died (e.g. kill -9): the run is reaped as killed by the next reader
            return "killed"

    def ended(self, ws: Workspace, run_ids: list[str]) -> None:
        index_runs(ws, run_ids)


class DaskCluster:
    """A connected Dask cluster (see `connect_dask`); workers must see the workspace folder and
    index their own runs."""

    def __init__(self, client: Any, scheduler: str, parallel: int) -> None:
        self.client = client
        self.scheduler = scheduler
        self.parallel = parallel

    @contextmanager
    def submitted(self, ws: Workspace, run_ids: list[str]) -> Iterator[Submitted]:
        threads = sum(self.client.nthreads().values()) or self.parallel
        yield {
            self.client.submit(execute_queued, str(ws.root), run_id, threads, key=f"workbench-run-{run_id}",
                               pure=False): run_id
            for run_id in run_ids
        }, threads  # fmt: skip

    def completed(self, futures: dict[Any, str]) -> Iterator[list[Any]]:
        from dask.distributed import as_completed

        for future in as_completed(futures):
            yield [future]

    def status(self, ws: Workspace, run_id: str, future: Any) -> str:
        """The run's final status; a task that ended without running it (lost scheduler) ends it now."""
        try:
            return future.result()
        except Exception as exc:
            lost = "scheduler-connection-lost" in str(exc)
            detail = (str(exc).splitlines() or [""])[0]
            if lost:
                why = f"The connection to the Dask scheduler at {self.scheduler} was lost before the run started."
            else:
                why = f"Its Dask task ended before the run started: {type(exc).__name__}: {detail}"
            return end_unstarted(ws, run_id, "SchedulerLost" if lost else "NotStarted", why)

    def ended(self, ws: Workspace, run_ids: list[str]) -> None:
        pass


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
