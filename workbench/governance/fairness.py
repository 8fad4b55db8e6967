"""Group fairness of a classifier: per-group rates and the two standard disparity measures.

For each value of a sensitive column (which need not be a model feature: `sex` is usually kept
out of the model but still in the data) we compute count, selection rate, accuracy, true and
false positive rate. A multiclass model is judged one-vs-rest for one `positive` class (default:
the most frequent true class), because parity is defined for a yes/no decision.

- demographic parity difference = max - min selection rate over the groups;
- equalized odds difference = the larger of (max - min TPR) and (max - min FPR).

Both are 0 for a perfectly fair model, as in fairlearn (whose definitions these follow; the
implementation is small and tested against hand-computed cases instead of adding a dependency).
They are logged as `fairness.demographic_parity_difference` and
`fairness.equalized_odds_difference`, so a promotion gate such as
`workbench models gate NAME --max fairness.equalized_odds_difference=0.1` can require them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ValidationError
from workbench.governance import markdown_table, resolve, run_appender, safe_key
from workbench.workspace import Workspace

MAX_GROUPS = 50


def _rate(mask: np.ndarray, among: np.ndarray) -> float:
    """Share of `mask` among the rows selected by `among` (NaN when there are none)."""
    total = int(among.sum())
    return float(mask[among].sum() / total) if total else float("nan")


def _spread(values: pd.Series) -> float:
    known = values.dropna()
    return float(known.max() - known.min()) if len(known) else float("nan")


def group_metrics(y_true: Any, y_pred: Any, groups: Any, positive: Any) -> tuple[pd.DataFrame, float, float]:
    """Per-group table plus (demographic parity difference, equalized odds difference).

    `accuracy` compares the predicted and true labels as they are (all classes); the rates use
    the one-vs-rest decision "predicted `positive`".
    """
    truth, predicted, group = (np.asarray(v) for v in (y_true, y_pred, groups))
    if not len(truth) == len(predicted) == len(group):
        raise ValidationError("y_true, y_pred and groups must have the same length.")
    is_positive, said_positive = truth == positive, predicted == positive
    rows = []
    for value in pd.unique(group):
        members = group == value
        rows.append({
            "group": value.item() if hasattr(value, "item") else value,
            "count": int(members.sum()),
            "selection_rate": _rate(said_positive, members),
            "accuracy": _rate(truth == predicted, members),
            "tpr": _rate(said_positive, members & is_positive),
            "fpr": _rate(said_positive, members & ~is_positive),
        })  # fmt: skip
    table = pd.DataFrame(rows).sort_values("group", key=lambda s: s.astype(str)).reset_index(drop=True)
    parity = _spread(table["selection_rate"])
    gaps = [gap for gap in (_spread(table["tpr"]), _spread(table["fpr"])) if not np.isnan(gap)]
    odds = max(gaps) if gaps else float("nan")  # a gap is undefined when no group has such rows
    return table, parity, float(odds)


@dataclass
class FairnessReport:
    subject: str
    run_id: str
    snapshot: str
    sensitive: str
    target: str
    positive: Any
    groups: pd.DataFrame
    demographic_parity_difference: float
    equalized_odds_difference: float
    figures: dict[str, Any] = field(default_factory=dict)

    def to_markdown(self) -> str:
        return "\n".join([
            f"Groups by `{self.sensitive}` on `{self.snapshot}`; rates are for predicting `{self.target}` = "
            f"`{self.positive}` (one-vs-rest).",
            "",
            markdown_table(self.groups),
            "",
            f"- Demographic parity difference (max - min selection rate): {self.demographic_parity_difference:.4f}",
            f"- Equalized odds difference (max of TPR and FPR gaps): {self.equalized_odds_difference:.4f}",
        ]) + "\n"  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "run_id": self.run_id, "snapshot": self.snapshot, "sensitive": self.sensitive,
            "target": self.target, "positive": self.positive, "groups": self.groups.to_dict(orient="records"),
            "demographic_parity_difference": self.demographic_parity_difference,
            "equalized_odds_difference": self.equalized_odds_difference, "figures": sorted(self.figures),
        }  # fmt: skip


def fairness(
    run_or_model_ref: str,
    sensitive: str,
    snapshot: str | None = None,
    target: str = "target",
    positive: Any = None,
    log: bool = True,
    ws: Workspace | None = None,
) -> FairnessReport:
    """Group metrics of the model by `sensitive` on its evaluation snapshot (default: training data).

    Without `ws` and with a team server configured, everything is the server's, results included."""
    subject = resolve(run_or_model_ref, ws)
    if not hasattr(subject.estimator, "classes_"):
        raise ValidationError(f"{subject.label} is not a classifier; fairness rates need predicted classes.")
    out = run_appender(ws, subject.run, "fairness.logged") if log else None  # refusals before the work
    snapshot_ref, frame = subject.evaluation_frame(snapshot, ws)
    if sensitive not in frame.columns:
        raise ValidationError(f"Snapshot {snapshot_ref} has no column {sensitive!r}.",
                              f"Columns: {', '.join(map(str, frame.columns))}.")  # fmt: skip
    frame = frame.dropna(subset=[sensitive])
    X, y = subject.split(frame, target, snapshot_ref)
    groups = frame.loc[X.index, sensitive]
    if groups.nunique() < 2:
        raise ValidationError(
            f"{sensitive!r} has a single group ({', '.join(map(str, pd.unique(groups)))}) in {snapshot_ref}: "
            "fairness compares groups.",
            "Choose a sensitive column with at least two groups, or a snapshot that has them.",
        )
    if groups.nunique() > MAX_GROUPS:
        raise ValidationError(f"{sensitive!r} has {groups.nunique()} distinct values; group metrics need a category.",
                              "Bin it into a few groups in a snapshot first.")  # fmt: skip
    positive = y.value_counts().sort_index().idxmax() if positive is None else _as_label(positive, y)
    predicted = subject.estimator.predict(X)
    table, parity, odds = group_metrics(y.to_numpy(), predicted, groups.to_numpy(), positive)
    if np.isnan(parity) or np.isnan(odds):
        raise ValidationError(
            f"Fairness of {subject.label} by {sensitive!r} cannot be measured on {snapshot_ref}: no group has both "
            f"rows of class {positive!r} and rows of other classes.",
            "Evaluate on a snapshot with true labels of every class in each group (--snapshot).",
        )
    positive = positive.item() if hasattr(positive, "item") else positive
    report = FairnessReport(subject.label, subject.run.run_id, snapshot_ref, sensitive, target, positive, table,
                            parity, odds)  # fmt: skip
    report.figures = {f"fairness/{safe_key(sensitive)}": _figure(report)}
    if out is not None:
        with out:
            out.metric("fairness.demographic_parity_difference", parity)
            out.metric("fairness.equalized_odds_difference", odds)
            for name, fig in report.figures.items():
                out.figure(name, fig)
            out.text("card/fairness.md", report.to_markdown())
    return report


def _as_label(value: Any, y: pd.Series) -> Any:
    """`--positive 1` arrives as text; match it to the target's type."""
    labels = list(pd.unique(y))
    if value in labels:
        return value
    for label in labels:
        if str(label) == str(value):
            return label
    raise ValidationError(f"Positive class {value!r} does not occur in the target.",
                          f"Classes: {', '.join(map(str, sorted(labels, key=str)))}.")  # fmt: skip


def _figure(report: FairnessReport) -> Any:
    import plotly.graph_objects as go

    names = report.groups["group"].astype(str)
    fig = go.Figure([go.Bar(name=metric, x=names, y=report.groups[metric])
                     for metric in ("selection_rate", "accuracy", "tpr", "fpr")])  # fmt: skip
    gaps = f"DPD {report.demographic_parity_difference:.3f}, EOD {report.equalized_odds_difference:.3f}"
    fig.update_layout(barmode="group", xaxis_title=report.sensitive, yaxis_title="rate",
                      title=f"Fairness of {report.subject} by {report.sensitive}: {gaps}")  # fmt: skip
    return fig


__all__ = ["FairnessReport", "fairness", "group_metrics"]
