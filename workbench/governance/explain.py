"""Explaining a model: permutation importance and partial dependence, stored with its run.

`explain("wine@production")` (or a run id) evaluates the model on the run's evaluation data
(by default the snapshot it was trained on, from lineage; pass a held-out snapshot for an honest
picture) with scikit-learn's `inspection` module. Permutation importance is model-agnostic: how
much the score drops when one feature's values are shuffled, repeated `n_repeats` times. Partial
dependence shows how the average prediction moves along the top features.

With `log=True` the results go onto the model's run: plotly figures (`explain/importance`,
`explain/pd/<feature>`), a `card/explainability.md` section the model card renders, and
metrics `explain.importance.<feature>`, so they can be compared and gated like any metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ValidationError
from workbench.governance import markdown_table, resolve, run_appender, safe_key
from workbench.workspace import Workspace

GRID_RESOLUTION = 20


@dataclass
class Explanation:
    """Permutation importance (all features) and partial dependence (top features) of a model."""

    subject: str
    run_id: str
    snapshot: str
    target: str
    n_repeats: int
    importance: pd.DataFrame  # feature, importance_mean, importance_std; most important first
    partial_dependence: dict[str, pd.DataFrame]  # feature -> grid value + one column per output
    figures: dict[str, Any] = field(default_factory=dict)  # artifact name -> plotly Figure

    @property
    def top_features(self) -> list[str]:
        return list(self.partial_dependence)

    def to_markdown(self) -> str:
        lines = [
            f"Permutation importance on `{self.snapshot}` (target `{self.target}`, {self.n_repeats} repeats): "
            "the drop in the model's score when a feature's values are shuffled.",
            "",
            markdown_table(self.importance),
            "",
            f"Partial dependence was computed for the top features: {', '.join(self.top_features)} "
            "(figures `explain/pd/<feature>` on the run).",
        ]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "run_id": self.run_id, "snapshot": self.snapshot, "target": self.target,
            "importance": self.importance.to_dict(orient="records"),
            "partial_dependence": {k: v.to_dict(orient="list") for k, v in self.partial_dependence.items()},
            "figures": sorted(self.figures),
        }  # fmt: skip


def explain(
    run_or_model_ref: str,
    snapshot: str | None = None,
    target: str | None = None,
    n_repeats: int = 5,
    top: int = 5,
    log: bool = True,
    random_state: int = 0,
    ws: Workspace | None = None,
) -> Explanation:
    """Permutation importance and partial dependence of a run's (or model version's) model.

    `snapshot` defaults to the model's training snapshot, `target` to the column "target";
    features are the model's recorded input schema. `log=True` stores figures, a model-card
    section and `explain.importance.<feature>` metrics with the run.

    Without `ws` and with a team server configured, the model, run and data are the server's and the
    results are stored with the server's run (see `governance.run_appender`).
    """
    from sklearn.inspection import partial_dependence, permutation_importance

    if n_repeats < 1 or top < 1:
        raise ValidationError("n_repeats and top must be at least 1.")
    subject = resolve(run_or_model_ref, ws)
    out = run_appender(ws, subject.run, "explain.logged") if log else None  # refusals before the work
    target = target or "target"
    snapshot_ref, frame = subject.evaluation_frame(snapshot, ws)
    X, y = subject.split(frame, target, snapshot_ref)
    result = permutation_importance(subject.estimator, X, y, n_repeats=n_repeats, random_state=random_state)
    importance = (
        pd.DataFrame(
            {
                "feature": subject.features,
                "importance_mean": result.importances_mean,
                "importance_std": result.importances_std,
            }
        )  # fmt: skip
        .sort_values("importance_mean", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    curves: dict[str, pd.DataFrame] = {}
    # scikit-learn refuses partial dependence on integer columns (its grid would be rounded)
    grid_X = X.astype({c: "float64" for c in X.columns if pd.api.types.is_integer_dtype(X[c])})
    for feature in importance["feature"].head(top):
        curves[feature] = _pd_frame(partial_dependence(subject.estimator, grid_X, [feature],
                                                       grid_resolution=GRID_RESOLUTION, kind="average"),
                                    feature, getattr(subject.estimator, "classes_", None))  # fmt: skip
    explanation = Explanation(subject.label, subject.run.run_id, snapshot_ref, target, n_repeats, importance, curves)
    explanation.figures = _figures(explanation)
    if out is not None:
        with out:
            for name, fig in explanation.figures.items():
                out.figure(name, fig)
            out.text("card/explainability.md", explanation.to_markdown())
            for row in importance.itertuples():
                out.metric(f"explain.importance.{safe_key(row.feature)}", row.importance_mean)
    return explanation


def _pd_frame(bunch: Any, feature: str, classes: Any) -> pd.DataFrame:
    """Grid values plus one column per model output (a class for classifiers, else 'prediction')."""
    average = np.asarray(bunch["average"])
    grid = np.asarray(bunch["grid_values"][0])
    outputs = average.reshape(average.shape[0], -1)
    if classes is not None and len(classes) == outputs.shape[0]:
        names = [f"class {c}" for c in classes]
    elif classes is not None and len(classes) == 2 and outputs.shape[0] == 1:
        names = [f"class {classes[1]}"]  # binary classifiers report the positive class only
    else:
        names = ["prediction"] if outputs.shape[0] == 1 else [f"output {i}" for i in range(outputs.shape[0])]
    return pd.DataFrame({feature: grid, **{name: outputs[i] for i, name in enumerate(names)}})


def _figures(explanation: Explanation) -> dict[str, Any]:
    import plotly.graph_objects as go

    table = explanation.importance.iloc[::-1]  # plotly draws horizontal bars bottom-up
    bars = go.Figure(go.Bar(x=table["importance_mean"], y=table["feature"], orientation="h",
                            error_x={"type": "data", "array": table["importance_std"]}))  # fmt: skip
    bars.update_layout(title=f"Permutation importance of {explanation.subject} on {explanation.snapshot}",
                       xaxis_title="score decrease", yaxis_title=None)  # fmt: skip
    figures = {"explain/importance": bars}
    for feature, curve in explanation.partial_dependence.items():
        fig = go.Figure([go.Scatter(x=curve[feature], y=curve[column], mode="lines", name=column)
                         for column in curve.columns[1:]])  # fmt: skip
        fig.update_layout(title=f"Partial dependence on {feature}", xaxis_title=feature,
                          yaxis_title="average prediction")  # fmt: skip
        figures[f"explain/pd/{safe_key(feature)}"] = fig
    return figures


__all__ = ["Explanation", "explain"]
