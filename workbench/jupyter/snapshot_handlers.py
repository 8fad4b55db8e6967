"""REST handlers for data snapshots: list, show, diff."""

from __future__ import annotations

import tornado.web

from workbench.errors import ValidationError
from workbench.jupyter.base import (
    WorkbenchHandler,
    guarded,
)

# --------------------------------------------------------------------------------------------
# Snapshots


class SnapshotsHandler(WorkbenchHandler):
    """GET snapshots: latest version of every snapshot (`?all_versions=1`, `?name=`)."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        from workbench.snapshots.store import list_snapshots

        name = self.get_query_argument("name", None) or None
        all_versions = self.get_query_argument("all_versions", "0").lower() in ("1", "true", "yes")
        snaps = await self.call(list_snapshots, name, all_versions)
        self.reply([s.to_dict() for s in snaps])


class SnapshotHandler(WorkbenchHandler):
    """GET snapshots/<ref>: one version's metadata, schema and column profile."""

    @tornado.web.authenticated
    async def get(self, ref: str) -> None:
        await self.show(ref)

    @guarded
    async def show(self, ref: str) -> None:
        from workbench.snapshots.store import get

        snap = await self.call(get, ref)
        self.reply(snap.to_dict())


class SnapshotDiffHandler(SnapshotHandler):
    """GET snapshots/diff?a=&b=&key=: what changed between two versions (rows matched on key).

    Without `a`, this is the snapshot named "diff" (the route would otherwise hide it).
    """

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:  # type: ignore[override]
        from workbench.snapshots.differ import diff

        a = self.get_query_argument("a", None)
        if a is None:
            await self.show("diff")
            return
        b = self.get_query_argument("b", None)
        if not b:
            raise ValidationError("Pass both a= and b= snapshot refs.", "e.g. ?a=wine@1&b=wine@2")
        keys = [k.strip() for arg in self.get_query_arguments("key") for k in arg.split(",") if k.strip()]
        result = await self.call(diff, a, b, key=keys or None)
        self.reply(result.to_dict())
