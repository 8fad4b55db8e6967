"""Promotion gates: conditions a run must meet before its model may take an alias.

Gates are configured per model (`workbench models gate NAME ...` / `wb.set_gates`) as

    {"metrics": {"accuracy": {"min": 0.9}, "log_loss": {"max": 0.3}},
     "beat": {"metric": "log_loss", "mode": "min", "alias": "production", "margin": 0.0}}

`metrics` are thresholds on the run's (last) metric values — fairness and explainability
figures logged as metrics (e.g. `fairness.equalized_odds_difference`) are gated the same way;
`beat` requires the candidate to be better than the version currently holding `alias` on one
metric. A failing gate refuses the promotion with every reason.

A third gate judges live outcomes instead of a run's offline metrics:

    {"live": {"metric": "accuracy", "alpha": 0.05, "min_outcomes": 30, "min_effect": 0.02,
              "since": "7d", "alias": "production"}}

"the candidate beats the holder of `alias` on `metric` with p < alpha over >= min_outcomes
outcomes each", decided by `quality.abtest.compare_versions` on the predictions and outcomes the
two versions logged since `since` (the candidate served as a canary or shadow next to the
holder). It applies whenever `alias` is moved to a version, by `promote` or `set_alias`; a run
that is not a version yet has no live outcomes, so it cannot pass. With `min_effect` the gate
also waits for the fixed horizon (`ABResult.horizon_reached`: both versions have the outcomes
needed to detect `min_effect`), the way to decide once rather than at the first lucky peek.
`evaluate_live` is the pure verdict; `judge_live` reads the logs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.errors import ValidationError, WorkbenchError

if TYPE_CHECKING:
    from workbench.quality.abtest import ABResult
    from workbench.workspace import Workspace

LIVE_DEFAULTS: dict[str, Any] = {"alpha": 0.05, "min_outcomes": 30, "min_effect": None, "since": "7d",
                                 "alias": "production"}  # fmt: skip


class GateRefused(WorkbenchError):
    """A promotion did not pass the model's gates."""

    def __init__(self, message: str, hint: str | None, results: list[GateResult]) -> None:
        super().__init__(message, hint)
        self.results = results


@dataclass
class GateResult:
    gate: str
    passed: bool
    detail: str
    numbers: dict[str, Any] | None = None  # the evidence of a live gate (`ABResult.to_dict()`), for the audit log

    def to_dict(self) -> dict[str, Any]:
        out = {"gate": self.gate, "passed": self.passed, "detail": self.detail}
        return out if self.numbers is None else {**out, "numbers": self.numbers}


def validate_gates(gates: dict[str, Any]) -> dict[str, Any]:
    """Check the structure of a gates mapping; returns it normalized."""
    if not isinstance(gates, dict) or set(gates) - {"metrics", "beat", "live"}:
        raise ValidationError("Gates must be a mapping with 'metrics', 'beat' and/or 'live'.",
                              'E.g. {"metrics": {"accuracy": {"min": 0.9}}}.')  # fmt: skip
    clean: dict[str, Any] = {}
    metrics = gates.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ValidationError("gates.metrics must map a metric name to {min: ..., max: ...}.")
    for name, bounds in metrics.items():
        if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
            raise ValidationError(f"Gate on {name!r} must be {{min: X}} and/or {{max: Y}}.")
        for key, value in bounds.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValidationError(f"Gate {name}.{key} must be a number, got {value!r}.")
    if metrics:
        clean["metrics"] = {k: {b: float(v) for b, v in bounds.items()} for k, bounds in metrics.items()}
    beat = gates.get("beat")
    if beat:
        if not isinstance(beat, dict) or "metric" not in beat:
            raise ValidationError("gates.beat needs a 'metric' (and optional mode min|max, alias, margin).")
        mode = beat.get("mode", "min")
        if mode not in ("min", "max"):
            raise ValidationError(f"gates.beat.mode must be 'min' (lower is better) or 'max', got {mode!r}.")
        clean["beat"] = {"metric": str(beat["metric"]), "mode": mode, "alias": str(beat.get("alias", "production")),
                         "margin": float(beat.get("margin", 0.0))}  # fmt: skip
    if gates.get("live"):
        clean["live"] = _validate_live(gates["live"])
    return clean


def _validate_live(live: Any) -> dict[str, Any]:
    """The live gate with its defaults filled in, every field checked."""
    from workbench.names import validate_name
    from workbench.quality.abtest import METRICS
    from workbench.quality.metrics import parse_since

    example = 'E.g. {"live": {"metric": "accuracy", "alpha": 0.05, "min_outcomes": 30}}.'
    if not isinstance(live, dict) or "metric" not in live:
        raise ValidationError("gates.live needs a 'metric' (and optional alpha, min_outcomes, min_effect, since, "
                              "alias).", example)  # fmt: skip
    unknown = sorted(set(live) - {"metric", *LIVE_DEFAULTS})
    if unknown:
        raise ValidationError(f"gates.live has an unknown key {unknown[0]!r}.",
                              f"The keys are metric, {', '.join(LIVE_DEFAULTS)}.")  # fmt: skip
    clean = {"metric": live["metric"], **LIVE_DEFAULTS, **{k: v for k, v in live.items() if v is not None}}
    if clean["metric"] not in METRICS:
        raise ValidationError(f"gates.live.metric {clean['metric']!r} is not a live metric.",
                              f"Use one of {', '.join(METRICS)}.")  # fmt: skip
    alpha, minimum, effect = clean["alpha"], clean["min_outcomes"], clean["min_effect"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValidationError(f"gates.live.alpha must be between 0 and 1, got {alpha!r}.", "0.05 is usual.")
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ValidationError(f"gates.live.min_outcomes must be a whole number >= 1, got {minimum!r}.",
                              "Below 30 per version the tests' approximations are not trustworthy.")  # fmt: skip
    if effect is not None and (isinstance(effect, bool) or not isinstance(effect, (int, float))
                               or not math.isfinite(effect) or effect <= 0):  # fmt: skip
        raise ValidationError(f"gates.live.min_effect must be a positive number, got {effect!r}.",
                              "It is the smallest difference worth detecting, in the metric's units.")  # fmt: skip
    if not isinstance(clean["since"], str):
        raise ValidationError(f"gates.live.since must be a text like '7d', got {clean['since']!r}.")
    parse_since(clean["since"])
    validate_name(str(clean["alias"]), "alias")
    return {**clean, "alpha": float(alpha), "min_effect": None if effect is None else float(effect),
            "alias": str(clean["alias"])}  # fmt: skip


def _value(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def evaluate(gates: dict[str, Any], candidate: dict[str, Any], incumbent: dict[str, Any] | None) -> list[GateResult]:
    """Check `candidate` metrics against the gates (`incumbent`: metrics of the alias holder)."""
    results: list[GateResult] = []
    for name, bounds in (gates.get("metrics") or {}).items():
        value = _value(candidate, name)
        for bound, limit in bounds.items():
            label = f"{name} {'>=' if bound == 'min' else '<='} {limit:g}"
            if value is None:
                results.append(GateResult(label, False, f"the run did not log {name!r}"))
            else:
                ok = value >= limit if bound == "min" else value <= limit
                results.append(GateResult(label, ok, f"{name} = {value:.6g}"))
    beat = gates.get("beat")
    if beat:
        metric, mode, margin = beat["metric"], beat["mode"], beat["margin"]
        label = f"beat {beat['alias']} on {metric} ({'lower' if mode == 'min' else 'higher'} is better)"
        value = _value(candidate, metric)
        if incumbent is None:
            results.append(GateResult(label, True, f"no version holds '{beat['alias']}' yet"))
        elif value is None:
            results.append(GateResult(label, False, f"the run did not log {metric!r}"))
        else:
            current = _value(incumbent, metric)
            if current is None:
                results.append(GateResult(label, True, f"the current version has no {metric!r}"))
            else:
                ok = value < current - margin if mode == "min" else value > current + margin
                results.append(GateResult(label, ok, f"{metric} = {value:.6g} vs {current:.6g}"))
    return results


def live_label(live: dict[str, Any], holder: int | None, candidate: int | None) -> str:
    """What the live gate asks, as its results name it."""
    a = f"v{holder}" if holder is not None else live["alias"]
    b = f"v{candidate}" if candidate is not None else "the candidate"
    return f"live: {b} beats {a} on {live['metric']} (p < {live['alpha']:g}, >= {live['min_outcomes']} outcomes)"


def evaluate_live(live: dict[str, Any], result: ABResult) -> GateResult:
    """The live gate's verdict on a comparison of the candidate (`result.b`) with the holder
    (`result.a`): passed when the candidate is significantly better and, with `min_effect`, the
    fixed horizon is reached (both versions have the outcomes needed to detect it)."""
    label = live_label(live, result.a, result.b)
    numbers = result.to_dict()
    if result.verdict != "better":
        return GateResult(label, False, result.reason, numbers)
    if live.get("min_effect") is not None and not result.horizon_reached:
        have = min(result.n_a, result.n_b)
        return GateResult(label, False, f"{result.reason}; but the fixed horizon is not reached: {have} of the "
                          f"{result.needed_n} outcomes per version needed to detect {live['min_effect']:g}",
                          numbers)  # fmt: skip
    return GateResult(label, True, result.reason, numbers)


def judge_live(ws: Workspace, name: str, live: dict[str, Any], holder: int | None, candidate: int | None) -> GateResult:
    """The live gate for moving `live["alias"]` from version `holder` to version `candidate` of
    model `name`, from the predictions and outcomes logged in `ws` (a team server judges with its
    own workspace: `set_alias`/`promote` run there)."""
    from workbench.quality.abtest import compare_versions
    from workbench.quality.metrics import parse_since
    from workbench.quality.outcomes import joined

    label = live_label(live, holder, candidate)
    if holder is None:
        return GateResult(label, True, f"no version holds '{live['alias']}' yet")
    if candidate is None:
        return GateResult(label, False, f"the run is not a version of {name} yet, so it has no live outcomes: "
                          f"register it under another alias, serve it as a canary or shadow next to version "
                          f"{holder}, and move '{live['alias']}' once its outcomes show it is better")  # fmt: skip
    if candidate == holder:
        return GateResult(label, True, f"version {candidate} holds '{live['alias']}' already")
    frame, _ = joined(ws, name, parse_since(live["since"]))
    try:
        result = compare_versions(frame, holder, candidate, live["metric"], live["alpha"], live["min_effect"],
                                  min_n=live["min_outcomes"])  # fmt: skip
    except ValidationError as exc:  # e.g. MAE of a classifier: a refusal (--force can override), not a crash
        return GateResult(label, False, f"cannot be judged: {exc.message}")
    return evaluate_live(live, result)
