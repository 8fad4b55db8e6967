"""Governance: explanations, fairness, pipelines as code, retraining triggers and auto-rollback.

This package module holds the plumbing the analyses share: turning "a run id or a model ref"
into the model, its features and its evaluation data (`resolve`), and adding results to a run
that has already finished (`RunAppender`). Adding to the finished run (rather than creating a
new one) keeps an explanation next to the model it explains, which is what the model card and
the promotion gates read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from workbench import audit, markdown
from workbench.catalog import transaction
from workbench.errors import InvalidNameError, NotFoundError, ValidationError
from workbench.runs import artifacts
from workbench.runs.events import now_iso
from workbench.runs.ids import check_run_id
from workbench.runs.ingest import ingest_runs, writer_for
from workbench.runs.store import Run, get_run, load_artifact
from workbench.workspace import Workspace, current_workspace

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def safe_key(text: object) -> str:
    """A column or group value made safe for metric keys and artifact names (`od280/od315` -> `od280_od315`)."""
    cleaned = _UNSAFE.sub("_", str(text)).strip("_.-")
    return cleaned or "_"


@dataclass
class Subject:
    """What an analysis looks at: a fitted model, the run that produced it and its features."""

    run: Run
    estimator: Any
    features: list[str]
    training_data: list[str]
    label: str  # how to call it in messages and cards: a model ref or a run id

    def evaluation_frame(self, snapshot: str | None, ws: Workspace) -> tuple[str, pd.DataFrame]:
        """The snapshot to evaluate on (given, else the first training snapshot) and its data."""
        from workbench.snapshots.store import get, load

        ref = snapshot or (self.training_data[0] if self.training_data else None)
        if ref is None:
            raise ValidationError(
                f"{self.label} has no training snapshot in its lineage.",
                "Pass the evaluation data with --snapshot NAME.",
            )
        snap = get(ref, ws)
        return snap.ref, load(snap.ref, ws)

    def split(self, frame: pd.DataFrame, target: str, snapshot: str) -> tuple[pd.DataFrame, pd.Series]:
        """Features (the model's input schema, in order) and the target column of `frame`."""
        missing = [c for c in [*self.features, target] if c not in frame.columns]
        if missing:
            raise ValidationError(
                f"Snapshot {snapshot} lacks column(s) {', '.join(missing)} needed to evaluate {self.label}.",
                "Pass another --snapshot, or the right --target.",
            )
        rows = frame.dropna(subset=[*self.features, target])
        if rows.empty:
            raise ValidationError(f"Snapshot {snapshot} has no complete rows to evaluate {self.label} on.")
        self._check_labels(rows[target], target)
        return rows[self.features], rows[target]

    def _check_labels(self, y: pd.Series, target: str) -> None:
        """A classifier judged on labels it cannot predict scores 0 everywhere, which reads as
        "no disparity" or "no important feature": refuse instead of answering wrongly."""
        classes = getattr(self.estimator, "classes_", None)
        if classes is None:
            return
        known = list(classes)
        unknown = [v for v in pd.unique(y)[:1000] if not any(_equal(v, c) for c in known)]
        if unknown:
            shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
            raise ValidationError(
                f"Column {target!r} holds labels {self.label} never predicts ({shown}); "
                f"its classes are {', '.join(map(repr, known[:10]))}.",
                "Pass --target with the column that holds the true labels the model was trained on.",
            )


def _equal(value: Any, label: Any) -> bool:
    """Label equality as scikit-learn's metrics see it (0.0 matches 0; "0" does not)."""
    try:
        return bool(value == label)
    except (TypeError, ValueError):
        return False


def _is_run_id(text: str) -> bool:
    try:
        check_run_id(text)
    except InvalidNameError:
        return False
    return True


def resolve(ref: str, ws: Workspace | None = None) -> Subject:
    """A run id (its model artifact) or a model ref (`wine`, `wine@3`, `wine@production`)."""
    ws = ws or current_workspace()
    if not isinstance(ref, str) or not ref:
        raise ValidationError("Give a run id or a model reference like wine@production.")
    if _is_run_id(ref):
        from workbench.models.registry import model_artifact

        run = get_run(ref, ws)
        artifact = model_artifact(run, choose_hint="Promote one and pass NAME@VERSION.")
        estimator = load_artifact(run, artifact.name, ws)
        schema = (artifact.meta or {}).get("schema")
        subject = Subject(run, estimator, [], list(run.inputs), f"run {ref}")
    else:
        from workbench.models.registry import load

        estimator, version = load(ref, ws)
        try:
            run = get_run(version.run_id, ws)
        except NotFoundError as exc:
            raise NotFoundError(f"The run behind {version.ref} ({version.run_id}) no longer exists.") from exc
        schema = version.schema
        subject = Subject(run, estimator, [], list(version.inputs), version.ref)
    if not schema:
        raise ValidationError(
            f"The model of {subject.label} has no input schema.", "Log it with wb.log_model(model, name, sample=X)."
        )
    subject.features = [column["name"] for column in schema]
    return subject


class RunAppender:
    """Adds metrics and artifacts to an existing (usually finished) run, then re-indexes it.

    Runs are event files folded into the catalog; the fold keeps reading after the `end` event,
    so appending `metric` and `artifact` events and ingesting is all it takes. Use as a context
    manager: events are held until the block ends and written only if it ends without error, so
    a failed analysis never leaves half its results on the run.

    Metrics added this way can decide promotion gates, so the block's result is audited
    (`<action>` on `run:<id>` with the metrics and artifacts) in the transaction that indexes it.
    Artifacts are stored and described by `workbench.runs.artifacts`, exactly as `wb.log_text` /
    `wb.log_figure` store them, so a card or the extension cannot tell the two apart.
    """

    def __init__(self, ws: Workspace, run_id: str, action: str) -> None:
        self.ws = ws
        self.run_id = run_id
        self.action = action
        self._events: list[tuple[str, dict[str, Any]]] = []

    def metric(self, key: str, value: float) -> None:
        self._events.append(("metric", {"key": key, "value": float(value), "step": None, "at": now_iso()}))

    def _hold(self, event: str, /, **fields: Any) -> None:
        """Where `artifacts` records an event: held until the block succeeds."""
        self._events.append((event, fields))

    def figure(self, name: str, fig: Any) -> str:
        return artifacts.write_figure(self.ws, self._hold, name, fig)

    def text(self, name: str, text: str) -> str:
        return artifacts.write_text(self.ws, self._hold, name, text)

    def __enter__(self) -> RunAppender:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._events:
            return
        writer = writer_for(self.ws, self.run_id)
        for event, fields in self._events:
            writer.emit(event, **fields)
        writer.close()
        details = {
            "metrics": {f["key"]: f["value"] for e, f in self._events if e == "metric"},
            "artifacts": [f["name"] for e, f in self._events if e == "artifact"],
        }
        with transaction(self.ws) as con:
            ingest_runs(self.ws, [self.run_id])
            audit.record(con, self.action, f"run:{self.run_id}", details)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A small DataFrame as a Markdown table; cells are escaped (group labels are user data)."""

    def cell(value: Any) -> Any:
        if isinstance(value, float):
            return "n/a" if value != value else f"{value:.{digits}g}"
        return value

    return markdown.table(list(frame.columns), [[cell(v) for v in row] for row in frame.itertuples(index=False)])


__all__ = ["RunAppender", "Subject", "markdown_table", "resolve", "safe_key"]
