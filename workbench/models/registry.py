"""The model registry: models, numbered versions, aliases, promotion with gates, rollback.

A version is a run's model artifact (a skops file in the blob store) plus a copy of what the run
knew (metrics, params, training snapshots), so a model card never depends on the run still being
around. Aliases (`production`, `staging`, anything) point at a version; every move is kept in
`model_alias_history` (rollback goes back along it) and in the audit log, in the same
transaction. After each move the alias file `models/<name>/aliases.json` is rewritten so model
servers notice the change with a cheap `stat()` instead of polling the catalog.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench import audit, blobs
from workbench.catalog import connect, transaction
from workbench.catalog.read_cache import cached_read, deep_copies
from workbench.errors import NotFoundError, ValidationError
from workbench.identity import current_user
from workbench.models.gates import GateRefused, GateResult, evaluate, validate_gates
from workbench.names import parse_ref, validate_name
from workbench.permissions import make_dir, protect
from workbench.remote.dispatch import remote_capable
from workbench.runs.store import Run, get_run
from workbench.workspace import Workspace, current_workspace

DEFAULT_ALIAS = "production"
ALIAS_FILE = "aliases.json"


@dataclass
class ModelVersion:
    name: str
    version: int
    run_id: str
    artifact: str
    blob: str
    meta: dict[str, Any]
    metrics: dict[str, Any]
    params: dict[str, Any]
    inputs: list[str]
    created_at: datetime
    creator: str
    reason: str | None
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def schema(self) -> list[dict[str, str]] | None:
        return self.meta.get("schema")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["ref"] = self.ref
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        """The version `to_dict` (e.g. the team server's answer) describes; other keys are ignored."""
        return cls(
            name=data["name"], version=int(data["version"]), run_id=data.get("run_id") or "",
            artifact=data.get("artifact") or "", blob=data.get("blob") or "", meta=data.get("meta") or {},
            metrics=data.get("metrics") or {}, params=data.get("params") or {}, inputs=list(data.get("inputs") or []),
            created_at=datetime.fromisoformat(data["created_at"]), creator=data.get("creator") or "",
            reason=data.get("reason"), aliases=list(data.get("aliases") or []),
        )  # fmt: skip


def _ws(ws: Workspace | None) -> Workspace:
    return ws or current_workspace()


def model_dir(ws: Workspace, name: str) -> Path:
    return ws.root / "models" / validate_name(name, "model name")


_VERSION_COLUMNS = "name, version, run_id, artifact, blob, meta, metrics, params, inputs, created_at, creator, reason"


def _version_from_row(row: tuple, aliases: list[str]) -> ModelVersion:
    values = list(row)
    for index in (5, 6, 7, 8):
        values[index] = json.loads(values[index]) if isinstance(values[index], str) else values[index] or {}
    return ModelVersion(*values, aliases=aliases)  # type: ignore[arg-type]


def _aliases_of(con: Any, name: str) -> dict[str, int]:
    return dict(
        con.execute("SELECT alias, version FROM model_aliases WHERE name = ? ORDER BY alias", [name]).fetchall()
    )


def model_artifact(run: Run, artifact: str | None = None, choose_hint: str = "Choose one with --artifact.") -> Any:
    """The run's model artifact: `artifact` by name, else its only model (an error for none or several)."""
    models = [a for a in run.artifacts if a.kind == "model"]
    if artifact is not None:
        found = run.artifact(artifact)
        if found.kind != "model":
            raise ValidationError(f"Artifact {artifact!r} of run {run.run_id} is a {found.kind}, not a model.")
        return found
    if not models:
        raise ValidationError(
            f"Run {run.run_id} logged no model.", "Log one in the notebook with wb.log_model(model, name, sample=X)."
        )
    if len(models) > 1:
        names = ", ".join(a.name for a in models)
        raise ValidationError(f"Run {run.run_id} logged several models ({names}).", choose_hint)
    return models[0]


@remote_capable("promote")
def promote(
    run_id: str,
    model: str | None = None,
    *,
    alias: str | None = DEFAULT_ALIAS,
    reason: str | None = None,
    artifact: str | None = None,
    force: bool = False,
    ws: Workspace | None = None,
) -> ModelVersion:
    """Register the run's model as the next version of `model` and move `alias` to it.

    The model's gates are checked first; a refusal raises `GateRefused` with every reason and is
    audited. Promoting a run that is already a version of the model reuses that version (only
    the alias moves). `alias=None` registers without moving any alias. `force` promotes despite
    failing gates: they are still evaluated, and the alias move's audit entry lists the ones it
    bypassed with their values. A live gate on `alias` (see `models.gates`) passes only for a run
    that is a version already and has beaten the alias holder on live outcomes.
    """
    ws = _ws(ws)
    run = get_run(run_id, ws)
    if run.status != "finished":
        raise ValidationError(f"Run {run_id} is {run.status}; only finished runs can be promoted.")
    found = model_artifact(run, artifact)
    name = validate_name(model or found.name, "model name")
    if alias is not None:
        validate_name(alias, "alias")
    if not blobs.exists(ws, found.blob):
        raise NotFoundError(f"The model file of run {run_id} is missing.", "Run 'workbench doctor'.")
    live = _judge_live(ws, name, alias, _version_of_run(ws, name, run_id, found.name)) if alias else None
    with transaction(ws) as con:  # gates are judged against the catalog the version is written to
        row = con.execute("SELECT gates FROM models WHERE name = ?", [name]).fetchone()
        gates = json.loads(row[0]) if row and row[0] else {}
        results = (_check_gates(con, name, gates, run) if gates and alias else []) + _live_results(con, name, live)
        subject = f"Promotion of run {run_id} to {name}@{alias}"
        refusal, gate_record = _gate_decision(con, name, alias, results, force, reason, subject, {"run_id": run_id})
        if refusal is None:
            version = _register(con, ws, run, name, found, alias, reason, force, gate_record)
    if refusal is not None:
        raise refusal  # after the commit: the refusal's audit entry stays
    return get_version(f"{name}@{version}", ws)


def _gate_decision(con: Any, name: str, alias: str | None, results: list[GateResult], force: bool,
                   reason: str | None, subject: str,
                   details: dict[str, Any]) -> tuple[GateRefused | None, dict[str, Any]]:  # fmt: skip
    """Refuse (audited as `gate.refused` with every result, in the caller's transaction) when a gate
    failed and `force` is not given; else the gate record for the alias move's audit entry, listing
    the gates a forced move bypassed with their values (and a live gate's numbers)."""
    failed = [r for r in results if not r.passed]
    if failed and not force:
        audit.record(con, "gate.refused", f"model:{name}", {**details, "alias": alias,
                     "results": [r.to_dict() for r in results]}, reason)  # fmt: skip
        reasons = "; ".join(f"{r.gate}: {r.detail}" for r in failed)
        wait = " (or wait for more outcomes)" if any(r.numbers is not None for r in failed) else ""
        return GateRefused(f"{subject} refused by its gates: {reasons}.",
                           f"Improve the model{wait}, or pass --force to override (audited).", results), {}  # fmt: skip
    return None, {"gates": [r.to_dict() for r in results], "bypassed": [r.to_dict() for r in failed]}


def _register(con: Any, ws: Workspace, run: Run, name: str, found: Any, alias: str | None, reason: str | None,
              force: bool, gate_record: dict[str, Any]) -> int:  # fmt: skip
    """Write the model (if new), the version (unless this run's artifact already is one) and the alias
    move, in the caller's transaction; a forced promotion records which gates it bypassed and their values."""
    now = datetime.now(timezone.utc)
    user = current_user()
    run_id = run.run_id
    if not con.execute("SELECT count(*) FROM models WHERE name = ?", [name]).fetchone()[0]:
        con.execute("INSERT INTO models (name, created_at, creator) VALUES (?, ?, ?)", [name, now, user])
        audit.record(con, "model.created", f"model:{name}", None, reason)
    existing = con.execute(
        "SELECT version FROM model_versions WHERE name = ? AND run_id = ? AND artifact = ?",
        [name, run_id, found.name],
    ).fetchone()
    if existing:
        version = existing[0]
    else:
        version = con.execute("SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = ?",
                              [name]).fetchone()[0]  # fmt: skip
        con.execute(
            f"INSERT INTO model_versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [name, version, run_id, found.name, found.blob, json.dumps(found.meta or {}),
             json.dumps(run.metrics, default=str), json.dumps(run.params, default=str), json.dumps(run.inputs),
             now, user, reason],
        )  # fmt: skip
        audit.record(con, "model.version.created", f"model:{name}@{version}",
                     {"run_id": run_id, "artifact": found.name, "forced": force}, reason)  # fmt: skip
    if alias is not None:
        _move_alias(con, name, alias, version, reason, {"run_id": run_id, "forced": force, **gate_record})
    write_alias_file(ws, name, con)
    return version


def _check_gates(con: Any, name: str, gates: dict[str, Any], run: Run) -> list[GateResult]:
    incumbent = None
    beat = gates.get("beat")
    if beat:
        holder = con.execute(
            "SELECT v.metrics FROM model_aliases a JOIN model_versions v ON v.name = a.name AND v.version = a.version "
            "WHERE a.name = ? AND a.alias = ?",
            [name, beat["alias"]],
        ).fetchone()
        incumbent = json.loads(holder[0]) if holder and holder[0] else None
    return evaluate(gates, run.metrics, incumbent)


def _version_of_run(ws: Workspace, name: str, run_id: str, artifact: str) -> int | None:
    """The version of `name` that is run `run_id`'s `artifact` already, if any."""
    with connect(ws) as con:
        row = con.execute("SELECT version FROM model_versions WHERE name = ? AND run_id = ? AND artifact = ?",
                          [name, run_id, artifact]).fetchone()  # fmt: skip
    return int(row[0]) if row else None


@dataclass
class _LiveJudgement:
    """A live gate judged before the catalog transaction (reading logs can take a second), with the
    holder it compared against, checked again inside the transaction."""

    alias: str
    holder: int | None
    result: GateResult


def _judge_live(ws: Workspace, name: str, alias: str, candidate: int | None) -> _LiveJudgement | None:
    """The model's live gate for moving `alias` to version `candidate` (None: not a version yet),
    or None when it has no live gate for that alias."""
    from workbench.models.gates import judge_live

    with connect(ws) as con:
        row = con.execute("SELECT gates FROM models WHERE name = ?", [name]).fetchone()
        live = (json.loads(row[0]) if row and row[0] else {}).get("live")
        if not live or live["alias"] != alias:
            return None
        holder = _aliases_of(con, name).get(alias)
    return _LiveJudgement(alias, holder, judge_live(ws, name, live, holder, candidate))


def _live_results(con: Any, name: str, live: _LiveJudgement | None) -> list[GateResult]:
    """The live gate's result, unless the alias moved while it was judged (then a refusal to retry)."""
    if live is None:
        return []
    now = _aliases_of(con, name).get(live.alias)
    if now != live.holder:
        return [GateResult(live.result.gate, False, f"'{live.alias}' moved from version {live.holder} to {now} "
                           "while the live gate was judged; try again")]  # fmt: skip
    return [live.result]


def _move_alias(con: Any, name: str, alias: str, version: int, reason: str | None, details: dict[str, Any]) -> None:
    previous = _aliases_of(con, name).get(alias)
    now = datetime.now(timezone.utc)
    user = current_user()
    con.execute(
        "INSERT OR REPLACE INTO model_aliases (name, alias, version, updated_at, updated_by) VALUES (?, ?, ?, ?, ?)",
        [name, alias, version, now, user],
    )
    con.execute("INSERT INTO model_alias_history VALUES (?, ?, ?, ?, ?, ?, ?)",
                [name, alias, version, previous, now, user, reason])  # fmt: skip
    audit.record(con, "alias.moved", f"model:{name}@{alias}", {**details, "version": version, "previous": previous},
                 reason)  # fmt: skip


@remote_capable("set_alias")
def set_alias(
    name: str, alias: str, version: int, *, reason: str | None = None, by: str | None = None, force: bool = False,
    ws: Workspace | None = None,
) -> ModelVersion:  # fmt: skip
    """Point `alias` at an existing version.

    The version was registered already, so the run's metric gates are not judged again; the
    model's live gate is, when it guards `alias` (see `models.gates`): a refusal raises
    `GateRefused` and is audited, `force` overrides it (audited with the numbers). The audit entry
    says who decided: a person (`manual`), or the automation named by `by` (e.g. `pipeline:NAME`).
    """
    ws = _ws(ws)
    validate_name(alias, "alias")
    target = get_version(f"{name}@{int(version)}", ws)
    decided = {"manual": True} if by is None else {"manual": False, "by": by}
    live = _judge_live(ws, name, alias, target.version)
    with transaction(ws) as con:
        results = _live_results(con, name, live)
        subject = f"Moving {name}@{alias} to version {target.version}"
        refusal, gate_record = _gate_decision(con, name, alias, results, force, reason, subject,
                                              {"version": target.version, **decided})  # fmt: skip
        if refusal is None:
            _move_alias(con, name, alias, target.version, reason,
                        {**decided, **({"forced": force, **gate_record} if results else {})})  # fmt: skip
            write_alias_file(ws, name, con)
    if refusal is not None:
        raise refusal  # after the commit: the refusal's audit entry stays
    return get_version(target.ref, ws)


@remote_capable("rollback")
def rollback(
    name: str, alias: str = DEFAULT_ALIAS, *, to: int | None = None, reason: str | None = None,
    ws: Workspace | None = None,
) -> ModelVersion:  # fmt: skip
    """Move `alias` back: to version `to`, or to the version it pointed at before the current one."""
    ws = _ws(ws)
    validate_name(name, "model name")
    validate_name(alias, "alias")
    with connect(ws) as con:
        current = _aliases_of(con, name).get(alias)
        history = [v for (v,) in con.execute(
            "SELECT version FROM model_alias_history WHERE name = ? AND alias = ? ORDER BY moved_at DESC",
            [name, alias]).fetchall()]  # fmt: skip
    if current is None:
        raise NotFoundError(f"Model {name!r} has no alias {alias!r}.", f"See 'workbench models show {name}'.")
    if to is None:
        earlier = [v for v in history if v != current]
        if not earlier:
            raise ValidationError(f"{name}@{alias} has no earlier version to roll back to.",
                                  "Name one with --to VERSION.")  # fmt: skip
        to = earlier[0]
    target = get_version(f"{name}@{int(to)}", ws)
    with transaction(ws) as con:
        _move_alias(con, name, alias, target.version, reason, {"rollback": True, "from": current})
        write_alias_file(ws, name, con)
    return get_version(target.ref, ws)


def write_alias_file(ws: Workspace, name: str, con: Any = None) -> None:
    """Rewrite `models/<name>/aliases.json` atomically from the catalog (servers watch it).

    Called with the open transaction of an alias move, before it commits: if the file cannot be
    written (disk full), the move rolls back too, so catalog and file never disagree.
    """
    if con is None:
        with connect(ws) as own:
            return write_alias_file(ws, name, own)
    aliases = _aliases_of(con, name)
    latest = con.execute("SELECT max(version) FROM model_versions WHERE name = ?", [name]).fetchone()[0]
    folder = make_dir(model_dir(ws, name))
    tmp = folder / f".{ALIAS_FILE}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps({"aliases": aliases, "latest": latest}))
        protect(tmp)
        os.replace(tmp, folder / ALIAS_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    return None


def alias_file_state(ws: Workspace, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((model_dir(ws, name) / ALIAS_FILE).read_text())
    except (OSError, ValueError):
        return None


@remote_capable("get_version")
def get_version(ref: str, ws: Workspace | None = None) -> ModelVersion:
    """The version `name@3`, `name@production` (an alias) or `name` (latest) points at."""
    ws = _ws(ws)
    parsed = parse_ref(ref, "model", allow_alias=True)
    with connect(ws) as con:
        exists = con.execute("SELECT count(*) FROM models WHERE name = ?", [parsed.name]).fetchone()[0]
        if not exists:
            raise NotFoundError(f"No model named {parsed.name!r}.", "Promote a run first: workbench promote RUN_ID.")
        aliases = _aliases_of(con, parsed.name)
        version = parsed.version
        if parsed.alias is not None:
            version = aliases.get(parsed.alias)
            if version is None:
                known = ", ".join(aliases) or "none"
                raise NotFoundError(f"Model {parsed.name!r} has no alias {parsed.alias!r} (aliases: {known}).")
        if version is None:
            version = con.execute("SELECT max(version) FROM model_versions WHERE name = ?", [parsed.name]).fetchone()[0]
        row = con.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = ? AND version = ?",
                          [parsed.name, version]).fetchone()  # fmt: skip
    if row is None:
        raise NotFoundError(f"Model {parsed.name!r} has no version {version}.")
    return _version_from_row(row, sorted(a for a, v in aliases.items() if v == version))


@remote_capable("load_model")
def load(ref: str, ws: Workspace | None = None) -> tuple[Any, ModelVersion]:
    """The model object (skops, trusted types only) and its version record."""
    from workbench.models.serialization import load_model

    ws = _ws(ws)
    version = get_version(ref, ws)
    data = blobs.read_verified(ws, version.blob, what=f"model {version.ref}")
    return load_model(data, version.meta), version


def versions(name: str, ws: Workspace | None = None) -> list[ModelVersion]:
    ws = _ws(ws)
    validate_name(name, "model name")
    with connect(ws) as con:
        if not con.execute("SELECT count(*) FROM models WHERE name = ?", [name]).fetchone()[0]:
            raise NotFoundError(f"No model named {name!r}.", "See 'workbench models list'.")
        aliases = _aliases_of(con, name)
        rows = con.execute(f"SELECT {_VERSION_COLUMNS} FROM model_versions WHERE name = ? ORDER BY version DESC",
                           [name]).fetchall()  # fmt: skip
    return [_version_from_row(r, sorted(a for a, v in aliases.items() if v == r[1])) for r in rows]


@remote_capable("list_models")
@cached_read(deep_copies)  # the Lab sidebar polls it
def list_models(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """One entry per model: latest version, aliases, description, gates."""
    ws = _ws(ws)
    with connect(ws) as con:
        rows = con.execute(
            "SELECT m.name, m.description, m.gates, m.created_at, max(v.version) FROM models m "
            "LEFT JOIN model_versions v USING (name) GROUP BY ALL ORDER BY m.name"
        ).fetchall()
        aliases = con.execute("SELECT name, alias, version FROM model_aliases ORDER BY name, alias").fetchall()
    by_model: dict[str, dict[str, int]] = {}
    for name, alias, version in aliases:
        by_model.setdefault(name, {})[alias] = version
    return [
        {"name": name, "description": description, "gates": json.loads(gates) if gates else None,
         "created_at": created.isoformat(), "latest_version": latest, "aliases": by_model.get(name, {})}
        for name, description, gates, created, latest in rows
    ]  # fmt: skip


@remote_capable("get_model")
def get_model(name: str, ws: Workspace | None = None) -> dict[str, Any]:
    """A model with all its versions (newest first), aliases and alias history."""
    ws = _ws(ws)
    found = versions(name, ws)
    entry = next(m for m in list_models(ws) if m["name"] == name)
    with connect(ws) as con:
        history = con.execute(
            "SELECT alias, version, previous, moved_at, actor, reason FROM model_alias_history WHERE name = ? "
            "ORDER BY moved_at DESC LIMIT 50",
            [name],
        ).fetchall()
    entry["versions"] = [v.to_dict() for v in found]
    entry["alias_history"] = [
        {"alias": a, "version": v, "previous": p, "moved_at": t.isoformat(), "actor": who, "reason": why}
        for a, v, p, t, who, why in history
    ]
    return entry


@remote_capable("set_gates")
def set_gates(name: str, gates: dict[str, Any] | None, *, description: str | None = None,
              ws: Workspace | None = None) -> dict[str, Any]:  # fmt: skip
    """Configure the promotion gates of `name` (None removes them); creates the model if needed."""
    ws = _ws(ws)
    validate_name(name, "model name")
    clean = validate_gates(gates) if gates else None
    with transaction(ws) as con:
        exists = con.execute("SELECT count(*) FROM models WHERE name = ?", [name]).fetchone()[0]
        if not exists:
            con.execute("INSERT INTO models (name, created_at, creator) VALUES (?, now(), ?)", [name, current_user()])
        con.execute("UPDATE models SET gates = ? WHERE name = ?", [json.dumps(clean) if clean else None, name])
        if description is not None:
            con.execute("UPDATE models SET description = ? WHERE name = ?", [description, name])
        audit.record(con, "model.gates.set", f"model:{name}", {"gates": clean})
    return clean or {}


__all__ = [
    "GateRefused", "ModelVersion", "get_model", "get_version", "list_models", "load", "promote", "rollback",
    "set_alias", "set_gates", "versions",
]  # fmt: skip
