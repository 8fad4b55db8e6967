"""Pipelines as code: named sequences of tracked notebook runs declared in `workbench.yaml`.

    pipelines:
      wine-retrain:
        on: {snapshot: wine}                    # retrain when wine gets a new version
        # or: on: {live: {model: wine-classifier, metric: accuracy, below: 0.8, min_outcomes: 100, since: 1d}}
        inputs: {snapshot: wine}                # notebook parameter -> snapshot (pinned per run)
        steps:
          - notebook: notebooks/02_train.ipynb
            params: {n_estimators: 40}
            sweep: {grid: {learning_rate: [0.05, 0.2]}, parallel: 2}
            select: {metric: log_loss, mode: min}
        promote: {model: wine-classifier, alias: production, fallback_alias: staging}

Every step is a tracked run (or a sweep of them) tagged `pipeline=<name>` and
`pipeline_run=<id>`; a step's runs point at the previous step's selected run (`parent_run_id`,
and the parameter `upstream_run` if the notebook declares one). Snapshot inputs are resolved to
versions once, at the start, so every step sees the same data. The last step's selected run is
promoted to `alias`; if the model's gates refuse, it is registered and moved to
`fallback_alias` instead, with the refusal as the reason.

The result records every declared step and the promotion as it went: finished, failed (with the
error and the failing cell), refused (the gates' verdicts), or skipped (not reached), each with
its duration: what a CI report needs (`workbench.governance.junit`), and what the audit entry keeps.

Each pipeline run ends with one audit entry (`pipeline.finished` or `pipeline.failed`, target
`pipeline:<name>`) holding the snapshot versions it used. That entry is also the trigger state
for `--if-changed`: the audit log is already shared by every process of the workspace,
transactional and append-only, so there is no second state file to get out of sync, and "what
did the last retraining use, who started it and why" has one answer.

With a team server configured (and no `ws`), `list_pipelines` and `changed` read the server's audit
log and snapshots, but running a pipeline (`run_pipeline`, `watch`) is refused: its audit entry is
its trigger state, and a client cannot write the server's audit log (nor should it: entries are the
server's record of what its users did). Running it against a workspace folder on a client instead
would silently keep a second, diverging trigger state, so that is refused too (`automation_workspace`).

This module runs pipelines; the file is parsed and checked by `workbench.governance.pipeline_spec`
(whose names are re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workbench import audit
from workbench.catalog import transaction
from workbench.errors import NotFoundError, WorkbenchError
from workbench.governance.pipeline_spec import FILE_NAME, Pipeline, Step, find_file, load_pipeline, validate_file
from workbench.workspace import Workspace, current_workspace

UPSTREAM_PARAM = "upstream_run"


@dataclass
class StepResult:
    """A notebook step, or the promotion (`PipelineResult.promotion`, with no notebook)."""

    label: str
    notebook: str
    run_ids: list[str]
    selected: str | None
    sweep_id: str | None = None
    status: str = "finished"  # finished | failed | refused (promotion: gates said no) | skipped (not reached)
    seconds: float = 0.0
    error: dict[str, Any] | None = None  # message, hint; a failed run's ename/evalue/cell_index/traceback; gates


class _StepFailed(WorkbenchError):
    """A step whose runs all failed; carries the first run's recorded error for the step's record."""

    def __init__(self, message: str, hint: str | None, run_error: dict[str, Any]) -> None:
        super().__init__(message, hint)
        self.run_error = run_error


@dataclass
class PipelineResult:
    name: str
    pipeline_run: str | None
    status: str  # finished | failed | skipped
    inputs: dict[str, str] = field(default_factory=dict)  # snapshot name -> ref used
    steps: list[StepResult] = field(default_factory=list)  # every declared step, once the run was decided
    promotion: StepResult | None = None  # when the pipeline declares `promote`
    seconds: float = 0.0
    selected_run: str | None = None
    promoted: dict[str, Any] | None = None
    message: str = ""
    trigger: dict[str, Any] | None = None  # what fired a live trigger, with its numbers (`triggers.live_check`)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def automation_workspace(what: str, ws: Workspace | None) -> Workspace:
    """The workspace folder `what` (a pipeline run, a trigger watch) records its audit entries in: `ws`,
    else the current workspace; refused when, without `ws`, a team server is configured."""
    if ws is not None:
        return ws
    from workbench.remote.dispatch import remote_store

    store = remote_store()
    if store is not None:
        raise WorkbenchError(
            f"{what} cannot run against the team server {store.remote.url}: each pipeline run is recorded in the "
            "server's audit log (which is also what --if-changed and watch decide on), and only the server "
            "writes it.",
            "Run its steps with 'workbench run' or 'workbench sweep' (recorded on the server) and promote with "
            "'workbench models promote'; a pipeline run needs the workspace folder itself (--home), "
            "with the server stopped.",
        )
    return current_workspace()


def last_run(name: str, ws: Workspace | None = None) -> audit.AuditEntry | None:
    """The audit entry of the latest finished or failed run of pipeline `name`."""
    found = [e for e in audit.entries(target=f"pipeline:{name}", ws=ws)
             if e.action in ("pipeline.finished", "pipeline.failed")]  # fmt: skip
    return found[-1] if found else None


def _resolve_inputs(pipeline: Pipeline, ws: Workspace) -> tuple[dict[str, str], dict[str, str]]:
    """(parameter -> pinned ref, snapshot name -> pinned ref) including the trigger snapshot."""
    from workbench.snapshots.store import get

    params, used = {}, {}
    for param, ref in pipeline.inputs.items():
        snap = get(ref, ws)
        params[param] = used[snap.name] = snap.ref
    if pipeline.trigger and pipeline.trigger not in used:
        used[pipeline.trigger] = get(pipeline.trigger, ws).ref
    return params, used


def changed(pipeline: Pipeline, ws: Workspace | None = None) -> tuple[bool, str]:
    """Whether the pipeline's trigger fired (see `trigger_state`), and why."""
    go, why, _ = trigger_state(pipeline, ws)
    return go, why


def trigger_state(pipeline: Pipeline, ws: Workspace | None = None) -> tuple[bool, str, dict[str, Any] | None]:
    """Whether the trigger fired, why, and for a live trigger the numbers it fired on (recorded with
    the run: they are its trigger state, as the snapshot versions used are for a snapshot trigger)."""
    if pipeline.live:
        from workbench.governance.triggers import live_trigger

        return live_trigger(pipeline, last_run(pipeline.name, ws), ws)
    return (*_snapshot_changed(pipeline, ws), None)


def _snapshot_changed(pipeline: Pipeline, ws: Workspace | None) -> tuple[bool, str]:
    """Whether the trigger snapshot has a version newer than the one the last run used, and why."""
    from workbench.snapshots.store import get

    if not pipeline.trigger:
        return True, "the pipeline has no trigger"
    try:
        latest = get(pipeline.trigger, ws)
    except NotFoundError:
        return False, f"snapshot {pipeline.trigger!r} does not exist yet"
    previous = last_run(pipeline.name, ws)
    used = ((previous.details or {}).get("inputs") or {}).get(pipeline.trigger) if previous else None
    if used is None:
        return True, f"{latest.ref} has not been used by this pipeline yet"
    used_version = int(str(used).split("@")[1])
    if latest.version > used_version:
        return True, f"{latest.ref} is newer than {used}, used by pipeline run {previous.details.get('pipeline_run')}"
    return False, f"{pipeline.trigger} is still at {latest.ref}, already used"


def run_pipeline(
    name: str,
    if_changed: bool = False,
    *,
    file: str | Path | None = None,
    ws: Workspace | None = None,
) -> PipelineResult:
    """Run pipeline `name` end to end: its steps, then the promotion. Audited either way.

    `if_changed=True` (cron, CI, `watch`) skips the run unless the trigger snapshot has a
    version newer than the one the previous run of this pipeline used. A pipeline run that
    failed still counts as having used its versions, so a broken notebook is not retried on
    every tick; rerun it explicitly once fixed. A live trigger (`on: {live: ...}`) fires once per
    served version whose live metric is confidently past its threshold (`triggers.live_check`).
    Refused against a team server (see the module doc).
    """
    ws = automation_workspace(f"Pipeline {name}", ws)
    pipeline = load_pipeline(name, file)
    fired = None
    if if_changed:
        go, why, fired = trigger_state(pipeline, ws)
        if not go:
            return _with_skipped(pipeline, PipelineResult(name, None, "skipped", message=why))
    from workbench.runs.ids import new_run_id

    result = PipelineResult(name, new_run_id(), "finished", trigger=fired)
    started = time.monotonic()
    try:
        params, result.inputs = _resolve_inputs(pipeline, ws)
        upstream: str | None = None
        for index, step in enumerate(pipeline.steps):
            result.steps.append(StepResult(step.label, str(step.notebook), [], None))
            with _recorded(result.steps[-1]) as stage:
                _run_step(ws, pipeline, result.pipeline_run or "", index, step, params, upstream, stage)
            upstream = stage.selected
        result.selected_run = upstream
        if pipeline.promote and upstream:
            result.promotion = StepResult(_promotion_label(pipeline), "", [upstream], upstream)
            with _recorded(result.promotion):
                result.promoted = _promote_run(ws, pipeline, result)
        result.message = _summary(result)
    except WorkbenchError as exc:
        result.status, result.message = "failed", exc.message
    _with_skipped(pipeline, result)
    result.seconds = round(time.monotonic() - started, 3)
    with transaction(ws) as con:
        audit.record(con, f"pipeline.{result.status}", f"pipeline:{name}", {
            "pipeline_run": result.pipeline_run, "inputs": result.inputs, "selected_run": result.selected_run,
            "steps": [asdict(s) for s in result.steps], "promoted": result.promoted,
            **({"trigger": result.trigger} if result.trigger else {}),
        }, result.message)  # fmt: skip
    return result


@contextmanager
def _recorded(stage: StepResult) -> Iterator[StepResult]:
    """Time a step (or the promotion) and record how it failed, keeping the error going."""
    from workbench.models.gates import GateRefused

    clock = time.monotonic()
    try:
        yield stage
    except WorkbenchError as exc:
        stage.status = "refused" if isinstance(exc, GateRefused) else "failed"
        stage.error = {"message": exc.message, "hint": exc.hint, **getattr(exc, "run_error", {})}
        if isinstance(exc, GateRefused):
            stage.error["gates"] = [r.to_dict() for r in exc.results]
        raise
    finally:
        stage.seconds = round(time.monotonic() - clock, 3)


def _promotion_label(pipeline: Pipeline) -> str:
    spec = pipeline.promote or {}
    return f"promote {spec.get('model') or '(artifact name)'}@{spec.get('alias')}"


def _with_skipped(pipeline: Pipeline, result: PipelineResult) -> PipelineResult:
    """Record the declared steps (and promotion) the run did not reach as skipped."""
    result.steps += [StepResult(step.label, str(step.notebook), [], None, status="skipped")
                     for step in pipeline.steps[len(result.steps):]]  # fmt: skip
    if pipeline.promote and result.promotion is None:
        result.promotion = StepResult(_promotion_label(pipeline), "", [], None, status="skipped")
    return result


def _step_params(step: Step, declared: dict[str, Any], inputs: dict[str, str], upstream: str | None) -> dict[str, Any]:
    values = {param: ref for param, ref in inputs.items() if param in declared}
    if upstream and UPSTREAM_PARAM in declared:
        values[UPSTREAM_PARAM] = upstream
    return {**values, **step.params}


def _run_step(ws: Workspace, pipeline: Pipeline, pipeline_run: str, index: int, step: Step,
              inputs: dict[str, str], upstream: str | None, stage: StepResult) -> None:  # fmt: skip
    """Run the step and fill `stage` (its runs as soon as they exist, so a failure still names them)."""
    from workbench.runs.params import notebook_parameters
    from workbench.runs.runner import execute, prepare, queue
    from workbench.runs.store import get_run

    params = _step_params(step, notebook_parameters(str(step.notebook)), inputs, upstream)
    tags = {"pipeline": pipeline.name, "pipeline_run": pipeline_run, "pipeline_step": str(index)}
    experiment = f"pipeline-{pipeline.name}"
    if step.grid:
        from workbench.sweeps import sweep

        swept = sweep(step.notebook, step.grid, params=params, parallel=step.parallel, experiment=experiment,
                      tags={**tags, **({"upstream_run": upstream} if upstream else {})}, parent_run_id=upstream,
                      pipeline_run=pipeline_run, ws=ws)  # fmt: skip
        run_ids, sweep_id = swept.run_ids, swept.sweep_id
    else:
        prepared = prepare(step.notebook, params)
        record = queue(ws, prepared, experiment=experiment, tags=tags, parent_run_id=upstream,
                       pipeline_run=pipeline_run)  # fmt: skip
        execute(ws, prepared, record)
        run_ids, sweep_id = [record.run_id], None
    stage.run_ids, stage.sweep_id = run_ids, sweep_id
    runs = [get_run(run_id, ws) for run_id in run_ids]
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        error = (runs[0].error or {}) if runs else {}
        raise _StepFailed(f"Step {index + 1} ({step.label}) failed: no run finished. {error.get('evalue', '')}".strip(),
                          f"See 'workbench runs show {run_ids[0]}'.", {"run_id": run_ids[0], **error})  # fmt: skip
    selected = finished[0]
    if step.select:
        metric, mode = step.select["metric"], step.select["mode"]
        scored = [r for r in finished if r.metrics.get(metric) is not None]
        if not scored:
            raise WorkbenchError(f"Step {index + 1} ({step.label}): no finished run logged {metric!r} to select on.")
        selected = (min if mode == "min" else max)(scored, key=lambda r: float(r.metrics[metric]))
    stage.selected = selected.run_id


def _promote_run(ws: Workspace, pipeline: Pipeline, result: PipelineResult) -> dict[str, Any]:
    """Promote to the target alias; if the gates refuse, register and move the fallback alias."""
    from workbench.models.gates import GateRefused
    from workbench.models.registry import promote, set_alias

    spec = pipeline.promote or {}
    run_id = result.selected_run or ""
    reason = f"pipeline {pipeline.name} run {result.pipeline_run}"
    try:
        version = promote(run_id, spec["model"], alias=spec["alias"], reason=reason, artifact=spec["artifact"], ws=ws)
        return {"model": version.name, "version": version.version, "alias": spec["alias"], "refused": None}
    except GateRefused as refusal:
        fallback = spec.get("fallback_alias")
        refused = [r.detail for r in refusal.results if not r.passed]
        if not fallback:
            raise
        # The gates guard `alias`; the fallback (staging) takes any finished candidate, so register
        # without an alias (no gate applies) and move the fallback explicitly, saying why.
        version = promote(run_id, spec["model"], alias=None, reason=reason, artifact=spec["artifact"], ws=ws)
        why = f"{reason}: gates refused {spec['alias']} ({'; '.join(refused)})"
        set_alias(version.name, fallback, version.version, reason=why, by=f"pipeline:{pipeline.name}", ws=ws)
        return {"model": version.name, "version": version.version, "alias": fallback, "refused": refused}


def _summary(result: PipelineResult) -> str:
    text = f"selected run {result.selected_run}"
    promoted = result.promoted
    if promoted:
        text += f"; promoted to {promoted['model']}@{promoted['version']} as {promoted['alias']}"
        if promoted["refused"]:
            text += f" (gates refused the target: {'; '.join(promoted['refused'])})"
    return text


def list_pipelines(file: str | Path | None = None, ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Declared pipelines with their trigger, steps, promotion target and last run (from the team
    server's audit log when one is configured and `ws` is not given)."""
    rows = []
    for name, pipeline in validate_file(file).items():
        last = last_run(name, ws)
        rows.append({
            "name": name, "trigger": pipeline.trigger, "steps": [s.label for s in pipeline.steps],
            "promote": pipeline.promote, "last_status": last.action.split(".")[1] if last else None,
            "last_at": last.occurred_at.isoformat() if last else None,
            "last_inputs": (last.details or {}).get("inputs") if last else None,
        })  # fmt: skip
    return rows


__all__ = [
    "FILE_NAME",
    "UPSTREAM_PARAM",
    "Pipeline",
    "PipelineResult",
    "Step",
    "StepResult",
    "automation_workspace",
    "changed",
    "find_file",
    "last_run",
    "list_pipelines",
    "load_pipeline",
    "run_pipeline",
    "validate_file",
]
