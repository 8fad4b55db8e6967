"""Governance: explanations, fairness, pipelines as code, retraining triggers and auto-rollback.

This package module holds the plumbing the analyses share: turning "a run id or a model ref"
into the model, its features and its evaluation data (`resolve`), and adding results to a run
that has already finished (`RunAppender`). Adding to the finished run (rather than creating a
new one) keeps an explanation next to the model it explains, which is what the model card and
the promotion gates read.

With a team server configured and no `ws` given, everything is read through the library's
`@remote_capable` functions (the run, its model, the snapshot), so an analysis on a client judges
exactly what the server holds; its results are added to the server's run (`run_appender` picks
`ServerRunAppender`), never to a workspace folder on the client.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workbench import audit, markdown
from workbench.catalog import transaction
from workbench.errors import InvalidNameError, NotFoundError, ValidationError
from workbench.runs import artifacts
from workbench.runs.events import now_iso
from workbench.runs.ids import check_run_id
from workbench.runs.ingest import FINAL_STATUSES, ingest_runs, writer_for
from workbench.runs.store import Run, get_run, load_artifact
from workbench.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    from workbench.remote.store import RemoteStore

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

    def evaluation_frame(self, snapshot: str | None, ws: Workspace | None) -> tuple[str, pd.DataFrame]:
        """The snapshot to evaluate on (given, else the first training snapshot) and its data
        (`ws` None: the team server's, when one is configured)."""
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
    """A run id (its model artifact) or a model ref (`wine`, `wine@3`, `wine@production`).

    `ws` is passed on unchanged: None reads from the team server when one is configured (every
    function used here is `@remote_capable`), else from the current workspace."""
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


class ServerRunAppender(RunAppender):
    """A `RunAppender` for a run on a team server: the held events are sent to the server's copy of
    the run (`POST /runs/{id}/events` at the size the server has, after the blobs they name), as a
    client ships any run, so the server checks them and indexes the run as usual.

    The server's rules apply: logging needs the editor role, and only the run's creator (or a
    maintainer) may add to it; it must have ended (a run still being logged is its owner's client's
    to send). The role and the status are checked when the appender is made, before the analysis
    runs. The server records the events on the run; it has no audit entry for them (unlike a
    workspace folder's `<action>` entry). Blobs are written to a private temporary folder, uploaded
    and deleted: nothing is left on the client.
    """

    def __init__(self, store: RemoteStore, run: Run, action: str) -> None:
        if run.status not in FINAL_STATUSES:
            raise ValidationError(f"Run {run.run_id} is {run.status} on {store.remote.url}: results can be added "
                                  "to it once it has ended.",
                                  "Wait until it ends, or pass log=False (--no-log) to only see them.")  # fmt: skip
        super().__init__(Workspace(Path(".")), run.run_id, action)  # the real folder is made by __enter__
        self.client = store.client
        self._offset()  # the role check, before any work
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def _offset(self) -> int:
        """How much of the run's event file the server has (where appended lines go)."""
        from workbench.remote.client import PermissionDeniedError

        try:
            return int(self.client.get(f"/runs/{self.run_id}/events/offset")["size"])
        except PermissionDeniedError as exc:
            hint = "Storing results with a run needs the editor role; pass log=False (--no-log) to only see them."
            raise PermissionDeniedError(exc.message, hint, exc.status, exc.body) from None

    def __enter__(self) -> ServerRunAppender:
        self._scratch = tempfile.TemporaryDirectory(prefix="workbench-append-")
        self.ws = Workspace(Path(self._scratch.name))
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if exc_type is None and self._events:
                self._send()
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()

    def _send(self) -> None:
        from workbench import blobs
        from workbench.remote.client import ConflictError
        from workbench.remote.sender import blobs_named

        # the held fields are plain JSON values (floats, names, blob ids), as EventWriter.emit writes them
        lines = [json.dumps({"t": event, **fields}, allow_nan=True) for event, fields in self._events]
        for blob_id in blobs_named(lines):
            self.client.request("PUT", f"/blobs/{blob_id}", content=blobs.read_verified(self.ws, blob_id),
                                headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        chunk = "".join(line + "\n" for line in lines)
        for attempt in range(2):  # another client may append in between: once more at the new end
            try:
                self.client.request("POST", f"/runs/{self.run_id}/events", idempotent=True,
                                    json={"offset": self._offset(), "lines": chunk})  # fmt: skip
                return
            except ConflictError:
                if attempt:
                    raise


def run_appender(ws: Workspace | None, run: Run, action: str) -> RunAppender:
    """Where an analysis adds its results to `run`: the workspace folder `ws`; with `ws` None, the team
    server it was read from (when one is configured, as `remote.dispatch` decides), else the current
    workspace. Made before the analysis, so a refusal (role, run still active) costs nothing."""
    if ws is None:
        from workbench.remote.dispatch import remote_store

        store = remote_store()
        if store is not None:
            return ServerRunAppender(store, run, action)
        ws = current_workspace()
    return RunAppender(ws, run.run_id, action)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A small DataFrame as a Markdown table; cells are escaped (group labels are user data)."""

    def cell(value: Any) -> Any:
        if isinstance(value, float):
            return "n/a" if value != value else f"{value:.{digits}g}"
        return value

    return markdown.table(list(frame.columns), [[cell(v) for v in row] for row in frame.itertuples(index=False)])


__all__ = ["RunAppender", "ServerRunAppender", "Subject", "markdown_table", "resolve", "run_appender", "safe_key"]
