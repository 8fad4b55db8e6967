"""Where a model server gets its models from: the one place that decides local or remote.

A `ModelSource` loads a version for a reference, says which version an alias points at now, follows
alias moves (calling `slot.refresh()` when one happened), records the server's start and stop, and
names the folder for its status file and prediction log. The serving code (`server.build_server`,
`models.ModelSlot`, `app`) only talks to a source, never asks which kind it has.

- `LocalSource`: a workspace folder on this machine (today's code): the registry's files, the alias
  file watched by `models.AliasWatcher`, the audit log in the catalog, the prediction log in
  `predictions/<model>/`.
- `remote_source.RemoteSource`: a team server (`WORKBENCH_URL`, `wb.connect`, `workbench login`):
  model files downloaded into a cache keyed by their sha256, alias moves followed through the
  server's change feed, the prediction log spooled locally and shipped to the server.

`model_source()` chooses, once, by `workbench.remote.config.resolve()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from workbench.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    from workbench.names import Ref
    from workbench.serving.models import LoadedModel, ModelSlot


class Follower(Protocol):
    """A background helper that keeps a slot on the version its alias points at."""

    def start(self) -> Any: ...

    def stop(self) -> None: ...


class ModelSource(Protocol):
    """What a model server needs from wherever its models live."""

    #: Where the server keeps its status file (`serving/`) and writes its prediction log (`predictions/`).
    workspace: Workspace

    def load(self, ref: str) -> LoadedModel:
        """The version `ref` (NAME, NAME@VERSION or NAME@ALIAS) names now, loaded (verified, no pickle)."""

    def target_version(self, parsed: Ref) -> int | None:
        """The version the reference points at now (None: unknown right now)."""

    def follower(self, slot: ModelSlot) -> Follower:
        """The helper that refreshes `slot` when its alias moves."""

    def record(self, action: str, target: str, details: dict[str, Any], required: bool) -> None:
        """Record a start or stop of serving (a required record that fails raises a WorkbenchError)."""

    def shipper(self, model: str) -> Follower | None:
        """The helper that ships the prediction log of `model` elsewhere (None: it stays where it is written)."""

    def describe(self) -> str:
        """Where the models come from, for messages."""


class LocalSource:
    """A workspace folder on this machine."""

    def __init__(self, ws: Workspace) -> None:
        self.workspace = ws

    def load(self, ref: str) -> LoadedModel:
        from workbench.serving.models import load_version

        return load_version(self.workspace, ref)

    def target_version(self, parsed: Ref) -> int | None:
        from workbench.models.registry import alias_file_state

        data = alias_file_state(self.workspace, parsed.name)
        if data is None:
            return None
        if parsed.alias is not None:
            return data.get("aliases", {}).get(parsed.alias)
        return data.get("latest")

    def follower(self, slot: ModelSlot) -> Follower:
        from workbench.serving.models import AliasWatcher

        return AliasWatcher(slot)

    def record(self, action: str, target: str, details: dict[str, Any], required: bool) -> None:
        from workbench import audit
        from workbench.catalog import transaction

        with transaction(self.workspace) as con:
            audit.record(con, action, target, details)

    def shipper(self, model: str) -> Follower | None:
        return None

    def describe(self) -> str:
        return str(self.workspace.root)


def model_source(local: Callable[[], Workspace] = current_workspace) -> ModelSource:
    """The team server this process is configured for (see `workbench.remote.config`), else the local
    workspace `local()` finds."""
    from workbench.remote.config import resolve

    remote = resolve()
    if remote is not None:
        from workbench.serving.remote_source import RemoteSource

        return RemoteSource(remote)
    return LocalSource(local())


def cache_root() -> str:
    """`$XDG_CACHE_HOME/workbench` (`~/.cache/workbench` by default)."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "workbench")
