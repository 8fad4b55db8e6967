"""The snapshots part of `RemoteStore` (see `remote.store`)."""

from __future__ import annotations

from workbench.remote.client import Client
from workbench.remote.config import Remote


class SnapshotsStore:
    """Snapshots read from and written to a team server."""

    remote: Remote
    client: Client
