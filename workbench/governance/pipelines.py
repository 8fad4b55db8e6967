"""Pipelines as code: named sequences of tracked notebook runs declared in `workbench.yaml`.

    pipelines:
      wine-retrain:
        on: {snapshot: wine}                    # retrain when wine gets a new version
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

Each pipeline run ends with one audit entry (`pipeline.finished` or `pipeline.failed`, target
`pipeline:<name>`) holding the snapshot versions it used. That entry is also the trigger state
for `--if-changed`: the audit log is already shared by every process of the workspace,
transactional and append-only, so there is no second state file to get out of sync, and "what
did the last retraining use, who started it and why" has one answer.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench import audit
from workbench.catalog import transaction
from workbench.errors import InvalidNameError, NotFoundError, ValidationError, WorkbenchError
from workbench.names import validate_name
from workbench.workspace import Workspace, current_workspace

FILE_NAME = "workbench.yaml"
UPSTREAM_PARAM = "upstream_run"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: `on:` is a key here, not `True` (PyYAML follows YAML 1.1 by default)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))  # fmt: skip


@dataclass
class Step:
    notebook: Path
    params: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    parallel: int | None = None
    select: dict[str, str] | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.notebook.stem


@dataclass
class Pipeline:
    name: str
    steps: list[Step]
    trigger: str | None = None  # snapshot name from `on: {snapshot: ...}`
    inputs: dict[str, str] = field(default_factory=dict)  # notebook parameter -> snapshot ref
    promote: dict[str, Any] | None = None
    description: str | None = None


# --- validation ---------------------------------------------------------------------------------


class _Checker:
    """Collects problems as `line N: key.path: message`, using the YAML node marks."""

    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.path = path
        self.lines: dict[tuple[Any, ...], int] = {}
        self.problems: list[str] = []
        if root is not None:
            self._index(root, ())

    def _index(self, node: yaml.Node, at: tuple[Any, ...]) -> None:
        self.lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if (*at, ("key", key.value)) in self.lines:  # YAML keeps the last silently: a typo'd copy wins
                    first = self.lines[(*at, ("key", key.value))]
                    where = ".".join(str(p) for p in (*at, key.value))
                    line = key.start_mark.line + 1
                    self.problems.append(f"line {line}: {where}: duplicate key (first on line {first})")
                    continue
                self.lines[(*at, ("key", key.value))] = key.start_mark.line + 1
                self._index(value, (*at, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*at, index))

    def problem(self, at: tuple[Any, ...], message: str, key_line: bool = False) -> None:
        probe = (*at[:-1], ("key", at[-1])) if key_line and at else at
        while probe not in self.lines and probe:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".") or "(top level)"
        self.problems.append(f"line {line}: {where}: {message}")

    def mapping(self, value: Any, at: tuple[Any, ...], allowed: set[str], required: set[str] = frozenset()) -> bool:
        if not isinstance(value, dict):
            self.problem(at, f"must be a mapping, got {_kind(value)}")
            return False
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                known = ", ".join(sorted(allowed)) or "none"
                hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {known})"
                self.problem((*at, key), f"unknown key '{key}'{hint}", key_line=True)
        for key in sorted(required - set(value)):
            self.problem(at, f"missing required key '{key}'")
        return True

    def name(self, value: Any, at: tuple[Any, ...], kind: str, allow_version: bool = False) -> str | None:
        text = value if isinstance(value, str) else None
        if text is None:
            self.problem(at, f"must be a {kind}, got {_kind(value)}")
            return None
        base, _, version = text.partition("@") if allow_version else (text, "", "")
        try:
            validate_name(base, kind)
        except InvalidNameError as exc:
            self.problem(at, exc.message)
            return None
        if version and not version.isdigit():
            self.problem(at, f"version in {text!r} must be a number")
            return None
        return text


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def find_file(start: str | Path | None = None) -> Path:
    """`workbench.yaml` in `start` (default: the working directory) or the nearest parent."""
    folder = Path(start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        if (candidate / FILE_NAME).is_file():
            return candidate / FILE_NAME
    raise NotFoundError(f"No {FILE_NAME} in {folder} or any parent folder.", "Create one, or pass --file PATH.")


def validate_file(path: str | Path | None = None) -> dict[str, Pipeline]:
    """Parse and check a pipelines file; every problem is reported with its line and key path."""
    path = Path(path) if path else find_file()
    if not path.is_file():
        raise NotFoundError(f"Pipelines file not found: {path}.", "Check --file.")
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValidationError(f"{path.name}: {where}not valid YAML: {problem}.") from exc
    check = _Checker(path, root)
    pipelines: dict[str, Pipeline] = {}
    if data is None:
        check.problem((), "the file is empty; declare 'pipelines:'")
    elif check.mapping(data, (), {"pipelines"}, {"pipelines"}) and "pipelines" in data:
        if not isinstance(data["pipelines"], dict) or not data["pipelines"]:
            check.problem(("pipelines",), "must map pipeline names to their definitions")
        else:
            for name, spec in data["pipelines"].items():
                found = _pipeline(check, str(name), spec, path.parent)
                if found is not None:
                    pipelines[found.name] = found
    if check.problems:
        count = len(check.problems)
        raise ValidationError(
            f"{path} has {count} problem{'s' if count > 1 else ''}:\n  " + "\n  ".join(check.problems),
            report=check.problems,
        )
    return pipelines


def _pipeline(check: _Checker, name: str, spec: Any, base: Path) -> Pipeline | None:
    at = ("pipelines", name)
    check.name(name, at, "pipeline name")
    if not check.mapping(spec, at, {"on", "steps", "inputs", "promote", "description"}, {"steps"}):
        return None
    trigger = None
    if "on" in spec and check.mapping(spec["on"], (*at, "on"), {"snapshot"}, {"snapshot"}):
        trigger = check.name(spec["on"]["snapshot"], (*at, "on", "snapshot"), "snapshot name")
    inputs: dict[str, str] = {}
    raw_inputs = spec.get("inputs")
    if "inputs" in spec and check.mapping(
        raw_inputs, (*at, "inputs"), set(raw_inputs or {}) if isinstance(raw_inputs, dict) else set()
    ):
        for param, ref in spec["inputs"].items():
            if not str(param).isidentifier():
                check.problem((*at, "inputs", param), "must be a notebook parameter name", key_line=True)
            elif (clean := check.name(ref, (*at, "inputs", param), "snapshot name", allow_version=True)) is not None:
                inputs[str(param)] = clean
    steps: list[Step] = []
    raw_steps = spec.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        check.problem((*at, "steps"), "must be a non-empty list of steps")
    else:
        for index, raw in enumerate(raw_steps):
            step = _step(check, (*at, "steps", index), raw, base, inputs)
            if step is not None:
                steps.append(step)
    promote = None
    if "promote" in spec:
        promote = _promote(check, (*at, "promote"), spec["promote"])
    return Pipeline(name, steps, trigger, inputs, promote, spec.get("description"))


def _step(check: _Checker, at: tuple[Any, ...], raw: Any, base: Path, inputs: dict[str, str]) -> Step | None:
    from workbench.runs.params import notebook_parameters

    if not check.mapping(raw, at, {"notebook", "params", "sweep", "select", "name"}, {"notebook"}):
        return None
    notebook = raw.get("notebook")
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
        check.problem((*at, "notebook"), "must be the path of a .ipynb file")
        return None
    path = (base / notebook).resolve()
    if not path.is_file():
        check.problem((*at, "notebook"), f"file not found: {path}")
        return None
    try:
        declared = notebook_parameters(str(path))
    except WorkbenchError as exc:
        check.problem((*at, "notebook"), exc.message)
        return None
    step = Step(path, name=raw.get("name"))
    params = raw.get("params") or {}
    if check.mapping(params, (*at, "params"), set(declared)):
        step.params = dict(params)
    for key, value in params.items() if isinstance(params, dict) else ():
        if key in declared:  # unknown keys are reported by `mapping`
            _check_param(check, (*at, "params", key), path, key, value)
    sweep = raw.get("sweep")
    if sweep is not None and check.mapping(sweep, (*at, "sweep"), {"grid", "parallel"}, {"grid"}):
        grid = sweep["grid"]
        if check.mapping(grid, (*at, "sweep", "grid"), set(declared)):
            for key, values in grid.items():
                if key not in declared:
                    continue
                if not isinstance(values, list) or not values:
                    check.problem((*at, "sweep", "grid", key), "must be a non-empty list of values")
                    continue
                for position, value in enumerate(values):
                    _check_param(check, (*at, "sweep", "grid", key, position), path, key, value)
            step.grid = {k: v for k, v in grid.items() if isinstance(v, list)}
        parallel = sweep.get("parallel")
        if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
            check.problem((*at, "sweep", "parallel"), "must be a whole number of at least 1")
        step.parallel = parallel if isinstance(parallel, int) else None
    select = raw.get("select")
    if select is not None and check.mapping(select, (*at, "select"), {"metric", "mode"}, {"metric"}):
        if not isinstance(select["metric"], str):
            check.problem((*at, "select", "metric"), "must be a metric name")
        if select.get("mode", "min") not in ("min", "max"):
            check.problem((*at, "select", "mode"), "must be 'min' (lower is better) or 'max'")
        step.select = {"metric": str(select["metric"]), "mode": select.get("mode", "min")}
    if sweep is not None and select is None:
        check.problem(at, "a step with a sweep needs 'select: {metric: ..., mode: min|max}' to pick its best run")
    return step


def _check_param(check: _Checker, at: tuple[Any, ...], notebook: Path, name: str, value: Any) -> None:
    """A value of the wrong type for the notebook's parameter fails here, not when the run starts."""
    from workbench.runs.params import validate_params

    try:
        validate_params(str(notebook), {name: value})
    except WorkbenchError as exc:
        check.problem(at, exc.message)


def _promote(check: _Checker, at: tuple[Any, ...], raw: Any) -> dict[str, Any] | None:
    if not check.mapping(raw, at, {"model", "alias", "fallback_alias", "artifact"}):
        return None
    clean: dict[str, Any] = {"model": None, "alias": "production", "fallback_alias": "staging", "artifact": None}
    for key in ("model", "alias", "fallback_alias"):
        if key in raw and raw[key] is not None:
            kind = "model name" if key == "model" else "alias"
            clean[key] = check.name(raw[key], (*at, key), kind)
        elif key in raw:
            clean[key] = None
    if raw.get("artifact") is not None:
        clean["artifact"] = str(raw["artifact"])
    if clean["alias"] is None:
        check.problem((*at, "alias"), "must name the alias to promote to")
    return clean


# --- running ------------------------------------------------------------------------------------


@dataclass
class StepResult:
    label: str
    notebook: str
    run_ids: list[str]
    selected: str | None
    sweep_id: str | None = None


@dataclass
class PipelineResult:
    name: str
    pipeline_run: str | None
    status: str  # finished | failed | skipped
    inputs: dict[str, str] = field(default_factory=dict)  # snapshot name -> ref used
    steps: list[StepResult] = field(default_factory=list)
    selected_run: str | None = None
    promoted: dict[str, Any] | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_pipeline(name: str, file: str | Path | None = None) -> Pipeline:
    pipelines = validate_file(file)
    if name not in pipelines:
        known = ", ".join(sorted(pipelines)) or "none"
        raise NotFoundError(f"No pipeline named {name!r} (declared: {known}).")
    return pipelines[name]


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
    """Whether the trigger snapshot has a version newer than the one the last run used, and why."""
    from workbench.snapshots.store import get

    ws = ws or current_workspace()
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
    every tick; rerun it explicitly once fixed.
    """
    ws = ws or current_workspace()
    pipeline = load_pipeline(name, file)
    if if_changed:
        go, why = changed(pipeline, ws)
        if not go:
            return PipelineResult(name, None, "skipped", message=why)
    from workbench.runs.ids import new_run_id

    result = PipelineResult(name, new_run_id(), "finished")
    try:
        params, result.inputs = _resolve_inputs(pipeline, ws)
        upstream: str | None = None
        for index, step in enumerate(pipeline.steps):
            outcome = _run_step(ws, pipeline, result.pipeline_run or "", index, step, params, upstream)
            result.steps.append(outcome)
            upstream = outcome.selected
        result.selected_run = upstream
        if pipeline.promote and upstream:
            result.promoted = _promote_run(ws, pipeline, result)
        result.message = _summary(result)
    except WorkbenchError as exc:
        result.status, result.message = "failed", exc.message
    with transaction(ws) as con:
        audit.record(con, f"pipeline.{result.status}", f"pipeline:{name}", {
            "pipeline_run": result.pipeline_run, "inputs": result.inputs, "selected_run": result.selected_run,
            "steps": [asdict(s) for s in result.steps], "promoted": result.promoted,
        }, result.message)  # fmt: skip
    return result


def _step_params(step: Step, declared: dict[str, Any], inputs: dict[str, str], upstream: str | None) -> dict[str, Any]:
    values = {param: ref for param, ref in inputs.items() if param in declared}
    if upstream and UPSTREAM_PARAM in declared:
        values[UPSTREAM_PARAM] = upstream
    return {**values, **step.params}


def _run_step(ws: Workspace, pipeline: Pipeline, pipeline_run: str, index: int, step: Step,
              inputs: dict[str, str], upstream: str | None) -> StepResult:  # fmt: skip
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
    runs = [get_run(run_id, ws) for run_id in run_ids]
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        error = (runs[0].error or {}).get("evalue", "") if runs else ""
        raise WorkbenchError(f"Step {index + 1} ({step.label}) failed: no run finished. {error}".strip(),
                             f"See 'workbench runs show {run_ids[0]}'.")  # fmt: skip
    selected = finished[0]
    if step.select:
        metric, mode = step.select["metric"], step.select["mode"]
        scored = [r for r in finished if r.metrics.get(metric) is not None]
        if not scored:
            raise WorkbenchError(f"Step {index + 1} ({step.label}): no finished run logged {metric!r} to select on.")
        selected = (min if mode == "min" else max)(scored, key=lambda r: float(r.metrics[metric]))
    return StepResult(step.label, str(step.notebook), run_ids, selected.run_id, sweep_id)


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
    """Declared pipelines with their trigger, steps, promotion target and last run."""
    ws = ws or current_workspace()
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
