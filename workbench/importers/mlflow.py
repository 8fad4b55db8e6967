"""`workbench import mlflow`: an MLflow tracking store's history, brought into the workspace.

Everything is read through MLflow's own client (`mlflow.MlflowClient(tracking_uri)`), so a
SQLite or other database store, an old `./mlruns` folder and a tracking server all work the same.
Experiments become experiments, runs become runs (`mlflow_runs`: params, every metric point with
its step and timestamp, tags, status, start and end), and registered scikit-learn model versions
become registry versions with their aliases (`mlflow_models`). Every imported run carries
provenance tags (`mlflow.run_id`, `mlflow.experiment_id`, `mlflow.tracking_uri`, `imported_from`,
`imported_at`).

Importing again is safe and cheap: a run is keyed by its MLflow run id and never imported twice,
so a re-import adds only runs that are new (or that were still running last time: runs that are
RUNNING or SCHEDULED in MLflow are left for a later import, once they end, since an imported run
is final). Model versions already converted are not loaded again. MLflow is optional
(`pip install 'workbench[mlflow]'`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

from workbench import audit
from workbench.catalog import connect, transaction
from workbench.errors import NotFoundError, WorkbenchError
from workbench.importers import mlflow_runs
from workbench.importers.mlflow_models import ModelImporter, _pages
from workbench.runs.events import now_iso
from workbench.runs.ingest import index_runs
from workbench.workspace import Workspace, current_workspace

INSTALL_HINT = "Install it: pip install 'workbench[mlflow]' (in a checkout: .venv/bin/pip install -e '.[mlflow]')."
#: MLflow settings used while importing, unless the environment sets them: a tracking server that
#: does not answer fails in seconds rather than after minutes of retries, and a `./mlruns` folder
#: (MLflow's file store, which MLflow 3 refuses to open by default) can be read; no progress bars.
_MLFLOW_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ALLOW_FILE_STORE": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@dataclass
class ImportReport:
    """What an import read and what it changed (counts in `counts()`, details in the lists)."""

    tracking_uri: str
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs_imported: list[str] = field(default_factory=list)  # Workbench run ids
    runs_skipped: list[dict[str, Any]] = field(default_factory=list)  # {mlflow_run_id, run_id, reason}: already
    # imported, or still running in MLflow
    metric_points: int = 0
    models: dict[str, Any] = field(default_factory=lambda: {"versions": [], "aliases": []})

    def counts(self) -> dict[str, int]:
        versions = self.models["versions"]
        already = sum(s["reason"] == "already imported" for s in self.runs_skipped)  # the rest wait (running)
        by_status = {s: sum(v["status"] == s for v in versions) for s in
                     ("converted", "already imported", "not converted", "referenced")}  # fmt: skip
        return {
            "experiments": len(self.experiments), "runs_imported": len(self.runs_imported),
            "runs_already_imported": already, "runs_skipped": len(self.runs_skipped) - already,
            "metric_points": self.metric_points,
            "model_versions": len(versions), "versions_converted": by_status["converted"],
            "versions_already_imported": by_status["already imported"],
            "versions_not_converted": by_status["not converted"], "versions_referenced": by_status["referenced"],
            "aliases_set": sum(a["status"] == "set" for a in self.models["aliases"]),
        }  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.tracking_uri, "counts": self.counts(), "experiments": self.experiments,
            "runs_imported": self.runs_imported, "runs_skipped": self.runs_skipped, "models": self.models,
        }  # fmt: skip


def import_mlflow(
    tracking_uri: str | None = None,
    experiments: list[str] | None = None,
    *,
    trust_models: bool = False,
    ws: Workspace | None = None,
) -> ImportReport:
    """Import the MLflow store at `tracking_uri` (default: MLflow's own default, e.g.
    `MLFLOW_TRACKING_URI`): the experiments named in `experiments` (default: every active one),
    their finished, failed and killed runs, and the registered models whose source runs are
    imported. `trust_models=True` also converts scikit-learn models saved with pickle or
    cloudpickle, which runs code from that store: only for stores you trust."""
    ws = ws or current_workspace()
    mlflow = _require_mlflow()
    with _mlflow_env():
        uri = tracking_uri or mlflow.get_tracking_uri()
        _check_local_store(uri)
        client = mlflow.MlflowClient(uri)
        shown = safe_uri(uri)
        errors = _error_types()
        chosen = _experiments(client, shown, experiments, errors)
        report = ImportReport(shown)
        source = mlflow_runs.Source(shown, now_iso())
        index_runs(ws)
        run_map = _imported_runs(ws)
        written: list[str] = []
        seen: list[str] = []  # MLflow run ids of the chosen experiments: only their models are converted
        try:
            for experiment in chosen:
                entry = _import_experiment(client, ws, experiment, source, run_map, report, written, seen)
                report.experiments.append(entry)
        except errors as exc:
            raise _store_error(shown, exc) from exc
        finally:
            if written:  # complete runs, whatever happened after them: indexed now
                index_runs(ws, written)
        in_scope = {mlflow_id: run_map[mlflow_id] for mlflow_id in seen if mlflow_id in run_map}
        models = ModelImporter(client, ws, in_scope, trust_models, {"tracking_uri": shown})
        try:
            models.run()
        except errors as exc:
            raise _store_error(shown, exc) from exc
        report.models = models.to_dict()
    with transaction(ws) as con:
        audit.record(con, "import.mlflow", f"mlflow:{shown}",
                     {**report.counts(), "experiments_read": [e["mlflow_name"] for e in report.experiments],
                      "trust_models": trust_models})  # fmt: skip
    return report


def _import_experiment(
    client: Any, ws: Workspace, experiment: Any, source: mlflow_runs.Source, run_map: dict[str, str],
    report: ImportReport, written: list[str], seen: list[str],
) -> dict[str, Any]:  # fmt: skip
    """Import one experiment's runs that are not in the workspace yet; each run is written whole."""
    from mlflow.entities import ViewType

    name = mlflow_runs.experiment_name(experiment.name)
    entry = {"mlflow_id": str(experiment.experiment_id), "mlflow_name": experiment.name, "experiment": name,
             "runs_imported": 0, "runs_skipped": 0}  # fmt: skip
    runs = list(_pages(lambda token: client.search_runs(
        [experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
        order_by=["attributes.start_time ASC"], page_token=token)))  # fmt: skip
    starts = {r.info.run_id: r.info.start_time or r.info.end_time or 0 for r in runs}
    for run in runs:
        info = run.info
        seen.append(info.run_id)
        run_id = mlflow_runs.workbench_run_id(info.run_id, starts[info.run_id])
        known = run_map.get(info.run_id) or (run_id if mlflow_runs.is_written(ws, run_id) else None)
        reason = None
        if known is not None:
            reason, run_id = "already imported", known
            run_map[info.run_id] = known
        elif info.status not in mlflow_runs.STATUSES:
            reason = f"{info.status} in MLflow: imported once it ends"
        if reason is not None:
            report.runs_skipped.append({"mlflow_run_id": info.run_id, "run_id": run_id, "reason": reason})
            entry["runs_skipped"] += 1
            continue
        histories = {key: client.get_metric_history(info.run_id, key) for key in run.data.metrics}
        events, lines = mlflow_runs.run_events(
            run, name, experiment.name, histories, source, _parent(run, run_map, starts)
        )
        mlflow_runs.write_run(ws, run_id, events, lines)
        written.append(run_id)
        run_map[info.run_id] = run_id
        report.runs_imported.append(run_id)
        report.metric_points += len(lines)
        entry["runs_imported"] += 1
    return entry


def _parent(run: Any, run_map: dict[str, str], starts: dict[str, int]) -> str | None:
    """The Workbench id of the run's MLflow parent (nested runs), if imported or being imported."""
    parent = run.data.tags.get("mlflow.parentRunId")
    if not parent:
        return None
    if parent in run_map:
        return run_map[parent]
    return mlflow_runs.workbench_run_id(parent, starts[parent]) if parent in starts else None


def _imported_runs(ws: Workspace) -> dict[str, str]:
    """MLflow run id -> Workbench run id of every run imported before (by its provenance tag)."""
    with connect(ws) as con:
        rows = con.execute("SELECT value, run_id FROM run_tags WHERE key = ?", [mlflow_runs.TAG_RUN_ID]).fetchall()
    return dict(rows)


def _experiments(client: Any, uri: str, names: list[str] | None,
                 errors: tuple[type[BaseException], ...]) -> list[Any]:  # fmt: skip
    """The experiments to import: those named, else every active one. Also the first request to the
    store, so an unreachable or unreadable store fails here, before anything is written."""
    from mlflow.entities import ViewType

    try:
        every = list(_pages(lambda token: client.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                                                    page_token=token)))  # fmt: skip
    except errors as exc:
        raise _store_error(uri, exc) from exc
    if not names:
        return every
    by_name = {e.name: e for e in every}
    missing = [n for n in names if n not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none"
        raise NotFoundError(f"No MLflow experiment named {', '.join(map(repr, missing))} at {uri}.",
                            f"Its experiments: {known}.")  # fmt: skip
    return [by_name[n] for n in dict.fromkeys(names)]


def _require_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise WorkbenchError("Importing from MLflow needs the mlflow package, which is not installed.",
                             INSTALL_HINT) from exc  # fmt: skip
    return mlflow


class _Unavailable(Exception):
    """Never raised: stands in for an error type of a package that is not installed."""


def _error_types() -> tuple[type[BaseException], ...]:
    """What MLflow's client raises for a store it cannot reach or read: its own exception (which
    wraps HTTP failures) and a database store's errors."""
    from mlflow.exceptions import MlflowException

    types: list[type[BaseException]] = [MlflowException]
    try:
        from sqlalchemy.exc import SQLAlchemyError

        types.append(SQLAlchemyError)
    except ImportError:
        types.append(_Unavailable)
    return tuple(types)


def _store_error(uri: str, exc: BaseException) -> WorkbenchError:
    message = str(getattr(exc, "message", None) or exc).strip().splitlines()[0][:500]
    return WorkbenchError(f"Cannot read the MLflow tracking store at {uri}: {message}",
                          "Check --tracking-uri (a server URL, sqlite:///path/to/mlflow.db or a ./mlruns folder) "
                          "and that the server is up.")  # fmt: skip


@contextmanager
def _mlflow_env() -> Iterator[None]:
    """MLflow's settings for the import (`_MLFLOW_ENV`, unless set) and its INFO logging silenced
    (lines about its own database set-up), both restored afterwards."""
    import logging

    added = {k: v for k, v in _MLFLOW_ENV.items() if k not in os.environ}
    os.environ.update(added)
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
        for key in added:
            os.environ.pop(key, None)


def safe_uri(uri: str) -> str:
    """The tracking URI without a user name or password (it is recorded in tags and the audit log)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _check_local_store(uri: str) -> None:
    """A local store must exist: MLflow's client would create an empty one at a mistyped path."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise NotFoundError(
                f"No MLflow database at {path or uri!r}.",
                "Give its path as sqlite:////absolute/path/mlflow.db or sqlite:///relative/path.db.",
            )
    elif parts.scheme in ("", "file") or len(parts.scheme) == 1:  # a path (or a Windows drive letter)
        path = url2pathname(parts.path) if parts.scheme == "file" else uri
        if not Path(path).is_dir():
            raise NotFoundError(
                f"No MLflow tracking folder at {path!r}.",
                "Pass --tracking-uri with a server URL, sqlite:///path/to/mlflow.db or a ./mlruns folder.",
            )
