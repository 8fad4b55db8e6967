"""A/B statistics (issue 19): textbook values, detection of better and worse versions, no verdict on
tiny samples, paired (shadow) against independent (canary) arms, and calibration: under no true
difference, seeded simulations say "better" or "worse" at most about alpha of the time."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency

from workbench.errors import ValidationError
from workbench.quality import stats
from workbench.quality.abtest import MIN_OUTCOMES, ab_report, compare_versions, detect_task
from workbench.quality.metrics import task_metrics

ALPHA = 0.05
SIMULATIONS = 400
#: The calibration bound: alpha plus three standard errors of a share estimated from 400 runs.
MAX_FALSE_VERDICTS = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


def arm(version: int, truth, predictions, *, start: int = 0, shadow: bool = False, proba=None) -> pd.DataFrame:
    """Joined rows of one version (the columns of quality.outcomes.joined that the statistics read)."""
    n = len(truth)
    return pd.DataFrame({
        "request_id": [f"r{start + i}" for i in range(n)], "row": 0, "version": version, "shadow": shadow,
        "prediction": list(predictions), "outcome": list(truth),
        "proba": list(proba) if proba is not None else [None] * n,
    })  # fmt: skip


def classifier_rows(rng: np.random.Generator, truth: np.ndarray, accuracy: float, classes: int = 3) -> np.ndarray:
    """Predictions right with probability `accuracy`, else another class."""
    wrong = (truth + rng.integers(1, classes, len(truth))) % classes
    return np.where(rng.random(len(truth)) < accuracy, truth, wrong)


def probabilities(predictions: np.ndarray, classes: int = 3, confidence: float = 0.7) -> list[dict[str, float]]:
    rest = (1 - confidence) / (classes - 1)
    return [{str(k): confidence if k == p else rest for k in range(classes)} for p in predictions]


def canary(rng: np.random.Generator, n: int, acc_a: float, acc_b: float) -> pd.DataFrame:
    """A canary split: versions 1 and 2 answer different requests."""
    truth_a, truth_b = rng.integers(0, 3, n), rng.integers(0, 3, n)
    pred_a, pred_b = classifier_rows(rng, truth_a, acc_a), classifier_rows(rng, truth_b, acc_b)
    return pd.concat([arm(1, truth_a, pred_a, proba=probabilities(pred_a)),
                      arm(2, truth_b, pred_b, start=n, proba=probabilities(pred_b))], ignore_index=True)  # fmt: skip


# --------------------------------------------------------------------------------------------- textbook


def test_two_proportion_z_test_matches_the_textbook_and_the_chi_square_test():
    # 56/70 against 48/80 (Newcombe 1998, example a): pooled p = 104/150, z = 0.2 / 0.07547 = 2.650.
    z, p = stats.two_proportion_z(48, 80, 56, 70)
    assert z == pytest.approx(2.6502, abs=1e-4)
    assert p == pytest.approx(0.00805, abs=1e-5)
    _, chi_p, _, _ = chi2_contingency([[56, 14], [48, 32]], correction=False)  # z squared is Pearson's chi-square
    assert p == pytest.approx(chi_p, rel=1e-9)
    assert stats.two_proportion_z(30, 30, 40, 40) == (0.0, 1.0)  # both perfect: no evidence of a difference


def test_newcombe_and_wilson_intervals_match_the_published_examples():
    # Newcombe (1998), "Interval estimation for the difference between independent proportions", method 10.
    assert stats.newcombe_interval(48, 80, 56, 70) == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert stats.newcombe_interval(3, 10, 9, 10) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", 81/263, Wilson score.
    assert stats.wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)


def test_mcnemar_matches_agrestis_presidential_approval_example():
    # Agresti, Categorical Data Analysis: 1600 people, approve/approve 794, approve/disapprove 150,
    # disapprove/approve 86, 570 disapprove twice. Difference 0.04, SE 0.0095, 95% CI (0.021, 0.059), z = 4.17.
    z, p, low, high = stats.mcnemar(only_a=86, only_b=150, n=1600)
    assert z == pytest.approx(4.17, abs=0.005)
    assert z * z == pytest.approx(17.36, abs=0.01)
    assert (low, high) == pytest.approx((0.021, 0.059), abs=5e-4)
    assert p < 1e-4


def test_sample_size_is_fleiss_formula_and_gives_the_power_it_promises():
    assert stats.n_two_proportions(0.5, 0.1) == 388  # 50% -> 60%, alpha 0.05, power 0.8, no continuity correction
    assert stats.n_two_proportions(0.5, -0.1) == 388
    assert stats.n_two_proportions(0.95, 0.1) is None  # beyond 100%
    n = stats.n_two_proportions(0.8, 0.05)
    rng = np.random.default_rng(7)
    x_a, x_b = rng.binomial(n, 0.8, 4000), rng.binomial(n, 0.85, 4000)
    detected = np.mean([stats.two_proportion_z(a, n, b, n)[1] < ALPHA for a, b in zip(x_a, x_b, strict=True)])
    assert 0.77 <= detected <= 0.83  # power 0.8 at the needed n (4000 runs: standard error 0.006)


# ------------------------------------------------------------------------------------------ on frames


def test_values_agree_with_the_live_quality_metrics():
    frame = canary(np.random.default_rng(1), 300, 0.8, 0.7)
    for version in (1, 2):
        expected = task_metrics("classification", frame[frame["version"] == version])
        for metric in ("accuracy", "f1", "log_loss"):
            result = compare_versions(frame, 1, 2, metric)
            value = result.value_a if version == 1 else result.value_b
            assert value == pytest.approx(expected[metric], rel=1e-9), metric
    regression = pd.concat([arm(1, [1.0, 2, 3, 4] * 10, [1.5, 2, 2, 5] * 10), arm(2, [1.0, 2] * 20, [1.0, 2.5] * 20)])
    expected = task_metrics("regression", regression[regression["version"] == 1])
    assert compare_versions(regression, 1, 2, "mae").value_a == pytest.approx(expected["mae"])
    assert compare_versions(regression, 1, 2, "rmse").value_a == pytest.approx(expected["rmse"])


@pytest.mark.parametrize("metric", ["accuracy", "error_rate", "f1", "log_loss"])
def test_a_clearly_better_canary_is_better_and_a_clearly_worse_one_worse(metric: str):
    better = compare_versions(canary(np.random.default_rng(2), 600, 0.70, 0.85), 1, 2, metric)
    assert better.verdict == "better", better.reason
    assert better.diff > 0 and better.ci_low > 0 and better.p_value < ALPHA and not better.paired
    worse = compare_versions(canary(np.random.default_rng(3), 600, 0.85, 0.70), 1, 2, metric)
    assert worse.verdict == "worse", worse.reason
    assert worse.diff < 0 and worse.ci_high < 0
    assert worse.reason.startswith("version 2 is worse than version 1")


def test_lower_is_better_metrics_are_oriented_so_positive_means_b_better():
    result = compare_versions(canary(np.random.default_rng(2), 600, 0.70, 0.85), 1, 2, "error_rate")
    assert result.value_b < result.value_a and result.diff == pytest.approx(result.value_a - result.value_b)
    rng = np.random.default_rng(4)
    truth = rng.normal(size=400)
    frame = pd.concat([arm(1, truth[:200], truth[:200] + rng.normal(0, 1.0, 200)),
                       arm(2, truth[200:], truth[200:] + rng.normal(0, 0.5, 200), start=200)])  # fmt: skip
    for metric in ("mae", "rmse"):
        result = compare_versions(frame, 1, 2, metric)
        assert result.value_b < result.value_a and result.diff > 0 and result.verdict == "better", result.reason
        assert result.test == "bootstrap" and not result.higher_is_better


def test_tiny_samples_give_no_verdict_however_large_the_difference():
    truth = np.zeros(MIN_OUTCOMES - 1, dtype=int)
    frame = pd.concat([arm(1, truth, truth + 1), arm(2, truth, truth, start=100)])  # 0% against 100% correct
    result = compare_versions(frame, 1, 2, "accuracy")
    assert result.p_value < 1e-6
    assert result.verdict == "not yet known"
    assert f"at least {MIN_OUTCOMES} per version" in result.reason
    nothing = compare_versions(frame, 1, 7, "accuracy")  # a version without outcomes yet
    assert nothing.verdict == "not yet known" and nothing.n_b == 0
    assert json.loads(json.dumps(nothing.to_dict(), allow_nan=False))["value_b"] is None


def test_needed_n_for_a_given_effect_and_the_fixed_horizon():
    frame = canary(np.random.default_rng(5), 500, 0.80, 0.80)
    result = compare_versions(frame, 1, 2, "accuracy", min_effect=0.05)
    assert result.needed_n == stats.n_two_proportions(result.value_a, 0.05 if result.diff >= 0 else -0.05)
    assert result.min_effect == 0.05
    assert not result.horizon_reached  # about 1000 per arm are needed for 5 points at 80%
    assert compare_versions(frame, 1, 2, "accuracy", min_effect=0.2).horizon_reached
    observed = compare_versions(frame, 1, 2, "f1")  # no min_effect: the size for the difference seen so far
    assert observed.min_effect == pytest.approx(abs(observed.diff))
    assert observed.needed_n is not None and observed.needed_n > 500
    assert "outcomes per version are needed to detect" in observed.reason


def test_the_bootstrap_is_seeded_and_fast():
    frame = canary(np.random.default_rng(6), 5000, 0.80, 0.81)  # 10,000 rows
    started = time.process_time()  # CPU time: other processes on a shared machine do not count
    first = compare_versions(frame, 1, 2, "f1", seed=3)
    took = time.process_time() - started
    assert took < 1.0, f"2000 bootstrap resamples of 10,000 rows took {took:.2f}s of CPU"
    again = compare_versions(frame, 1, 2, "f1", seed=3)
    assert (first.ci_low, first.ci_high, first.p_value) == (again.ci_low, again.ci_high, again.p_value)
    other = compare_versions(frame, 1, 2, "f1", seed=4)
    assert other.ci_low != first.ci_low and other.ci_low == pytest.approx(first.ci_low, abs=0.005)


# --------------------------------------------------------------------------------- paired and unpaired


def shadow_pair(rng: np.random.Generator, n: int = 300) -> pd.DataFrame:
    """Shadow mode: versions 1 (served) and 2 (shadow) answer the same rows and mostly agree; version
    2 fixes 20 of version 1's mistakes and makes 5 of its own (80% against 85% correct)."""
    truth = rng.integers(0, 2, n)
    right_a = np.zeros(n, dtype=bool)
    right_a[:240] = True
    right_b = right_a.copy()
    right_b[240:260] = True  # only b right
    right_b[:5] = False  # only a right
    order = rng.permutation(n)
    pred_a, pred_b = np.where(right_a, truth, 1 - truth)[order], np.where(right_b, truth, 1 - truth)[order]
    return pd.concat([arm(1, truth[order], pred_a), arm(2, truth[order], pred_b, shadow=True)], ignore_index=True)


def test_shadow_rows_are_compared_paired_and_that_needs_fewer_outcomes():
    frame = shadow_pair(np.random.default_rng(8))
    paired = compare_versions(frame, 1, 2, "accuracy")
    assert paired.paired and paired.test == "mcnemar" and paired.n_a == paired.n_b == 300
    assert paired.p_value == pytest.approx(stats.mcnemar(5, 20, 300)[1])  # z = 15 / 5 = 3, p = 0.0027
    assert paired.verdict == "better", paired.reason
    unpaired = compare_versions(frame, 1, 2, "accuracy", paired=False)
    assert unpaired.test == "two-proportion z" and unpaired.p_value > 0.1  # z = 1.61: the shared rows hide it
    assert unpaired.verdict == "not yet known"
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low
    assert paired.needed_n < unpaired.needed_n


def test_paired_bootstrap_removes_the_noise_both_versions_share():
    rng = np.random.default_rng(9)
    n = 200
    truth = rng.normal(0, 1, n)
    shared = rng.normal(0, 3, n)  # hard rows are hard for both versions
    pred_a = truth + shared + rng.normal(0, 0.1, n)
    pred_b = truth + 0.9 * shared + rng.normal(0, 0.1, n)
    frame = pd.concat([arm(1, truth, pred_a), arm(2, truth, pred_b, shadow=True)], ignore_index=True)
    paired = compare_versions(frame, 1, 2, "mae")
    unpaired = compare_versions(frame, 1, 2, "mae", paired=False)
    assert paired.paired and not unpaired.paired
    assert paired.diff == pytest.approx(unpaired.diff)
    assert paired.verdict == "better" and unpaired.verdict == "not yet known", (paired.reason, unpaired.reason)
    assert (paired.ci_high - paired.ci_low) < (unpaired.ci_high - unpaired.ci_low) / 5


def test_canary_arms_with_distinct_requests_are_independent():
    frame = canary(np.random.default_rng(10), 100, 0.8, 0.8)
    assert not compare_versions(frame, 1, 2, "accuracy").paired
    assert not compare_versions(frame.drop(columns=["request_id", "row"]), 1, 2, "f1").paired


# -------------------------------------------------------------------------------------------- calibration


def false_verdict_rate(make_frame, metric: str, **options) -> float:
    """The share of seeded simulations (data from `make_frame`, both arms from one process) judged
    better or worse. The bootstrap keeps its fixed default seed, as in use: only the data vary."""
    verdicts = [compare_versions(make_frame(np.random.default_rng(seed)), 1, 2, metric, **options).verdict
                for seed in range(SIMULATIONS)]  # fmt: skip
    return sum(v != "not yet known" for v in verdicts) / SIMULATIONS


def test_no_true_difference_proportion_test_is_calibrated():
    rate = false_verdict_rate(lambda rng: canary(rng, 200, 0.75, 0.75), "accuracy")  # 0.05 of 400
    assert 0.01 <= rate <= MAX_FALSE_VERDICTS, rate


def test_no_true_difference_bootstrap_is_calibrated_independent_and_paired():
    def regression_canary(rng: np.random.Generator) -> pd.DataFrame:
        truth = rng.normal(size=400)
        return pd.concat([arm(1, truth[:200], truth[:200] + rng.normal(0, 1, 200)),
                          arm(2, truth[200:], truth[200:] + rng.normal(0, 1, 200), start=200)])  # fmt: skip

    def regression_shadow(rng: np.random.Generator) -> pd.DataFrame:
        truth, shared = rng.normal(size=200), rng.normal(0, 2, 200)
        return pd.concat([arm(1, truth, truth + shared + rng.normal(0, 1, 200)),
                          arm(2, truth, truth + shared + rng.normal(0, 1, 200), shadow=True)])  # fmt: skip

    independent = false_verdict_rate(regression_canary, "mae", n_boot=200)  # 0.055 of 400
    paired = false_verdict_rate(regression_shadow, "rmse", n_boot=200)  # 0.0525 of 400
    assert 0.01 <= independent <= MAX_FALSE_VERDICTS, independent
    assert 0.01 <= paired <= MAX_FALSE_VERDICTS, paired


# ------------------------------------------------------------------------------------------------ report


def test_ab_report_compares_canary_and_shadow_with_the_baseline():
    rng = np.random.default_rng(11)
    n = 400
    truth = rng.integers(0, 3, 2 * n)
    production = classifier_rows(rng, truth, 0.80)
    shadow = classifier_rows(rng, truth[:n], 0.90)
    canary_rows = classifier_rows(rng, truth[:100], 0.80)
    frame = pd.concat([
        arm(1, truth, production, proba=probabilities(production)),
        arm(3, truth[:n], shadow, shadow=True, proba=probabilities(shadow)),
        arm(2, truth[:100], canary_rows, start=2 * n, proba=probabilities(canary_rows)),
    ], ignore_index=True)  # fmt: skip
    frame.loc[frame.index[:20], "outcome"] = None  # pending: no outcome yet
    report = ab_report(frame)
    assert report.baseline == 1 and report.task == "classification"
    metrics = ["accuracy", "f1", "log_loss"]
    assert [(r.a, r.b, r.metric) for r in report.results] == [(1, b, m) for b in (2, 3) for m in metrics]
    by_pair = {(r.b, r.metric): r for r in report.results}
    assert not by_pair[2, "accuracy"].paired and by_pair[3, "accuracy"].paired
    assert by_pair[3, "accuracy"].n_a == n - 20 and by_pair[3, "accuracy"].verdict == "better"
    assert list(report.table.columns)[:3] == ["a", "b", "metric"] and len(report.table) == 6
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["results"][0]["verdict"]
    text = report.to_text()
    assert "v1~v3" in text and "v1/v2" in text and "better" in text
    assert ab_report(frame.drop(columns=["proba"]), task="classification").table["metric"].tolist() == [
        "accuracy", "f1"] * 2  # fmt: skip
    regression = pd.concat([arm(1, [1.0, 2.0] * 20, [1.5, 2.5] * 20), arm(2, [1.0] * 5, [1.0] * 5, start=50)])
    assert detect_task(regression) == "regression"
    assert ab_report(regression).table["metric"].tolist() == ["mae", "rmse"]
    assert ab_report(frame.iloc[:0]).results == []


def test_user_mistakes_are_workbench_errors_with_hints():
    frame = canary(np.random.default_rng(12), 50, 0.8, 0.8)
    cases = [
        (lambda: compare_versions(frame, 1, 2, "auc"), "Unknown A/B metric 'auc'"),
        (lambda: compare_versions(frame, 1, 1, "accuracy"), "two different versions"),
        (lambda: compare_versions(frame.drop(columns=["outcome"]), 1, 2, "accuracy"), "lack the column(s) outcome"),
        (lambda: compare_versions(frame, 1, 2, "accuracy", min_effect=-0.1), "min_effect must be a positive"),
        (lambda: compare_versions(frame, 1, 2, "accuracy", alpha=5), "alpha and power"),
        (lambda: compare_versions(frame.assign(prediction="cat", outcome="dog"), 1, 2, "mae"), "none usable for mae"),
        (lambda: compare_versions(frame.assign(proba=None), 1, 2, "log_loss"), "class probabilities"),
        (lambda: ab_report(frame, ["mae"]), "mae is not a metric of classification"),
    ]
    for call, message in cases:
        with pytest.raises(ValidationError) as caught:
            call()
        assert message in str(caught.value)


def test_report_on_the_joined_rows_of_a_workspace(ws):
    """The frame `quality.outcomes.joined` reads from the prediction log and the outcome store (the
    contract between the two modules): version 2 shadows version 1, which answers every request."""
    from workbench.quality.outcomes import joined, record_outcomes
    from workbench.serving.predlog import predictions_dir

    rng = np.random.default_rng(13)
    n = 300
    truth = rng.integers(0, 3, n)
    lines = []
    for version, accuracy in ((1, 0.70), (2, 0.90)):
        predicted = classifier_rows(rng, truth, accuracy)
        for i, (label, proba) in enumerate(zip(predicted, probabilities(predicted), strict=True)):
            line = {"at": "2026-12-01T10:00:00+00:00", "request_id": f"q{i // 2}", "row": i % 2, "version": version,
                    "latency_ms": 1.0, "input": {}, "prediction": int(label), "proba": proba}  # fmt: skip
            lines.append(json.dumps(line | ({"shadow": True} if version == 2 else {})))
    folder = predictions_dir(ws, "wine")
    folder.mkdir(parents=True)
    (folder / "20261201-1.jsonl").write_text("\n".join(lines) + "\n")
    items = [{"request_id": f"q{i // 2}", "row": i % 2, "outcome": int(truth[i])} for i in range(n - 50)]
    record_outcomes(ws, "wine", items + items[:10], "bulk")  # 50 still pending, 10 duplicates

    frame, counts = joined(ws, "wine")
    assert counts["matched"] == n - 50 and counts["duplicates"] == 10
    report = ab_report(frame)
    assert report.baseline == 1 and report.task == "classification"
    accuracy = next(r for r in report.results if r.metric == "accuracy")
    assert accuracy.paired and accuracy.n_a == accuracy.n_b == n - 50
    expected = task_metrics("classification", frame[(frame["version"] == 2) & frame["outcome"].notna()])
    assert accuracy.value_b == pytest.approx(expected["accuracy"])
    assert [r.verdict for r in report.results] == ["better"] * 3, report.to_text()
