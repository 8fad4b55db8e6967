"""REST handlers for the model registry (list, show, promote, set an alias, rollback) and running servers."""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.web

from workbench.errors import ValidationError
from workbench.jupyter.base import (
    WorkbenchHandler,
    guarded,
    int_field,
    team_server,
    text_field,
    to_jsonable,
)
from workbench.runs.ids import check_run_id

# --------------------------------------------------------------------------------------------
# Models and serving


class ModelsHandler(WorkbenchHandler):
    """GET models: every registered model with its latest version and aliases."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        from workbench.models.registry import list_models

        self.reply(await self.call(list_models))


class ModelHandler(WorkbenchHandler):
    """GET models/<name>: the versions and aliases of one model."""

    @tornado.web.authenticated
    @guarded
    async def get(self, name: str) -> None:
        from workbench.models.registry import get_model

        self.reply(await self.call(get_model, name))


class PromoteHandler(WorkbenchHandler):
    """POST models/promote {run_id, model, alias, reason}: register a run's model and move an alias."""

    @tornado.web.authenticated
    @guarded
    async def post(self) -> None:
        from workbench.models.registry import promote

        data = self.json_body()
        run_id = check_run_id(data.get("run_id"))
        alias = text_field(data, "alias", "production")
        result = await self.call(
            promote, run_id, model=text_field(data, "model"), alias=alias, reason=text_field(data, "reason")
        )
        self.reply({**to_jsonable(result), "alias": alias})


class RollbackHandler(WorkbenchHandler):
    """POST models/<name>/rollback {alias, to, reason}: point an alias back at an earlier version."""

    @tornado.web.authenticated
    @guarded
    async def post(self, name: str) -> None:
        from workbench.models.registry import rollback

        data = self.json_body()
        alias = text_field(data, "alias", "production")
        to = int_field(data, "to", minimum=1)  # a version number
        result = await self.call(rollback, name, alias=alias, to=to, reason=text_field(data, "reason"))
        self.reply({**to_jsonable(result), "alias": alias})


class SetAliasHandler(WorkbenchHandler):
    """POST models/<name>/alias {alias, version, reason}: point an alias at a registered version.

    No gates: they judged the version when it was registered; this only moves the pointer (audited).
    """

    @tornado.web.authenticated
    @guarded
    async def post(self, name: str) -> None:
        from workbench.models.registry import set_alias

        data = self.json_body()
        alias = text_field(data, "alias", "production")
        version = int_field(data, "version", minimum=1)
        if version is None:
            raise ValidationError("version is required: the version number the alias should point at.")
        result = await self.call(set_alias, name, alias, version, reason=text_field(data, "reason"))
        self.reply({**to_jsonable(result), "alias": alias})


class ServingHandler(WorkbenchHandler):
    """GET serving: model servers running on this machine (with a team server: those serving its
    models, whose status files are in its spool on this machine, as `workbench serve` writes them)."""

    @tornado.web.authenticated
    @guarded
    async def get(self) -> None:
        from workbench.serving.server import running_servers

        def here() -> list[dict[str, Any]]:
            remote = team_server()
            if remote is None:
                return running_servers(self.local_workspace())
            from workbench.remote.sender import spool_workspace

            return running_servers(spool_workspace(remote))

        self.reply(await asyncio.to_thread(here))
