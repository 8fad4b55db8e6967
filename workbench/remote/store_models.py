"""The models part of `RemoteStore` (see `remote.store`): the registry and the audit log on a team server.

Each method takes the arguments of the library function of the same name minus `ws` and returns what
it returns: `ModelVersion`s, the dicts of `list_models`/`get_model`, `AuditEntry` lists. Names are
checked here first, with the library's own messages, so a bad name is refused before any request.
Promotions are judged on the server (gates included); a refusal by the gates is raised here as the
same `GateRefused`, carrying every gate's verdict. Model files are downloaded once into the private
cache by sha256 (`cached_download`, kind `models`) and loaded by the safe loader (skops, never pickle).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from workbench.models.registry import DEFAULT_ALIAS, ModelVersion
from workbench.remote.client import Client, RemoteValidationError
from workbench.remote.config import Remote

if TYPE_CHECKING:
    from workbench.audit import AuditEntry


def _model(name: str) -> str:
    from workbench.names import validate_name

    return validate_name(name, "model name")


def _alias(alias: str) -> str:
    from workbench.names import validate_name

    return validate_name(alias, "alias")


def _version(answer: dict[str, Any]) -> ModelVersion:
    return ModelVersion.from_dict(answer)


def _gated(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`call`'s answer; a 400 carrying every gate's verdict (`gates`) raised as the library's `GateRefused`."""
    from workbench.models.gates import GateRefused, GateResult

    try:
        return call()
    except RemoteValidationError as exc:
        if not isinstance(exc.body.get("gates"), list):
            raise
        results = [GateResult(str(g["gate"]), bool(g["passed"]), str(g["detail"]), g.get("numbers"))
                   for g in exc.body["gates"]]  # fmt: skip
        raise GateRefused(exc.message, exc.hint, results) from None


def _entries(answer: list[dict[str, Any]]) -> list[AuditEntry]:
    from workbench.audit import AuditEntry

    return [AuditEntry.from_dict(entry) for entry in answer]


def _moment(since: datetime | None) -> str | None:
    return since.isoformat() if since is not None else None


class ModelsStore:
    """Models and the audit log read from and written to a team server."""

    remote: Remote
    client: Client

    # -- reading the registry

    def list_models(self) -> list[dict[str, Any]]:
        """`registry.list_models`: one entry per model (latest version, aliases, description, gates)."""
        return self.client.get("/models")

    def get_model(self, name: str) -> dict[str, Any]:
        """`registry.get_model`: a model with its versions (newest first), aliases and alias history."""
        return self.client.get(f"/models/{_model(name)}")

    def _version_info(self, ref: str) -> dict[str, Any]:
        """The server's record of the version `ref` (`name@3`, `name@alias`, `name`: latest), with the
        sha256 of its file (and, for `name@3`, its Markdown card)."""
        from workbench.names import parse_ref

        parsed = parse_ref(ref, "model", allow_alias=True)
        if parsed.version is not None:
            return self.client.get(f"/models/{parsed.name}/versions/{parsed.version}")
        if parsed.alias is not None:
            return self.client.get(f"/models/{parsed.name}/aliases/{parsed.alias}")
        return self.client.get(f"/models/{parsed.name}/latest")

    def get_version(self, ref: str) -> ModelVersion:
        """`registry.get_version`: the version `name@3`, `name@alias` or `name` (latest) points at."""
        return _version(self._version_info(ref))

    def load_model(self, ref: str) -> tuple[Any, ModelVersion]:
        """`registry.load`: the model object (skops, trusted types only) and its version record; the
        file comes from the private cache, downloaded and verified once."""
        from workbench.models.serialization import load_model
        from workbench.remote.downloads import cached_download

        info = self._version_info(ref)
        version = _version(info)
        path = cached_download(self.client, f"/models/{version.name}/versions/{version.version}/file", "models",
                               info.get("sha256"), f"model {version.ref}")  # fmt: skip
        return load_model(path.read_bytes(), version.meta), version

    def model_card(self, ref: str, fmt: str = "markdown") -> str:
        """`card.model_card`: the server's Markdown card; as HTML, rendered here exactly as locally."""
        from workbench.models.card import card_html

        info = self._version_info(ref)
        if "card" not in info:  # resolved an alias or latest: the card comes with the numbered version
            info = self.client.get(f"/models/{info['name']}/versions/{int(info['version'])}")
        markdown = str(info["card"])
        return card_html(f"{info['name']}@{int(info['version'])}", markdown) if fmt == "html" else markdown

    # -- changing the registry

    def promote(
        self, run_id: str, model: str | None = None, *, alias: str | None = DEFAULT_ALIAS, reason: str | None = None,
        artifact: str | None = None, force: bool = False,
    ) -> ModelVersion:  # fmt: skip
        """`registry.promote` on the server, gates judged there: their refusal is raised as `GateRefused`
        with every verdict; a protected alias needs role maintainer (the 403 names it)."""
        from workbench.runs.ids import check_run_id

        body = {"run_id": check_run_id(run_id), "model": _model(model) if model else None,
                "artifact": artifact, "alias": _alias(alias) if alias is not None else None, "reason": reason,
                "force": bool(force)}  # fmt: skip
        return _version(_gated(lambda: self.client.request("POST", "/promotions", json=body).json()))

    def set_alias(self, name: str, alias: str, version: int, *, reason: str | None = None,
                  by: str | None = None, force: bool = False) -> ModelVersion:  # fmt: skip
        """`registry.set_alias`: point `alias` at an existing version (a protected alias: maintainer); the
        live gate is judged on the server, its refusal raised as `GateRefused`."""
        body = {"version": int(version), "reason": reason, "by": by, "force": bool(force)}
        path = f"/models/{_model(name)}/aliases/{_alias(alias)}"
        return _version(_gated(lambda: self.client.request("PUT", path, json=body).json()))

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS, *, to: int | None = None,
                 reason: str | None = None) -> ModelVersion:  # fmt: skip
        """`registry.rollback`: move `alias` back to its previous version, or to `to` (maintainer)."""
        body = {"to": int(to) if to is not None else None, "reason": reason}
        path = f"/models/{_model(name)}/aliases/{_alias(alias)}/rollback"
        return _version(self.client.request("POST", path, json=body).json())

    def set_gates(self, name: str, gates: dict[str, Any] | None, *, description: str | None = None) -> dict[str, Any]:
        """`registry.set_gates`: replace the promotion gates of `name` (maintainer); the gates as stored."""
        from workbench.models.gates import validate_gates

        clean = validate_gates(gates) if gates else None  # refused here with the library's message
        body = {"gates": clean, "description": description}
        return self.client.request("PUT", f"/models/{_model(name)}/gates", json=body).json()["gates"]

    # -- the audit log

    def audit_entries(self, target: str | None = None, action: str | None = None, since: datetime | None = None,
                      limit: int | None = None) -> list[AuditEntry]:  # fmt: skip
        """`audit.entries`: oldest first; `limit`: only the oldest `limit` of them."""
        params = {"target": target, "action": action, "since": _moment(since),
                  "first": str(int(limit)) if limit is not None else None}  # fmt: skip
        return _entries(self.client.get("/audit", params={k: v for k, v in params.items() if v}))

    def audit_search(self, model: str | None = None, target: str | None = None, action: str | None = None,
                     since: str | datetime | None = None, limit: int | None = None,
                     flag: str = "") -> list[AuditEntry]:  # fmt: skip
        """`audit.search` (`workbench audit`), its filters checked here first with the same messages."""
        from workbench.audit import search_filters

        where, moment = search_filters(model, target, since, limit, flag)
        params = {"target": where, "action": action, "since": _moment(moment),
                  "limit": str(limit) if limit is not None else None}  # fmt: skip
        return _entries(self.client.get("/audit", params={k: v for k, v in params.items() if v}))
