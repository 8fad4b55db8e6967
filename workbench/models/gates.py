"""Promotion gates: conditions a run must meet before its model may take an alias.

Gates are configured per model (`workbench models gate NAME ...` / `wb.set_gates`) as

    {"metrics": {"accuracy": {"min": 0.9}, "log_loss": {"max": 0.3}},
     "beat": {"metric": "log_loss", "mode": "min", "alias": "production", "margin": 0.0}}

`metrics` are thresholds on the run's (last) metric values — fairness and explainability
figures logged as metrics (e.g. `fairness.equalized_odds_difference`) are gated the same way;
`beat` requires the candidate to be better than the version currently holding `alias` on one
metric. A failing gate refuses the promotion with every reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from workbench.errors import ValidationError, WorkbenchError


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

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "passed": self.passed, "detail": self.detail}


def validate_gates(gates: dict[str, Any]) -> dict[str, Any]:
    """Check the structure of a gates mapping; returns it normalized."""
    if not isinstance(gates, dict) or set(gates) - {"metrics", "beat"}:
        raise ValidationError("Gates must be a mapping with 'metrics' and/or 'beat'.",
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
    return clean


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
