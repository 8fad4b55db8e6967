"""Explanations and fairness: numbers against hand-computed cases, figures, what lands on the run,
and a promotion gate on a fairness metric."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from model_fixtures import train_run

import workbench as wb
from workbench.governance.explain import explain
from workbench.governance.fairness import fairness, group_metrics


def test_group_metrics_match_hand_computed_rates():
    # group a: 4 rows, truth 1 1 0 0, predicted 1 0 1 0 -> selection 2/4, acc 2/4, TPR 1/2, FPR 1/2
    # group b: 3 rows, truth 1 0 0,   predicted 1 0 0   -> selection 1/3, acc 3/3, TPR 1/1, FPR 0/2
    truth = [1, 1, 0, 0, 1, 0, 0]
    predicted = [1, 0, 1, 0, 1, 0, 0]
    groups = ["a", "a", "a", "a", "b", "b", "b"]
    table, parity, odds = group_metrics(truth, predicted, groups, positive=1)
    assert table["group"].tolist() == ["a", "b"]
    assert table["count"].tolist() == [4, 3]
    assert table["selection_rate"].tolist() == pytest.approx([0.5, 1 / 3])
    assert table["accuracy"].tolist() == pytest.approx([0.5, 1.0])
    assert table["tpr"].tolist() == pytest.approx([0.5, 1.0])
    assert table["fpr"].tolist() == pytest.approx([0.5, 0.0])
    assert parity == pytest.approx(0.5 - 1 / 3)
    assert odds == pytest.approx(0.5)  # max(TPR gap 0.5, FPR gap 0.5)


def test_group_metrics_one_vs_rest_and_undefined_rates():
    # multiclass: positive = 2; group y has no true 2s, so its TPR is undefined and ignored
    truth = [2, 0, 1, 0, 1]
    predicted = [2, 2, 1, 0, 2]
    groups = ["x", "x", "x", "y", "y"]
    table, parity, odds = group_metrics(truth, predicted, groups, positive=2)
    x, y = table.set_index("group").loc["x"], table.set_index("group").loc["y"]
    assert x["selection_rate"] == pytest.approx(2 / 3) and y["selection_rate"] == pytest.approx(0.5)
    assert x["tpr"] == 1.0 and math.isnan(y["tpr"])
    assert x["fpr"] == pytest.approx(0.5) and y["fpr"] == pytest.approx(0.5)
    assert parity == pytest.approx(2 / 3 - 0.5)
    assert odds == pytest.approx(0.0)  # only the FPR gap is defined


@pytest.fixture()
def biased_run(ws):
    """A tree that predicts y = x exactly; group b has y that x cannot explain (hand-computed below)."""
    from sklearn.tree import DecisionTreeClassifier

    a = [(1, 1)] * 4 + [(0, 0)] * 4
    b = [(1, 0)] * 2 + [(1, 1)] * 2 + [(0, 0)] * 4
    frame = pd.DataFrame(
        [{"x": x, "noise": i % 3, "group": "a", "target": y} for i, (x, y) in enumerate(a)]
        + [{"x": x, "noise": i % 3, "group": "b", "target": y} for i, (x, y) in enumerate(b)]
    )
    wb.snapshot("people", frame)
    data = wb.load_snapshot("people")
    X = data[["x", "noise"]]
    model = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, data["target"])
    wb.log_metric("accuracy", float(model.score(X, data["target"])))
    wb.log_model(model, "people", sample=X.head())
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id


def test_fairness_on_a_run_logs_metrics_figure_and_card_section(biased_run):
    # default positive = most frequent true class = 0 (10 of 16 rows)
    # a: pred==0 for the 4 x=0 rows; TPR(0) = 4/4, FPR(0) = 0/4, selection 4/8, accuracy 8/8
    # b: TPR(0) = 4/6 (x=1,y=0 rows are predicted 1), FPR(0) = 0/2, selection 4/8, accuracy 6/8
    report = fairness(biased_run, sensitive="group")
    assert report.positive == 0 and report.snapshot == "people@1"
    groups = report.groups.set_index("group")
    assert groups["accuracy"].tolist() == pytest.approx([1.0, 0.75])
    assert groups["tpr"].tolist() == pytest.approx([1.0, 4 / 6])
    assert groups["fpr"].tolist() == pytest.approx([0.0, 0.0])
    assert report.demographic_parity_difference == pytest.approx(0.0)
    assert report.equalized_odds_difference == pytest.approx(1 / 3)
    for_ones = fairness(biased_run, sensitive="group", positive="1", log=False)  # text from the CLI
    assert for_ones.positive == 1 and for_ones.equalized_odds_difference == pytest.approx(1 / 3)  # FPR 0 vs 2/6

    run = wb.get_run(biased_run)
    assert run.metrics["fairness.equalized_odds_difference"] == pytest.approx(1 / 3)
    assert run.metrics["fairness.demographic_parity_difference"] == pytest.approx(0.0)
    figure = wb.load_artifact(run, "fairness/group")
    assert [trace.name for trace in figure.data] == ["selection_rate", "accuracy", "tpr", "fpr"]
    card_section = wb.load_artifact(run, "card/fairness.md")
    assert "Equalized odds difference" in card_section and "0.3333" in card_section


def test_a_fairness_gate_refuses_promotion(biased_run, cli):
    fairness(biased_run, sensitive="group")
    cli("models", "gate", "people", "--max", "fairness.equalized_odds_difference=0.1", check=True)
    with pytest.raises(wb.GateRefused, match="fairness.equalized_odds_difference = 0.333"):
        wb.promote(biased_run, "people")
    refused = wb.audit_log(target="model:people", action="gate.refused")
    assert len(refused) == 1 and refused[0].details["run_id"] == biased_run
    wb.set_gates("people", {"metrics": {"fairness.equalized_odds_difference": {"max": 0.5}}})
    assert wb.promote(biased_run, "people").version == 1


def test_explain_importance_partial_dependence_and_model_card(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    run_id = train_run(features=["alcohol", "proline", "color_intensity"])
    wb.promote(run_id)
    result = explain("wine@production", n_repeats=3, top=2)
    assert result.snapshot == "wine@1" and result.run_id == run_id
    assert sorted(result.importance["feature"]) == ["alcohol", "color_intensity", "proline"]
    assert result.importance["importance_mean"].is_monotonic_decreasing
    assert (result.importance["importance_mean"] > 0).all()  # each of these matters for wine classes
    assert len(result.top_features) == 2
    curve = result.partial_dependence[result.top_features[0]]
    assert list(curve.columns[1:]) == ["class 0", "class 1", "class 2"]
    assert np.allclose(curve[["class 0", "class 1", "class 2"]].sum(axis=1), 1.0)  # averaged probabilities
    assert set(result.figures) == {"explain/importance", *(f"explain/pd/{f}" for f in result.top_features)}

    run = wb.get_run(run_id)
    top = result.importance.iloc[0]
    assert run.metrics[f"explain.importance.{top.feature}"] == pytest.approx(top.importance_mean)
    assert {"explain/importance", "card/explainability.md"} <= {a.name for a in run.artifacts}
    assert wb.load_artifact(run, "explain/importance").data[0].type == "bar"
    card = wb.model_card("wine@production")
    assert "## Explainability" in card and "Permutation importance" in card


def test_explain_errors_are_one_line(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    run_id = train_run()
    with pytest.raises(wb.ValidationError, match="lacks column"):
        explain(run_id, target="quality", log=False)
    with pytest.raises(wb.ValidationError, match="no column 'sex'"):
        fairness(run_id, sensitive="sex", log=False)


def test_a_swapped_target_cannot_pass_as_perfectly_fair(biased_run, cli):
    """`--sensitive target --target group` used to score every rate 0 ("perfectly fair") and pass a gate."""
    with pytest.raises(wb.ValidationError, match="labels .* never predicts"):
        fairness(biased_run, sensitive="target", target="group")
    assert "fairness.equalized_odds_difference" not in wb.get_run(biased_run).metrics
    proc = cli("fairness", biased_run, "--sensitive", "target", "--target", "group")
    assert proc.returncode == 2 and "never predicts" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_single_group_is_refused(biased_run):
    data = wb.load_snapshot("people")
    wb.snapshot("one-group", data[data.group == "a"])
    with pytest.raises(wb.ValidationError, match="single group"):
        fairness(biased_run, sensitive="group", snapshot="one-group")
    assert "fairness.equalized_odds_difference" not in wb.get_run(biased_run).metrics


def test_explain_with_a_wrong_target_is_one_clear_line(biased_run, cli):
    proc = cli("explain", biased_run, "--target", "group")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "never predicts" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_metrics_added_by_explain_and_fairness_are_audited(biased_run):
    """They can decide a promotion gate, so who added which values must be on record."""
    fairness(biased_run, sensitive="group")
    entry = wb.audit_log(action="fairness.logged")[-1]
    assert entry.target == f"run:{biased_run}"
    assert entry.details["metrics"]["fairness.equalized_odds_difference"] == pytest.approx(1 / 3)
    assert "card/fairness.md" in entry.details["artifacts"]
    explain(biased_run, n_repeats=2, top=1)
    explained = wb.audit_log(action="explain.logged")[-1]
    assert explained.target == f"run:{biased_run}" and any(k.startswith("explain.importance.")
                                                            for k in explained.details["metrics"])  # fmt: skip
