"""The runs part of `RemoteStore` (see `remote.store`): `wb.runs()`, `get_run`, metric histories,
experiments, artifacts and executed notebooks, read from a team server.

Tables travel column by column (`GET /runs?format=columns`, the JupyterLab table's format) and are
rebuilt with the dtypes the local query gives: the base columns as the catalog types them, every
`metrics.*` column float64, and params, tags and inputs from lists of Python values, so pandas
infers them exactly as it does for a local table. Artifacts and executed notebooks are files of the
server's content-addressed store, downloaded once into the local cache by sha256 (`downloads`).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.remote.client import Client
from workbench.remote.config import Remote

if TYPE_CHECKING:
    import pandas as pd

    from workbench.runs.store import Run


class RunsStore:
    """Runs read from a team server."""

    remote: Remote
    client: Client

    # -- tables

    def search_runs(self, experiment: str | list[str] | None = None, filter: str | None = None,
                    order_by: str | list[str] | None = None, limit: int | None = None, status: str | None = None,
                    include_min_max: bool = False) -> pd.DataFrame:  # fmt: skip
        """`runs.query.runs` on the server."""
        from workbench.httpapi import MAX_RUNS_LIMIT
        from workbench.runs.query import check_limit

        check_limit(limit)
        most = MAX_RUNS_LIMIT if limit is None else min(limit, MAX_RUNS_LIMIT)
        arguments = {"experiment": _listed(experiment, "experiment"), "filter": filter,
                     "order_by": _listed(order_by, "order_by"), "limit": most, "status": status,
                     "include_min_max": include_min_max}  # fmt: skip
        frame = self._runs_frame(arguments)
        if (limit is None or limit > MAX_RUNS_LIMIT) and len(frame) == MAX_RUNS_LIMIT:
            warnings.warn(f"The server answers at most {MAX_RUNS_LIMIT:,} runs a query; narrow it with filter= or "
                          "experiment= to see the others.", stacklevel=3)  # fmt: skip
        return frame

    def runs_by_id(self, run_ids: Sequence[str], include_min_max: bool = False) -> pd.DataFrame:
        """`runs.query.runs_by_id` on the server."""
        from workbench.runs.query import _checked_ids

        return self._runs_frame({"run_ids": _checked_ids(run_ids), "include_min_max": include_min_max})

    def runs_answer_json(self, arguments: dict[str, Any], shape: str) -> str:
        """The server's JSON answer to a runs request, as it came (the lab's runs table passes it on)."""
        return self.client.request("GET", "/runs", params=_query(arguments, shape)).text

    def experiments_summary(self) -> list[dict[str, Any]]:
        """`runs.query.experiments_summary` on the server (`last_run_at` as a datetime)."""
        from datetime import datetime

        rows = self.client.get("/experiments")
        for row in rows:
            row["last_run_at"] = datetime.fromisoformat(row["last_run_at"]) if row.get("last_run_at") else None
        return rows

    def _runs_frame(self, arguments: dict[str, Any]) -> pd.DataFrame:
        answer = json.loads(self.client.request("GET", "/runs", params=_query(arguments, "columns")).content)
        return runs_frame(answer)

    # -- one run

    def get_run(self, run_id: str) -> Run:
        """`runs.store.get_run` on the server."""
        from workbench.remote.runs import run_from_dict
        from workbench.runs.ids import check_run_id

        return run_from_dict(self.client.get(f"/runs/{check_run_id(run_id)}"))

    def cancel_run(self, run_id: str) -> bool:
        """`runs.launch.cancel_run` on the server: it tells the client executing the run (False: had ended)."""
        from workbench.runs.ids import check_run_id

        answer = self.client.request("POST", f"/runs/{check_run_id(run_id)}/cancel", idempotent=True).json()
        return bool(answer["cancelled"])

    def metric_history(self, run_ids: str | list[str], key: str) -> pd.DataFrame:
        """`runs.store.metric_history` on the server: columns run_id, step, value (dtypes as DuckDB gives
        them locally: run_id str, or object when there are no points)."""
        import pandas as pd

        from workbench.runs.ids import check_run_id

        ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
        for run_id in ids:
            check_run_id(run_id)
        data = {"run_id": [], "step": [], "value": []}
        if ids:
            data = self.client.get("/metric-history", params=[("key", key), *(("run_id", i) for i in ids)])
        return pd.DataFrame({"run_id": pd.Series(data["run_id"], dtype="str" if data["run_id"] else object),
                             "step": pd.Series(data["step"], dtype="int64"),
                             "value": pd.Series([float("nan") if v is None else v for v in data["value"]],
                                                dtype="float64")})  # fmt: skip

    def metric_point_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """`runs.query.metric_point_counts` on the server."""
        from workbench.runs.query import _checked_ids

        ids = _checked_ids(run_ids)
        return self.client.get("/metric-counts", params=[("run_id", i) for i in ids]) if ids else {}

    # -- files

    def _blob(self, blob_id: str, label: str) -> Path:
        from workbench import blobs
        from workbench.remote.downloads import cached_download

        return cached_download(self.client, f"/blobs/{blob_id}", "blobs", blobs.expected_sha256(blob_id), label)

    def _run(self, run: Run | str) -> Run:
        from workbench.runs.store import Run

        return run if isinstance(run, Run) else self.get_run(run)

    def artifact_path(self, run: Run | str, name: str) -> Path:
        """`runs.store.artifact_path`: the verified local copy of the artifact (downloaded once)."""
        record = self._run(run)
        return self._blob(record.artifact(name).blob, f"artifact {name!r} of run {record.run_id}")

    def load_artifact(self, run: Run | str, name: str) -> Any:
        """`runs.store.load_artifact` on the server's copy (models: skops' trusted types, never pickle)."""
        from workbench.runs.store import artifact_object

        record = self._run(run)
        found = record.artifact(name)
        return artifact_object(found, self._blob(found.blob, f"artifact {name!r} of run {record.run_id}").read_bytes())

    def executed_notebook_path(self, run: Run | str) -> Path:
        """`runs.store.executed_notebook_path`: the verified local copy of the executed notebook."""
        from workbench.runs.store import _output_blob

        record = self._run(run)
        return self._blob(_output_blob(record), f"executed notebook of run {record.run_id}")

    def read_executed_notebook(self, run: Run | str) -> bytes:
        """`runs.store.read_executed_notebook` on the server's copy."""
        return self.executed_notebook_path(run).read_bytes()


def _query(arguments: dict[str, Any], shape: str) -> list[tuple[str, Any]]:
    """The query parameters of `GET /runs` for the keyword arguments of `runs()` / `runs_by_id()` (as
    `httpapi.runs_request` reads them back): repeated keys for lists, `run_id` per id, `min_max`."""
    params: list[tuple[str, Any]] = [("format", shape)]
    for key, value in arguments.items():
        if key == "run_ids":
            params += [("run_id", run_id) for run_id in value]
        elif key == "include_min_max":
            params += [("min_max", "true")] if value else []
        elif value is not None:
            params += [(key, item) for item in (value if isinstance(value, list) else [value])]
    return params


def _listed(value: str | list[str] | None, name: str) -> list[str]:
    from workbench.errors import ValidationError

    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
        raise ValidationError(f"{name} must be a string or a list of strings.")
    return list(items)


def runs_frame(answer: dict[str, Any]) -> pd.DataFrame:
    """The DataFrame `runs()` gives, from the server's column-by-column answer (see the module doc)."""
    import pandas as pd

    from workbench.runs.query import BASE_COLUMNS, DETAIL_COLUMNS

    names = list(answer["columns"])[: len(answer["columns"]) - len(DETAIL_COLUMNS)]
    if not answer.get("rows"):
        return pd.DataFrame(columns=[*BASE_COLUMNS, "inputs"])
    columns: dict[str, Any] = {}
    for name, values in zip(names, answer["data"], strict=False):
        if name == "created_at":
            columns[name] = (pd.to_datetime(pd.Series(values), utc=True, format="ISO8601")
                             .dt.tz_convert("Etc/UTC").astype("datetime64[us, Etc/UTC]"))
        elif name == "duration_s" or name.startswith("metrics."):
            columns[name] = pd.Series([float("nan") if v is None else v for v in values], dtype="float64")
        else:
            columns[name] = values
    return pd.DataFrame(columns)
