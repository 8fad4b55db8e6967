"""The pipelines file (`workbench.yaml`): parsing it into `Pipeline`s and checking every field.

Checking is separate from running so that `workbench pipelines validate`, `list` and CI can
vet a file without touching a workspace. Every problem is reported at once, as
`line N: pipelines.<name>.<key path>: message` (the YAML node marks give the lines), and a step's
parameters are checked against the notebook's declared parameters and their types, so a typo
fails here rather than in the middle of a retraining. See `workbench.governance.pipelines` for
the format and for running a pipeline.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import InvalidNameError, NotFoundError, ValidationError, WorkbenchError
from workbench.names import validate_name

FILE_NAME = "workbench.yaml"


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
    live: dict[str, Any] | None = None  # `on: {live: {...}}`: retrain when a live metric falls past a threshold


#: `on: {live: ...}` keys and their defaults (model and metric are required, and one of below/above).
LIVE_TRIGGER_DEFAULTS: dict[str, Any] = {"alias": "production", "min_outcomes": 100, "since": "1d", "alpha": 0.05}


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
    trigger, live = None, None
    if "on" in spec and check.mapping(spec["on"], (*at, "on"), {"snapshot", "live"}):
        if len(spec["on"]) != 1:
            check.problem((*at, "on"), "must be either {snapshot: NAME} or {live: {model: ..., metric: ..., "
                          "below: ...}}")  # fmt: skip
        elif "snapshot" in spec["on"]:
            trigger = check.name(spec["on"]["snapshot"], (*at, "on", "snapshot"), "snapshot name")
        else:
            live = _live_trigger(check, (*at, "on", "live"), spec["on"]["live"])
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
    return Pipeline(name, steps, trigger, inputs, promote, spec.get("description"), live)


def _live_trigger(check: _Checker, at: tuple[Any, ...], raw: Any) -> dict[str, Any] | None:
    """`on: {live: {model, metric, below | above, min_outcomes, since, alias, alpha}}`, checked, with
    defaults: `below` for metrics where higher is better (accuracy, f1), `above` for the others."""
    from workbench.quality.abtest import METRICS

    if not check.mapping(raw, at, {"model", "metric", "below", "above", *LIVE_TRIGGER_DEFAULTS}, {"model", "metric"}):
        return None
    clean = {**LIVE_TRIGGER_DEFAULTS, **raw}
    metric = METRICS.get(raw["metric"]) if isinstance(raw["metric"], str) else None
    if metric is None:
        check.problem((*at, "metric"), f"must be one of {', '.join(METRICS)}")
        return None
    side = "below" if metric.higher_is_better else "above"
    if set(raw) & {"below", "above"} != {side}:
        check.problem(at, f"{metric.name} needs '{side}: THRESHOLD' (retrain when it is confidently {side} it)")
        return None
    problems = len(check.problems)
    check.name(raw["model"], (*at, "model"), "model name")
    check.name(clean["alias"], (*at, "alias"), "alias")
    if not _is_number(clean[side]):
        check.problem((*at, side), "must be a number")
    if not _is_number(clean["alpha"]) or not 0 < clean["alpha"] < 1:
        check.problem((*at, "alpha"), "must be a number between 0 and 1 (0.05: a 95% bound)")
    if isinstance(clean["min_outcomes"], bool) or not isinstance(clean["min_outcomes"], int) \
            or clean["min_outcomes"] < 1:  # fmt: skip
        check.problem((*at, "min_outcomes"), "must be a whole number of at least 1")
    _check_span(check, (*at, "since"), clean["since"])
    return {**clean, "side": side, "threshold": float(clean[side])} if len(check.problems) == problems else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_span(check: _Checker, at: tuple[Any, ...], value: Any) -> None:
    """A look-back such as 1d or 12h (what `workbench monitor --since` takes)."""
    from workbench.quality.metrics import parse_span

    try:
        parse_span(value, "since")
    except WorkbenchError as exc:
        check.problem(at, f"{exc.message} {exc.hint or ''}".strip())


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


def load_pipeline(name: str, file: str | Path | None = None) -> Pipeline:
    pipelines = validate_file(file)
    if name not in pipelines:
        known = ", ".join(sorted(pipelines)) or "none"
        raise NotFoundError(f"No pipeline named {name!r} (declared: {known}).")
    return pipelines[name]
