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
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.models.registry import ALIAS_FILE, ModelVersion, get_version, load, model_dir
from workbench.names import parse_ref
from workbench.serving.predict import Predictor
from workbench.workspace import Workspace

if TYPE_CHECKING:
    from workbench.serving.sources import ModelSource

log = logging.getLogger("workbench.serving")
CATALOG_CHECK_TICKS = 40  # every 10 s at the default interval


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
