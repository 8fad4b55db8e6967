"""`RemoteStore`: the workspace functions of the library (see `remote.dispatch`) answered by a team server.

It is made of one part per concept, each in its own module and each a mixin over the same HTTP
client: runs (`store_runs`), snapshots (`store_snapshots`), models and the audit log
(`store_models`). A method has the name `@remote_capable` gives it, the arguments of the local
function minus `ws`, and returns the same type (a DataFrame, a `Run`, a `Snapshot`, ...), so callers
cannot tell the two apart except by speed. Files a server hands out (snapshot data, artifacts, model
files) are downloaded once into a private cache by content hash (`cached_download`) and verified.
"""

from __future__ import annotations

from workbench.remote.client import Client
from workbench.remote.config import Remote
from workbench.remote.store_models import ModelsStore
from workbench.remote.store_monitor import MonitorStore
from workbench.remote.store_runs import RunsStore
from workbench.remote.store_snapshots import SnapshotsStore


class RemoteStore(RunsStore, SnapshotsStore, ModelsStore, MonitorStore):
    """The workspace on the team server `remote`, as the library's functions see it."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        self.client = Client(remote)

    def __repr__(self) -> str:
        return f"RemoteStore({self.remote.url!r})"
