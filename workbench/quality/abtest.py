"""A/B and shadow comparisons of two model versions on live outcomes: is b better than a, and how sure?

`compare_versions(frame, a, b, metric)` takes the joined predictions and outcomes
(`quality.outcomes.joined`: columns version, prediction, outcome, and proba, request_id, row when
there) and answers with an `ABResult`: each version's value, the difference with its confidence
interval, a p-value, the sample so far and the sample needed, and a verdict. `ab_report` does it for
every version against the baseline and every applicable metric. The maths is in `quality.stats`;
what a metric means for a set of rows is `quality.metrics`' (the live-quality table agrees).

Conventions, the same for every metric:
- `diff` and its interval are oriented so that positive means b is better: b - a for accuracy and
  F1, a - b for error rate, log loss, MAE and RMSE (lower is better). `value_a`/`value_b` are the
  plain metric values.
- Paired or independent: when the two versions predicted the same rows (shadow mode: the same
  request_id and row answered by both), the comparison is paired over those rows, which removes the
  row-to-row variation both versions share and needs far fewer outcomes. Otherwise (a canary split:
  each request answered by one version) the arms are independent. "The same rows" means at least
  half of the smaller arm's rows have a partner (pass `paired=` to decide yourself).
- Tests: accuracy and error rate use the two-proportion z-test with Newcombe's interval
  (independent) or McNemar's test with the paired Wald interval (paired); F1, log loss, MAE and
  RMSE a percentile bootstrap (2000 resamples, seeded: the same rows always give the same answer).
- Verdict: "better" or "worse" only when both arms have at least `min_n` (30) outcomes, p < alpha
  and the interval leaves out 0 (the test and the interval are different approximations; requiring
  both keeps the verdict conservative where they disagree); else "not yet known".
- `needed_n`: outcomes per arm (pairs, when paired) for a two-sided test at alpha with power 0.8 to
  detect `min_effect` (in the metric's units), or the observed difference when no `min_effect` is
  given (then: "how many until a difference this large would be detected").

Assumptions: rows are independent given the version (many rows of one request, or many requests of
one caller, violate this a little and make intervals too narrow); the versions saw comparable
traffic (a canary split is random per request or per caller key). No correction is made for looking
repeatedly: checking after every batch of outcomes and stopping at the first "better" raises the
false-verdict rate well above alpha. Decide on a fixed horizon instead: choose `min_effect`, wait
until both arms have `needed_n` outcomes (`ABResult.horizon_reached`), then read the verdict once; or
use a smaller alpha for decisions taken at every check (see docs/monitoring.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ValidationError
from workbench.quality import stats
from workbench.quality.metrics import CLASSIFICATION, REGRESSION, TASK_METRICS, is_classification, label, labels

#: Outcomes each version needs before any verdict: below this the normal approximations behind the
#: z-test and the bootstrap are not trustworthy, whatever the p-value says.
MIN_OUTCOMES = 30
N_BOOT = 2000
BETTER, WORSE, UNKNOWN = "better", "worse", "not yet known"
_EPS = float(np.finfo(float).eps)  # probability clipping for log loss, as scikit-learn does
#: The rows of a paired comparison: version a's and version b's, aligned.
Pairs = tuple[pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class _Metric:
    name: str
    task: str
    higher_is_better: bool
    proportion: bool  # a share of rows: z-test / McNemar rather than the bootstrap


METRICS = {m.name: m for m in (
    _Metric("accuracy", CLASSIFICATION, True, True),
    _Metric("error_rate", CLASSIFICATION, False, True),
    _Metric("f1", CLASSIFICATION, True, False),
    _Metric("log_loss", CLASSIFICATION, False, False),
    _Metric("mae", REGRESSION, False, False),
    _Metric("rmse", REGRESSION, False, False),
)}  # fmt: skip


@dataclass
class ABResult:
    """Version b against version a on one metric (see the module doc for the conventions)."""

    metric: str
    a: int
    b: int
    n_a: int
    n_b: int
    value_a: float
    value_b: float
    diff: float  # oriented: positive = b better
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # "two-proportion z" | "mcnemar" | "bootstrap"
    needed_n: int | None  # per arm (pairs when paired) to detect min_effect at power 0.8
    verdict: str  # "better" | "worse" | "not yet known": b relative to a
    alpha: float = 0.05
    min_effect: float | None = None  # the effect needed_n is for: the one asked for, else |diff|
    paired: bool = False
    higher_is_better: bool = True
    reason: str = ""

    @property
    def horizon_reached(self) -> bool:
        """Both arms have the outcomes needed to detect `min_effect`: the fixed-horizon moment to decide."""
        return self.needed_n is not None and min(self.n_a, self.n_b) >= self.needed_n

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN and infinities become None, numpy numbers plain ones."""
        out = {key: _plain(value) for key, value in self.__dict__.items()}
        out["horizon_reached"] = self.horizon_reached
        return out


@dataclass
class ABReport:
    """Every version against the baseline on every metric that applies."""

    baseline: int | None
    task: str
    alpha: float
    results: list[ABResult] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        columns = ["a", "b", "metric", "n_a", "n_b", "value_a", "value_b", "diff", "ci_low", "ci_high", "p_value",
                   "test", "needed_n", "verdict"]  # fmt: skip
        return pd.DataFrame([{c: getattr(r, c) for c in columns} for r in self.results], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "task": self.task, "alpha": self.alpha,
                "results": [r.to_dict() for r in self.results]}  # fmt: skip

    def to_text(self) -> str:
        """A compact table for a terminal: one line per (pair, metric)."""
        if not self.results:
            return "No two versions with outcomes to compare yet."
        head = f"{'pair':<10} {'metric':<10} {'a':>8} {'b':>8} {'diff (b better > 0)':>30} {'p':>8} " \
               f"{'n a/b':>13} {'needed':>7}  verdict"  # fmt: skip
        return "\n".join([head, *(_line(r) for r in self.results)])


def compare_versions(frame: pd.DataFrame, a: int, b: int, metric: str, alpha: float = 0.05,
                     min_effect: float | None = None, seed: int = 0, *, paired: bool | None = None,
                     n_boot: int = N_BOOT, min_n: int = MIN_OUTCOMES, power: float = 0.8) -> ABResult:  # fmt: skip
    """Compare version `b` with version `a` on `metric` over the rows of `frame` that have an outcome."""
    spec = _metric(metric)
    _check(frame, a, b, alpha, min_effect, n_boot, min_n, power)
    arm_a, arm_b = (_usable(_rows(frame, v), spec, v) for v in (a, b))
    pairs = _pairs(arm_a, arm_b, paired)
    args = (spec, alpha, power, min_effect)
    if min(len(arm_a), len(arm_b)) == 0 or (pairs is not None and len(pairs[0]) == 0):
        numbers = _empty(spec, arm_a, arm_b, pairs is not None)
    elif spec.proportion:
        numbers = _oriented(spec, _proportions(arm_a, arm_b, pairs, *args))
    else:
        numbers = _oriented(spec, _bootstrap(arm_a, arm_b, pairs, *args, n_boot, np.random.default_rng(seed)))
    result = ABResult(metric, int(a), int(b), verdict=UNKNOWN, alpha=alpha, paired=pairs is not None,
                      higher_is_better=spec.higher_is_better, **numbers)  # fmt: skip
    result.verdict, result.reason = _verdict(result, min_n)
    return result


def ab_report(frame: pd.DataFrame, metrics: list[str] | None = None, *, task: str | None = None,
              baseline: int | None = None, alpha: float = 0.05, min_effect: float | dict[str, float] | None = None,
              seed: int = 0, n_boot: int = N_BOOT, min_n: int = MIN_OUTCOMES) -> ABReport:  # fmt: skip
    """Every other version against `baseline` (default: the version that served most rows with an
    outcome, i.e. production) on `metrics` (default: the task's, log loss only when probabilities
    were logged). Shadow and canary versions alike; each pair is paired or not as the rows say."""
    _columns(frame)
    task = task or detect_task(frame)
    if task not in TASK_METRICS:
        raise ValidationError(f"Unknown task {task!r}.", f"Use {CLASSIFICATION!r} or {REGRESSION!r}.")
    metrics = list(metrics) if metrics is not None else _default_metrics(frame, task)
    for name in metrics:
        if _metric(name).task != task:
            raise ValidationError(f"{name} is not a metric of {task}.", f"Use one of {', '.join(TASK_METRICS[task])}.")
    known = frame[frame["outcome"].notna()]
    baseline = _baseline(known) if baseline is None else int(baseline)
    report = ABReport(baseline, task, alpha)
    if baseline is None:
        return report
    for version in sorted(int(v) for v in known["version"].unique() if int(v) != baseline):
        for name in metrics:
            effect = min_effect.get(name) if isinstance(min_effect, dict) else min_effect
            report.results.append(compare_versions(frame, baseline, version, name, alpha, effect, seed,
                                                   n_boot=n_boot, min_n=min_n))  # fmt: skip
    return report


def detect_task(frame: pd.DataFrame) -> str:
    """Classification when probabilities were logged or the predictions are not all floats (labels
    logged as JSON integers are classes; a regressor's numbers are floats). Pass `task=` when the
    model's meta says (the live-quality report's `.task`): that is never a guess."""
    has_proba = "proba" in frame.columns and frame["proba"].map(_has_proba).any()
    predictions = frame["prediction"].dropna()
    integers = not predictions.empty and all(isinstance(v, (int, np.integer)) for v in predictions)
    return CLASSIFICATION if has_proba or integers or is_classification(None, predictions) else REGRESSION


# ---------------------------------------------------------------------------------------------- rows


def _metric(name: str) -> _Metric:
    if name not in METRICS:
        raise ValidationError(f"Unknown A/B metric {name!r}.", f"Use one of {', '.join(METRICS)}.")
    return METRICS[name]


def _columns(frame: pd.DataFrame) -> None:
    missing = [c for c in ("version", "prediction", "outcome") if c not in getattr(frame, "columns", ())]
    if missing:
        raise ValidationError(f"The rows to compare lack the column(s) {', '.join(missing)}.",
                              "Pass the frame of workbench.quality.outcomes.joined(ws, model).")  # fmt: skip


def _check(frame: pd.DataFrame, a: int, b: int, alpha: float, min_effect: float | None, n_boot: int, min_n: int,
           power: float) -> None:  # fmt: skip
    _columns(frame)
    if a == b:
        raise ValidationError(f"Compare two different versions, not version {a} with itself.")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValidationError(f"alpha and power must be between 0 and 1, got {alpha} and {power}.")
    if min_effect is not None and not (math.isfinite(min_effect) and min_effect > 0):
        raise ValidationError(
            f"min_effect must be a positive number, got {min_effect!r}.",
            "It is the smallest difference worth detecting, in the metric's units (0.02 = 2 points).",
        )
    if n_boot < 100 or min_n < 1:
        raise ValidationError(f"n_boot must be at least 100 and min_n at least 1, got {n_boot} and {min_n}.")


def _rows(frame: pd.DataFrame, version: int) -> pd.DataFrame:
    return frame[(frame["version"] == version) & frame["outcome"].notna()]


def _usable(rows: pd.DataFrame, spec: _Metric, version: int) -> pd.DataFrame:
    """The rows the metric can be computed on, with `truth`/`guess` columns (labels or numbers);
    outcomes none of which fit the metric are the caller's mistake (a classifier's labels for MAE)."""
    usable = _metric_rows(rows, spec)
    if len(rows) and usable.empty:
        need = {
            "log_loss": "class probabilities logged with the predictions (proba)",
            "mae": "numeric predictions and outcomes",
            "rmse": "numeric predictions and outcomes",
        }[spec.name]
        raise ValidationError(f"Version {version} has {len(rows)} outcomes but none usable for {spec.name}: it needs "
                              f"{need}.", f"Compare a {spec.task} model, or use another metric.")  # fmt: skip
    return usable


def _metric_rows(rows: pd.DataFrame, spec: _Metric) -> pd.DataFrame:
    out = pd.DataFrame({"key": _keys(rows)}, index=rows.index)
    if spec.task == REGRESSION:
        out["truth"] = pd.to_numeric(rows["outcome"], errors="coerce").astype(float)
        out["guess"] = pd.to_numeric(rows["prediction"], errors="coerce").astype(float)
        return out[out["truth"].notna() & out["guess"].notna()]
    out["truth"], out["guess"] = labels(rows["outcome"]), labels(rows["prediction"])
    if spec.name == "log_loss":
        proba = rows["proba"] if "proba" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
        out["p_true"] = [_p_true(p, t) for p, t in zip(proba, out["truth"], strict=True)]
        return out[out["p_true"].notna()]
    return out


def _keys(rows: pd.DataFrame) -> pd.Series:
    """(request_id, row) as one text key: what identifies "the same row" across versions (None: unknown)."""
    if "request_id" not in rows.columns:
        return pd.Series(None, index=rows.index, dtype=object)
    row = rows["row"].fillna(0).astype(int).astype(str) if "row" in rows.columns else "0"
    return rows["request_id"].astype(str) + "/" + row


def _has_proba(value: Any) -> bool:
    return isinstance(value, (dict, str)) and len(value) > 0


def _p_true(proba: Any, truth: str) -> float | None:
    """The probability given to the true class, the row renormalised to sum to one (logged values are rounded)."""
    if isinstance(proba, str):
        proba = json.loads(proba)
    if not isinstance(proba, dict) or not proba:
        return None
    values = {label(k): float(p or 0.0) for k, p in proba.items()}
    total = sum(values.values())
    return None if total <= 0 else min(max(values.get(truth, 0.0) / total, _EPS), 1 - _EPS)


def _pairs(arm_a: pd.DataFrame, arm_b: pd.DataFrame, paired: bool | None) -> Pairs | None:
    """The rows both versions predicted, aligned (row i of each is the same request row), or None
    when the arms are independent."""
    if paired is False:
        return None
    side_a, side_b = (arm[arm["key"].notna()].drop_duplicates("key") for arm in (arm_a, arm_b))
    where = pd.Index(side_a["key"]).get_indexer(side_b["key"])  # -1: no partner
    found = where >= 0
    if paired is None and found.sum() < max(1, 0.5 * min(len(arm_a), len(arm_b))):
        return None  # a canary split: (almost) no request was answered by both
    return side_a.iloc[where[found]], side_b[found]


def _baseline(known: pd.DataFrame) -> int | None:
    """The version that served most rows with an outcome (ties: the older); shadow rows never count."""
    served = known[~known["shadow"].fillna(False).astype(bool)] if "shadow" in known.columns else known
    counts = served["version"].astype(int).value_counts()
    if counts.empty:
        return None
    return int(min(counts[counts == counts.max()].index))


def _default_metrics(frame: pd.DataFrame, task: str) -> list[str]:
    names = list(TASK_METRICS[task])
    if "log_loss" in names and not ("proba" in frame.columns and frame["proba"].map(_has_proba).any()):
        names.remove("log_loss")
    return names


# ------------------------------------------------------------------------------------------- numbers


def _empty(spec: _Metric, arm_a: pd.DataFrame, arm_b: pd.DataFrame, paired: bool) -> dict[str, Any]:
    nan = math.nan
    test = ("mcnemar" if paired else "two-proportion z") if spec.proportion else "bootstrap"
    return {"n_a": len(arm_a), "n_b": len(arm_b), "value_a": nan, "value_b": nan, "diff": nan, "ci_low": nan,
            "ci_high": nan, "p_value": nan, "test": test, "needed_n": None}  # fmt: skip


def _oriented(spec: _Metric, numbers: dict[str, Any]) -> dict[str, Any]:
    """Turn b - a and its interval round for lower-is-better metrics, so that positive = b better."""
    if not spec.higher_is_better:
        numbers |= {"diff": -numbers["diff"], "ci_low": -numbers["ci_high"], "ci_high": -numbers["ci_low"]}
    return numbers


def _proportions(arm_a: pd.DataFrame, arm_b: pd.DataFrame, pairs: Pairs | None, spec: _Metric,
                 alpha: float, power: float, min_effect: float | None) -> dict[str, Any]:  # fmt: skip
    """Accuracy / error rate: the share of "hits", correct (or wrong) rows."""

    def hits(rows: pd.DataFrame) -> np.ndarray:
        same = rows["truth"].to_numpy(object) == rows["guess"].to_numpy(object)
        return same if spec.name == "accuracy" else ~same

    side_a, side_b = pairs if pairs is not None else (arm_a, arm_b)
    return stats.compare_hits(hits(side_a), hits(side_b), pairs is not None, alpha, power, min_effect)


def _bootstrap(arm_a: pd.DataFrame, arm_b: pd.DataFrame, pairs: Pairs | None, spec: _Metric, alpha: float,
               power: float, min_effect: float | None, n_boot: int,
               rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    """F1, log loss, MAE, RMSE from per-row statistics (`stats.metric_rows`), resampled by `stats.compare_sums`."""
    classes = _classes(arm_a, arm_b) if spec.name == "f1" else []
    side_a, side_b = pairs if pairs is not None else (arm_a, arm_b)
    rows_a, rows_b = (stats.metric_rows(spec.name, side["truth"].to_numpy(), side["guess"].to_numpy(),
                                        side.get("p_true"), classes) for side in (side_a, side_b))  # fmt: skip

    def reduce(sums: np.ndarray, n: int) -> np.ndarray:
        return stats.metric_from_sums(spec.name, sums, n)

    return stats.compare_sums(rows_a, rows_b, reduce, pairs is not None, alpha, power, min_effect, n_boot, rng)


def _classes(*arms: pd.DataFrame) -> list[str]:
    """Every class either version predicted or was told, in a fixed order."""
    return sorted({x for arm in arms for column in ("truth", "guess") for x in arm[column] if x is not None})


# ------------------------------------------------------------------------------------------- verdict


def _verdict(r: ABResult, min_n: int) -> tuple[str, str]:
    """The verdict and why, in a sentence with the numbers (what an audit entry should say)."""
    arms = f"{r.n_a} and {r.n_b} outcomes" if not r.paired else f"{r.n_a} rows answered by both versions"
    if min(r.n_a, r.n_b) < min_n:
        return UNKNOWN, (f"too few outcomes to judge {r.metric}: {arms}, at least {min_n} per version are needed"
                         + _needed(r))  # fmt: skip
    level = f"{100 * (1 - r.alpha):g}%"
    numbers = (f"{r.metric} {r.value_a:.4g} (v{r.a}) vs {r.value_b:.4g} (v{r.b}), difference {r.diff:+.4g} "
               f"({level} CI {r.ci_low:+.4g} to {r.ci_high:+.4g}), p = {r.p_value:.3g} ({r.test}, {arms})")  # fmt: skip
    if r.p_value < r.alpha and (r.ci_low > 0 or r.ci_high < 0):
        verdict = BETTER if r.diff > 0 else WORSE
        return verdict, f"version {r.b} is {verdict} than version {r.a}: {numbers}"
    return UNKNOWN, f"no significant difference at alpha {r.alpha:g}: {numbers}{_needed(r)}"


def _needed(r: ABResult) -> str:
    if r.needed_n is None or r.min_effect is None:
        return ""
    unit = "pairs" if r.paired else "outcomes per version"
    return f"; about {r.needed_n} {unit} are needed to detect a difference of {r.min_effect:.3g}"


def _line(r: ABResult) -> str:
    def num(value: float, fmt: str) -> str:
        return "-" if value is None or not math.isfinite(value) else format(value, fmt)

    diff = f"{num(r.diff, '+.4f')} [{num(r.ci_low, '+.4f')}, {num(r.ci_high, '+.4f')}]"
    pair = f"v{r.a}~v{r.b}" if r.paired else f"v{r.a}/v{r.b}"
    return (
        f"{pair:<10} {r.metric:<10} {num(r.value_a, '.4f'):>8} {num(r.value_b, '.4f'):>8} {diff:>30} "
        f"{num(r.p_value, '.3g'):>8} {f'{r.n_a}/{r.n_b}':>13} {r.needed_n if r.needed_n else '-':>7}  {r.verdict}"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value
