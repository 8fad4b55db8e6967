"""Which model version a server answers with, and swapping it without dropping a request.

A `LoadedModel` is immutable: a version record and its `Predictor` (the estimator). The `ModelSlot`
holds the current one; a request takes the reference once at its start and uses that object to
the end, so a swap (an assignment of a new, fully loaded object) can never hand a request a
half-loaded model. Where versions come from is the slot's `ModelSource` (`sources.py`): for a
local workspace an `AliasWatcher` thread `stat()`s the registry's alias file a few times a second
and, when the alias moved, loads the new version off the request path and swaps it in; for a team
server the change feed is followed instead (`remote_source.ChangeFollower`), with the same swap.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.models.registry import ALIAS_FILE, ModelVersion, get_version, load, model_dir
from workbench.names import parse_ref
from workbench.serving.inputs import Conformed, InputError, conform
from workbench.serving.predict import Predictor, concatenate
from workbench.workspace import Workspace

if TYPE_CHECKING:
    from workbench.serving.predlog import PredictionLogger
    from workbench.serving.sources import ModelSource

log = logging.getLogger("workbench.serving")
CATALOG_CHECK_TICKS = 40  # every 10 s at the default interval
#: Requests waiting for the shadow model at most; more are dropped (and counted), never waited for.
SHADOW_QUEUE = 256
#: Rows the shadow model predicts in one call at most: queued requests are predicted together, so
#: under load the shadow costs one call per batch instead of one per request.
SHADOW_BATCH_ROWS = 2_000
#: How long the shadow worker lets requests gather before predicting a batch: under load, longer
#: means larger batches and less CPU taken from the requests (one model call per batch); the shadow
#: lines come that much later, which nobody waits for. Throughput with a shadow: benchmarks/results/live.md.
SHADOW_GATHER_S = 0.01


@dataclass(frozen=True)
class LoadedModel:
    version: ModelVersion
    predictor: Predictor

    @property
    def estimator(self) -> Any:
        return self.predictor.estimator

    @property
    def schema(self) -> list[dict[str, str]] | None:
        return self.version.schema


def load_version(ws: Workspace, ref: str) -> LoadedModel:
    estimator, version = load(ref, ws)
    return LoadedModel(version, Predictor(estimator, version.schema))


class ModelSlot:
    """The model currently served for a reference like `wine@production`."""

    def __init__(self, source: ModelSource | Workspace, ref: str) -> None:
        if isinstance(source, Workspace):
            from workbench.serving.sources import LocalSource

            source = LocalSource(source)
        self.source = source
        self.ws = source.workspace
        self.ref = ref
        self.parsed = parse_ref(ref, "model", allow_alias=True)
        self.current = source.load(ref)
        self.swaps = 0

    @property
    def follows_alias(self) -> bool:
        """A pinned version (`wine@3`) never moves; an alias or `latest` does."""
        return self.parsed.version is None

    def target_version(self) -> int | None:
        """The version the source says this slot should serve (None: unknown)."""
        return self.source.target_version(self.parsed)

    def refresh(self) -> bool:
        """Load and swap in the version the alias points at now; True if it changed."""
        target = self.target_version()
        if target is None or target == self.current.version.version:
            return False
        fresh = self.source.load(f"{self.parsed.name}@{target}")
        self.current = fresh  # one reference assignment: atomic for every reader
        self.swaps += 1
        log.info("now serving %s (was swapped in for %s)", fresh.version.ref, self.ref)
        return True


class AliasWatcher:
    """Polls the alias file's mtime and refreshes the slot when it changes."""

    def __init__(self, slot: ModelSlot, interval: float = 0.25) -> None:
        self.slot = slot
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-alias-watcher", daemon=True)
        self._path = model_dir(slot.ws, slot.parsed.name) / ALIAS_FILE
        self._seen: tuple[int, int] | None = self._mtime()

    def _mtime(self) -> tuple[int, int] | None:
        """Identity of the alias file: each write replaces it (new inode), so this changes even
        when two moves land within one coarse file-timestamp tick."""
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_ino, stat.st_mtime_ns

    def start(self) -> AliasWatcher:
        if self.slot.follows_alias:
            self._thread.start()
        return self

    def _loop(self) -> None:
        ticks = 0
        while not self._stop.wait(self.interval):
            ticks += 1
            mtime = self._mtime()
            if mtime == self._seen:
                if ticks % CATALOG_CHECK_TICKS == 0:
                    self._check_catalog()
                continue
            try:
                self.slot.refresh()
                self._seen = mtime
            except Exception:  # keep serving the current model; retry on the next tick
                log.exception("could not load the new version of %s; still serving the old one", self.slot.ref)

    def _check_catalog(self) -> None:
        """Safety net: the alias file could be stale if a process died mid-move (doctor --fix repairs it)."""
        try:
            target = get_version(self.slot.ref, self.slot.ws).version
            if target != self.slot.current.version.version:
                self.slot.current = load_version(self.slot.ws, f"{self.slot.parsed.name}@{target}")
                self.slot.swaps += 1
        except Exception:  # a busy or unreadable catalog: keep serving, try again later
            log.debug("catalog check of %s failed", self.slot.ref, exc_info=True)

    def stop(self) -> None:
        self._stop.set()


#: A request queued for the shadow: (request id, its conformed inputs, the schema they were conformed to).
_Shadowed = tuple[str, Conformed, "list[dict[str, str]] | None"]


class Shadow:
    """A candidate version that predicts a copy of every request off the response path (`serve --shadow V`).

    The request handler only `submit`s the request's conformed inputs to a bounded queue (no
    waiting: when it is full the work is dropped and counted); one worker thread predicts what has
    gathered in one call and logs each row as a shadow line (`"shadow": true`, the shadow's version,
    the request's id and row), whose `latency_ms` is the shadow's time for its batch. A shadow that
    fails, or whose schema the request does not fit, is counted and never touches the answer.
    """

    def __init__(self, model: LoadedModel, logger: PredictionLogger, log_proba: bool = True,
                 capacity: int = SHADOW_QUEUE) -> None:  # fmt: skip
        self.model, self.logger, self.log_proba = model, logger, log_proba
        self._queue: queue.Queue[_Shadowed | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._loop, name="workbench-shadow", daemon=True)
        self.predicted = self.dropped = self.failed = 0
        self._count = threading.Lock()

    @property
    def version(self) -> int:
        return self.model.version.version

    def submit(self, request_id: str, inputs: Conformed, schema: list[dict[str, str]] | None) -> None:
        """Queue a request (its inputs conformed to `schema`, the primary's) for the shadow model, or
        drop it when the queue is full: never blocks."""
        try:
            self._queue.put_nowait((request_id, inputs, schema))
        except queue.Full:
            with self._count:  # submitted from the event loop and from worker threads
                self.dropped += 1

    def status(self) -> dict[str, Any]:
        return {"version": self.version, "predicted": self.predicted, "dropped": self.dropped,
                "failed": self.failed, "queued": self._queue.qsize()}  # fmt: skip

    def start(self) -> Shadow:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued (within `timeout`), then end the worker."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=timeout)  # waits for room while the worker drains
            except queue.Full:  # a shadow model stuck on a batch: the daemon thread ends with the process
                log.warning("the shadow %s did not finish within %s s", self.model.version.ref, timeout)
                return
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            time.sleep(SHADOW_GATHER_S)
            batch, done = self._gather(first)
            try:
                self._predict(batch)
            except Exception:  # a bug of ours must not end shadowing: count it, say it once per batch
                self.failed += len(batch)
                log.exception("shadow prediction of %s failed", self.model.version.ref)
            if done:
                return

    def _gather(self, first: _Shadowed) -> tuple[list[_Shadowed], bool]:
        """`first` and what else is queued, up to SHADOW_BATCH_ROWS rows; True if the stop mark was seen."""
        batch, rows = [first], _rows(first[1])
        while rows < SHADOW_BATCH_ROWS:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if item is None:
                return batch, True
            batch.append(item)
            rows += _rows(item[1])
        return batch, False

    def _predict(self, batch: list[_Shadowed]) -> None:
        """Predict the batch in as few calls as there are distinct column lists (one, normally)."""
        groups: dict[tuple[str, ...], list[tuple[str, Conformed]]] = {}
        for request_id, inputs, schema in batch:
            fitted = self._fit(inputs, schema)
            if fitted is not None:
                groups.setdefault(tuple(fitted.names), []).append((request_id, fitted))
        for group in groups.values():
            self._predict_group(group)

    def _predict_group(self, group: list[tuple[str, Conformed]]) -> None:
        started = time.perf_counter()
        try:
            outputs = self.model.predictor.predict(concatenate([inputs for _, inputs in group]))
        except Exception:  # the shadow model failed on inputs the primary answered: counted, not raised
            self.failed += len(group)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        predictor = self.model.predictor if self.log_proba else None
        start = 0
        for request_id, inputs in group:
            end = start + _rows(inputs)
            self.logger.log_request(request_id, self.version, inputs, outputs[start:end], elapsed_ms, predictor,
                                    shadow=True)  # fmt: skip
            start = end
        self.predicted += len(group)

    def _fit(self, inputs: Conformed, schema: list[dict[str, str]] | None) -> Conformed | None:
        """The request's inputs for the shadow's schema: as they are when it is the primary's (or the
        shadow has none), else checked again against it (a request that does not fit is counted)."""
        if not self.model.schema or schema == self.model.schema:
            return inputs
        try:
            return conform({name: list(values) for name, values in inputs.columns.items()}, self.model.schema)
        except InputError:
            self.failed += 1
            return None


def _rows(inputs: Conformed) -> int:
    return len(next(iter(inputs.columns.values()), ()))
