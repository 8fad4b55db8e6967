"""Helpers for registry and serving tests: real runs with real skops models, without kernels."""

from __future__ import annotations

import workbench as wb


def train_run(C: float = 1.0, features: list[str] | None = None, snapshot: str = "wine") -> str:
    """An interactive run in this process that read `snapshot` and logged a LogisticRegression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = wb.load_snapshot(snapshot)
    X = data[features or ["alcohol", "malic_acid", "color_intensity", "proline"]]
    y = data["target"]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500)).fit(X, y)
    wb.log_param("C", C)
    wb.log_metric("accuracy", float(model.score(X, y)))
    wb.log_model(model, "wine", sample=X.head())
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id
