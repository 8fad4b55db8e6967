"""The statistics behind A/B and shadow reports: tests, intervals, sample sizes, a fast bootstrap.

Pure numpy/scipy functions with no knowledge of models or frames (`workbench.quality.abtest` turns
prediction/outcome rows into the numbers these take), so each can be checked against textbook
examples. Differences are always "b minus a"; the caller orients them so that positive means b is
better.

Choices, each the textbook one for its case:
- Independent proportions (canary split: each request answered by one version): the pooled
  two-proportion z-test for the p-value and Newcombe's hybrid score interval (his method 10, built
  from two Wilson intervals) for the difference, which keeps its coverage near 95 % for small
  samples and proportions near 0 or 1 where the normal-approximation (Wald) interval does not.
- Paired proportions (shadow mode: the same rows answered by both versions): McNemar's test on the
  discordant pairs, with the Wald interval for the difference of paired proportions (Agresti).
- Any other metric: a percentile bootstrap, paired (resample rows) or independent (resample each
  arm), its p-value the inversion of the percentile interval.
- Sample size per arm for power 0.8 at a two-sided alpha: Fleiss' formula for two proportions
  (no continuity correction), Connor's for McNemar, and the normal approximation from the observed
  per-row variance for bootstrap metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import norm

#: Bootstrap resamples generated per block: bounds memory at BLOCK x rows floats.
BLOCK = 250


def z_two_sided(alpha: float) -> float:
    """The normal quantile for a two-sided test at `alpha` (1.96 for 0.05)."""
    return float(norm.ppf(1 - alpha / 2))


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for one proportion (no continuity correction)."""
    if n == 0:
        return (0.0, 1.0)
    z = z_two_sided(alpha)
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denominator = 1 + z * z / n
    return (max(0.0, (centre - half) / denominator), min(1.0, (centre + half) / denominator))


def two_proportion_z(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of p_b - p_a: (z, two-sided p-value)."""
    pooled = (x_a + x_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    diff = x_b / n_b - x_a / n_a
    if se == 0:  # both arms all successes or all failures: no evidence of any difference
        return (0.0, 1.0)
    z = diff / se
    return (z, float(2 * norm.sf(abs(z))))


def newcombe_interval(x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p_b - p_a of independent proportions."""
    p_a, p_b = x_a / n_a, x_b / n_b
    lo_a, hi_a = wilson_interval(x_a, n_a, alpha)
    lo_b, hi_b = wilson_interval(x_b, n_b, alpha)
    diff = p_b - p_a
    low = diff - math.sqrt((p_b - lo_b) ** 2 + (hi_a - p_a) ** 2)
    high = diff + math.sqrt((hi_b - p_b) ** 2 + (p_a - lo_a) ** 2)
    return (low, high)


def mcnemar(only_a: int, only_b: int, n: int, alpha: float = 0.05) -> tuple[float, float, float, float]:
    """Paired proportions: `only_b` pairs where only b succeeded, `only_a` where only a did, of `n`.

    Returns (z, p-value, ci_low, ci_high) for p_b - p_a: McNemar's z = (only_b - only_a) /
    sqrt(only_b + only_a) and the Wald interval with the paired standard error.
    """
    discordant = only_a + only_b
    diff = (only_b - only_a) / n
    se = math.sqrt(max(discordant / n - diff * diff, 0.0) / n)
    half = z_two_sided(alpha) * se
    if discordant == 0:  # the versions agree on every row's correctness
        return (0.0, 1.0, diff - half, diff + half)
    z = (only_b - only_a) / math.sqrt(discordant)
    return (z, float(2 * norm.sf(abs(z))), diff - half, diff + half)


def n_two_proportions(p_a: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Per-arm n to detect p_a -> p_a + effect (two-sided, Fleiss without continuity correction)."""
    p_b = p_a + effect
    if effect == 0 or not 0 <= p_b <= 1:
        return None
    pooled = (p_a + p_b) / 2
    spread = z_two_sided(alpha) * math.sqrt(2 * pooled * (1 - pooled)) + float(norm.ppf(power)) * math.sqrt(
        p_a * (1 - p_a) + p_b * (1 - p_b)
    )
    return max(2, math.ceil(spread * spread / (effect * effect)))


def n_mcnemar(discordant: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Pairs needed to detect a paired difference `effect` when a `discordant` share of pairs differ (Connor)."""
    if effect == 0 or discordant <= effect * effect:
        return None
    spread = z_two_sided(alpha) * math.sqrt(discordant) + float(norm.ppf(power)) * math.sqrt(
        discordant - effect * effect
    )
    return max(2, math.ceil(spread * spread / (effect * effect)))


def n_from_variance(variance: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Per-arm n to detect `effect` when the difference has variance `variance` / n (normal approximation)."""
    if effect == 0 or not math.isfinite(variance) or variance <= 0:
        return None
    spread = z_two_sided(alpha) + float(norm.ppf(power))
    return max(2, math.ceil(spread * spread * variance / (effect * effect)))


def bootstrap_sums(stats: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Column sums of `stats` (rows x columns) over `n_boot` resamples of its rows: (n_boot x columns).

    A resample is a row of counts (how often each row was drawn); the sums are then one matrix
    product per block, so 2000 resamples of 10,000 rows take a fraction of a second. Every metric
    here is a function of such sums (a mean, a root mean square, F1 from per-class counts), and a
    paired bootstrap is simply the same counts applied to both versions' columns.
    """
    n = stats.shape[0]
    out = np.empty((n_boot, stats.shape[1]))
    counts = np.empty((min(BLOCK, n_boot), n))
    for start in range(0, n_boot, BLOCK):
        size = min(BLOCK, n_boot - start)
        draws = rng.integers(0, n, size=(size, n), dtype=np.int32 if n < 2**31 else np.int64)
        for i, drawn in enumerate(draws):  # one small bincount per resample stays in cache: 3x faster than one big
            counts[i] = np.bincount(drawn, minlength=n)
        out[start : start + size] = counts[:size] @ stats
    return out


def percentile_interval(diffs: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """The (alpha/2, 1 - alpha/2) percentiles of the bootstrap differences."""
    low, high = np.nanquantile(diffs, [alpha / 2, 1 - alpha / 2])
    return (float(low), float(high))


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided p-value of "no difference": twice the smaller share of resamples on either side of 0.

    The inversion of the percentile interval (p < alpha exactly when that interval leaves out 0,
    up to ties), with the usual +1 so that a finite number of resamples never claims p = 0.
    """
    diffs = diffs[~np.isnan(diffs)]
    total = diffs.size + 1
    below = (np.count_nonzero(diffs <= 0) + 1) / total
    above = (np.count_nonzero(diffs >= 0) + 1) / total
    return float(min(1.0, 2 * min(below, above)))


def effect_for(min_effect: float | None, diff: float) -> float | None:
    """The effect a needed sample size is computed for: the one asked for, else the one observed."""
    effect = min_effect if min_effect is not None else abs(diff)
    return effect if effect and math.isfinite(effect) else None


def compare_hits(hit_a: np.ndarray, hit_b: np.ndarray, paired: bool, alpha: float = 0.05, power: float = 0.8,
                 min_effect: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Two shares of successes (booleans per row; paired: the same rows, aligned), b - a.

    Independent: pooled z-test, Newcombe interval, Fleiss sample size toward the side observed (or
    the other when that side leaves [0, 1]). Paired: McNemar, Wald interval, Connor sample size.
    """
    n_a, n_b = len(hit_a), len(hit_b)
    value_a, value_b = float(np.mean(hit_a)), float(np.mean(hit_b))
    diff = value_b - value_a
    effect = effect_for(min_effect, diff)
    if paired:
        only_a, only_b = int(np.sum(hit_a & ~hit_b)), int(np.sum(hit_b & ~hit_a))
        _, p_value, low, high = mcnemar(only_a, only_b, n_a, alpha)
        needed = n_mcnemar((only_a + only_b) / n_a, effect, alpha, power) if effect else None
        test = "mcnemar"
    else:
        x_a, x_b = int(np.sum(hit_a)), int(np.sum(hit_b))
        _, p_value = two_proportion_z(x_a, n_a, x_b, n_b)
        low, high = newcombe_interval(x_a, n_a, x_b, n_b, alpha)
        sign = 1.0 if diff >= 0 else -1.0
        needed = None
        if effect:
            needed = n_two_proportions(value_a, sign * effect, alpha, power) or n_two_proportions(
                value_a, -sign * effect, alpha, power)  # fmt: skip
        test = "two-proportion z"
    return {"n_a": n_a, "n_b": n_b, "value_a": value_a, "value_b": value_b, "diff": diff, "ci_low": low,
            "ci_high": high, "p_value": p_value, "test": test, "needed_n": needed, "min_effect": effect}  # fmt: skip


def compare_sums(rows_a: np.ndarray, rows_b: np.ndarray, reduce: Callable[[np.ndarray, int], np.ndarray],
                 paired: bool, alpha: float = 0.05, power: float = 0.8, min_effect: float | None = None,
                 n_boot: int = 2000, rng: np.random.Generator | None = None) -> dict[str, Any]:  # fmt: skip
    """A metric `reduce(column sums, n)` of two arms' per-row statistics, b - a, by percentile bootstrap.

    Paired (the same rows, aligned): one resample of rows serves both versions. Independent: each
    arm is resampled on its own. The sample size comes from the bootstrap variance scaled to one
    row: n * Var(diff*) when paired, n_a * Var(a*) + n_b * Var(b*) otherwise.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    n_a, n_b, width = len(rows_a), len(rows_b), rows_a.shape[1]
    if paired:
        sums = bootstrap_sums(np.hstack([rows_a, rows_b]), n_boot, rng)
        boot_a, boot_b = reduce(sums[:, :width], n_a), reduce(sums[:, width:], n_b)
        variance = n_a * float(np.nanvar(boot_b - boot_a))
    else:
        boot_a = reduce(bootstrap_sums(rows_a, n_boot, rng), n_a)
        boot_b = reduce(bootstrap_sums(rows_b, n_boot, rng), n_b)
        variance = n_a * float(np.nanvar(boot_a)) + n_b * float(np.nanvar(boot_b))
    value_a = float(reduce(rows_a.sum(axis=0)[None, :], n_a)[0])
    value_b = float(reduce(rows_b.sum(axis=0)[None, :], n_b)[0])
    diffs = boot_b - boot_a
    low, high = percentile_interval(diffs, alpha)
    effect = effect_for(min_effect, value_b - value_a)
    return {"n_a": n_a, "n_b": n_b, "value_a": value_a, "value_b": value_b, "diff": value_b - value_a,
            "ci_low": low, "ci_high": high, "p_value": bootstrap_p(diffs), "test": "bootstrap",
            "needed_n": n_from_variance(variance, effect, alpha, power) if effect else None,
            "min_effect": effect}  # fmt: skip


def metric_rows(metric: str, truth: np.ndarray, guess: np.ndarray, p_true: Any = None,
                classes: list[str] | None = None) -> np.ndarray:  # fmt: skip
    """Per-row numbers whose column sums determine `metric` (rows x columns); see `metric_from_sums`.

    mae: |error|; rmse: error squared; log_loss: -log p(true class); f1: per class, whether the
    row is a true positive, predicted as the class, truly of the class.
    """
    if metric == "mae":
        return np.abs(truth.astype(float) - guess.astype(float))[:, None]
    if metric == "rmse":
        return ((truth.astype(float) - guess.astype(float)) ** 2)[:, None]
    if metric == "log_loss":
        return -np.log(np.asarray(p_true, dtype=float))[:, None]
    is_true = np.stack([truth == c for c in classes or []], axis=1)
    is_guess = np.stack([guess == c for c in classes or []], axis=1)
    return np.hstack([is_true & is_guess, is_guess, is_true]).astype(float)


def metric_from_sums(metric: str, sums: np.ndarray, n: int) -> np.ndarray:
    """`metric` of each row of column sums of `metric_rows` (one row per resample) over n rows."""
    if metric == "rmse":
        return np.sqrt(sums[:, 0] / n)
    if metric in ("mae", "log_loss"):
        return sums[:, 0] / n
    k = sums.shape[1] // 3  # macro F1 over the classes seen in the resample, like scikit-learn's
    tp, predicted, actual = sums[:, :k], sums[:, k : 2 * k], sums[:, 2 * k :]
    seen = (predicted + actual) > 0
    f1 = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp), where=seen)
    return np.where(seen.any(axis=1), f1.sum(axis=1) / np.maximum(seen.sum(axis=1), 1), np.nan)
