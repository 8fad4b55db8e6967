"""Drift of live model inputs against the training snapshot: `workbench monitor NAME`.

The reference is the snapshot the model's run read (its lineage), restricted to the model's input
columns; the live data is what the server logged. Per numeric column: the population stability
index over ten quantile bins of the reference, and the two-sample Kolmogorov-Smirnov statistic
and p-value; per categorical column: PSI over categories. The prediction distribution is
compared the same way (live predictions vs the model's predictions on the reference). A column
is flagged when its PSI exceeds the threshold (0.2 is the usual "significant shift").

With a team server configured (and no `ws`), the report is computed by the server
(`GET /api/v1/models/{name}/monitor`), which has the prediction logs every remote model server
ships to it, and comes back as the same `DriftReport` (`DriftReport.from_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ValidationError
from workbench.models.registry import ModelVersion, get_version, load
from workbench.remote.dispatch import remote_capable
from workbench.serving.predlog import predictions_dir
from workbench.snapshots.store import load as load_snapshot
from workbench.workspace import Workspace, current_workspace

DEFAULT_THRESHOLD = 0.2
#: The columns of `DriftReport.table`, in order, with their dtypes.
TABLE_DTYPES = {"column": object, "kind": object, "psi": float, "ks": float, "p_value": float,
                "reference_mean": float, "live_mean": float, "drift": bool}  # fmt: skip
_EPSILON = 1e-4


def psi(reference: np.ndarray, live: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `live` against `reference` (numeric, quantile bins)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([reference.min() - 0.5, reference.max() + 0.5])
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(live, edges)[0] / len(live)
    return _psi_terms(expected, actual)


def categorical_psi(reference: pd.Series, live: pd.Series) -> float:
    categories = sorted(set(reference.astype(str)) | set(live.astype(str)))
    expected = reference.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0).to_numpy()
    actual = live.astype(str).value_counts(normalize=True).reindex(categories, fill_value=0).to_numpy()
    return _psi_terms(expected, actual)


def _psi_terms(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, _EPSILON, None)
    actual = np.clip(actual, _EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass
class DriftReport:
    model: str
    version: int | None
    reference: str
    live_rows: int
    threshold: float
    table: pd.DataFrame  # one row per column (+ "prediction"): kind, psi, ks, p_value, drift

    @property
    def drifted(self) -> list[str]:
        return self.table.loc[self.table["drift"], "column"].tolist()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftReport:
        """The report `to_dict` describes (a team server's answer), with the same table: columns, order, dtypes."""
        table = pd.DataFrame(data["columns"], columns=list(TABLE_DTYPES)).astype(TABLE_DTYPES)
        return cls(data["model"], data["version"], data["reference"], int(data["live_rows"]),
                   float(data["threshold"]), table)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "reference": self.reference, "live_rows": self.live_rows,
                "threshold": self.threshold, "drifted": self.drifted,
                "columns": self.table.replace({np.nan: None}).to_dict(orient="records")}  # fmt: skip

    def figure(self) -> Any:
        import plotly.graph_objects as go

        colors = ["crimson" if d else "steelblue" for d in self.table["drift"]]
        fig = go.Figure(go.Bar(x=self.table["column"], y=self.table["psi"], marker_color=colors))
        fig.add_hline(y=self.threshold, line_dash="dash", annotation_text=f"threshold {self.threshold}")
        fig.update_layout(title=f"Input drift of {self.model} vs {self.reference} ({self.live_rows} live rows)",
                          yaxis_title="PSI", xaxis_title="column")  # fmt: skip
        return fig

    def to_html(self, path: str) -> None:
        table = self.table.to_html(index=False, float_format=lambda v: f"{v:.4f}")
        body = self.figure().to_html(full_html=False, include_plotlyjs="inline")
        with open(path, "w") as fh:
            fh.write(f"<html><head><meta charset='utf-8'><title>Drift {self.model}</title></head><body>"
                     f"<h1>Drift report: {self.model}</h1>{body}{table}</body></html>")  # fmt: skip


def live_predictions(ws: Workspace, model: str, version: int | None = None, since: str | None = None) -> pd.DataFrame:
    """The logged inputs (one column each) plus `prediction`, `version`, `at` of a model: what it
    answered, so a shadow version's lines (`"shadow": true`, predictions nobody received) are left out."""
    import duckdb

    folder = predictions_dir(ws, model)
    files = sorted(str(p) for p in folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        return pd.DataFrame()
    con = duckdb.connect()
    try:
        frame = con.execute(
            """SELECT * FROM read_json_auto(?, format='newline_delimited', ignore_errors=true, union_by_name=true)""",
            [files],
        ).df()
    finally:
        con.close()
    if "shadow" in frame.columns:
        frame = frame[frame["shadow"].isna() | (frame["shadow"] != True)]  # noqa: E712  (NULL/false: answered)
    frame = frame[["at", "version", "input", "prediction"]]
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    if version is not None:
        frame = frame[frame["version"] == version]
    if since is not None:
        frame = frame[frame["at"] >= _timestamp(since)]
    inputs = pd.json_normalize(frame["input"].tolist()) if len(frame) else pd.DataFrame()
    inputs.index = frame.index
    return pd.concat([inputs, frame[["prediction", "version", "at"]]], axis=1)


def _timestamp(since: str) -> pd.Timestamp:
    """`since` as a UTC timestamp (naive times are UTC), else a ValidationError naming it."""
    try:
        stamp = pd.Timestamp(since)
    except ValueError:
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ValidationError(f"Invalid time {since!r} for --since.", "Give an ISO time, e.g. 2026-01-31 or "
                              "2026-01-31T12:00:00+00:00.")  # fmt: skip
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@remote_capable("drift_report")
def drift_report(
    ref: str, *, since: str | None = None, threshold: float = DEFAULT_THRESHOLD, ws: Workspace | None = None
) -> DriftReport:
    """Compare what the server saw for model `ref` with the data the model was trained on."""
    ws = ws or current_workspace()
    version = get_version(ref, ws)
    if not version.inputs:
        raise ValidationError(
            f"{version.ref} has no training snapshot in its lineage.",
            "Load training data with wb.load_snapshot() in the notebook so it is recorded.",
        )
    pinned = "@" in ref and ref.split("@", 1)[1].isdigit()
    live = live_predictions(ws, version.name, version.version if pinned else None, since)
    if live.empty:
        raise ValidationError(f"No logged predictions for {version.name} yet.",
                              f"Send requests to 'workbench serve {ref}' first.")  # fmt: skip
    reference = load_snapshot(version.inputs[0], ws=ws)
    return DriftReport(version.name, version.version if pinned else None, version.inputs[0], len(live), threshold,
                       _drift_table(version, reference, live, threshold, ws))  # fmt: skip


def _drift_table(version: ModelVersion, reference: pd.DataFrame, live: pd.DataFrame, threshold: float,
                 ws: Workspace) -> pd.DataFrame:  # fmt: skip
    from scipy.stats import ks_2samp

    rows = []
    columns = [c["name"] for c in version.schema or [] if c["name"] in reference.columns and c["name"] in live.columns]
    for column in columns:
        ref_values, live_values = reference[column].dropna(), live[column].dropna()
        if pd.api.types.is_numeric_dtype(ref_values) and pd.api.types.is_numeric_dtype(live_values):
            ks = ks_2samp(ref_values.to_numpy(float), live_values.to_numpy(float))
            ref_numbers, live_numbers = ref_values.to_numpy(float), live_values.to_numpy(float)
            rows.append({"column": column, "kind": "numeric", "psi": psi(ref_numbers, live_numbers),
                         "ks": float(ks.statistic), "p_value": float(ks.pvalue),
                         "reference_mean": float(ref_values.mean()),
                         "live_mean": float(live_values.mean())})  # fmt: skip
        else:
            rows.append({"column": column, "kind": "categorical", "psi": categorical_psi(ref_values, live_values),
                         "ks": np.nan, "p_value": np.nan, "reference_mean": np.nan, "live_mean": np.nan})  # fmt: skip
    expected = reference_predictions(version, reference[columns], ws)
    rows.append({"column": "prediction", "kind": "prediction", "psi": prediction_psi(expected, live["prediction"]),
                 "ks": np.nan, "p_value": np.nan, "reference_mean": np.nan, "live_mean": np.nan})  # fmt: skip
    table = pd.DataFrame(rows)
    table["drift"] = table["psi"] > threshold
    return table


def reference_predictions(version: ModelVersion, reference: pd.DataFrame, ws: Workspace) -> pd.Series:
    """What `version` predicts for the rows of `reference` (its training data, restricted to its
    input columns): the distribution live predictions are compared with."""
    estimator, _ = load(version.ref, ws)
    return pd.Series(estimator.predict(reference))


def prediction_psi(expected: pd.Series, live: pd.Series) -> float:
    """PSI of live predictions against `expected` ones: over classes when the model predicts
    classes (integer, boolean or text labels), else over quantile bins of the reference."""
    if expected.dtype.kind in "iubO":  # classes
        return categorical_psi(expected, live)
    return psi(expected.to_numpy(float), live.to_numpy(float))
