"""Helpers for registry and serving tests: real runs with real skops models, without kernels."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import workbench as wb
from workbench.workspace import Workspace, init_workspace, use_workspace


@contextmanager
def module_workspace(root: Path) -> Iterator[Workspace]:
    """A fresh workspace in `root` that is this process's current one (and the CLI's, through
    WORKBENCH_HOME and the working folder) while the block runs: a module-scoped fixture's world."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_HOME", str(root / ".workbench"))
        patch.chdir(root)
        ws = init_workspace(root / ".workbench")
        use_workspace(ws)
        try:
            yield ws
        finally:
            use_workspace(None)


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
