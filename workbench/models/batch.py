"""Batch scoring: a registered model over a snapshot (or a DataFrame), streamed through DuckDB.

`wb.predict("wine-classifier@production", "wine@3")` and `workbench predict`: DuckDB reads only
the columns needed from the snapshot's Parquet file and hands them over as Arrow record batches of
`chunk_rows` rows, so a snapshot larger than memory is never loaded whole. Each chunk is checked
against the model's input schema by the model server's own `serving.inputs.conform` (the same
rules and messages, row numbers counting through the whole table) and predicted by the server's
`Predictor` (one numpy array where that provably changes nothing, else a DataFrame). The output
(the key columns asked for, `prediction`, and `proba_<class>` columns with `proba=True`) goes to a
Parquet file in the scratch folder that is registered as a snapshot once every chunk is done
(`into=`), or into the DataFrame returned. A failure on any chunk registers and logs nothing.

The model gets only its input columns; the data's other columns (an id, the label) are not an
error, as they would be in a request: a snapshot to score usually has them, and they are what the
output carries along (`columns=`, by default every column of the data).

Lineage of a result snapshot: the catalog's `source` of a snapshot says where its rows came from;
for a scored one it is `predict: <model>@<version> on <input>`, and the audit entry
(`model.batch_scored`) has the same facts as fields.

With `log=True` every row is also written to the model's prediction log (`models.batch_log`) in the
served lines' format: one request id `batch-<hex>` for the job, `row` = the row in the table,
`"batch": true`; the output gets `request_id` and `row` columns, so outcomes can be reported from
it (`wb.log_outcomes(scored, row_column="row")`). The lines go to a file of their own that appears
(renamed from a name no reader globs) only once scoring succeeded, so drift reports and, with
outcomes, live quality cover batch use.

With a team server configured (and no `ws`), the model and the snapshot's file come through the
client's download cache and a result snapshot is uploaded; the scoring itself runs here.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench import audit
from workbench.errors import NotFoundError, ValidationError, WorkbenchError
from workbench.models.batch_log import BatchLog
from workbench.names import validate_name
from workbench.remote.dispatch import remote_store
from workbench.serving.inputs import InputError, conform
from workbench.serving.models import LoadedModel, load_version
from workbench.snapshots.engine import engine, quote_ident
from workbench.workspace import Workspace, current_workspace

#: Rows per chunk: large enough that per-call overheads (DuckDB, the schema check, the estimator's
#: own checks) vanish, small enough that a chunk of a few dozen columns stays a few tens of MB.
CHUNK_ROWS = 65_536  # measured: 131,072 and more were slower
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
#: The columns a logged job's output adds before `prediction`: what outcomes are reported by.
LOG_KEYS = ("request_id", "row")
#: How many of the model's input columns a schema error's hint lists.
_LISTED = 10

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Input:
    """The rows to score: a relation of the scratch engine, what to call it, its columns and rows."""

    relation: str
    label: str
    ref: str | None  # the snapshot's `name@version`; None for a DataFrame
    columns: list[str]
    rows: int


def predict(
    model_ref: str, data: Any, *, into: str | None = None, columns: list[str] | None = None, proba: bool = False,
    log: bool = False, ws: Workspace | None = None, chunk_rows: int = CHUNK_ROWS, progress: Progress | None = None,
) -> pd.DataFrame | Any:  # fmt: skip
    """Score `data` (a snapshot ref such as "wine@3", or a DataFrame) with model `model_ref`
    ("name@alias", "name@3" or "name" for the latest version).

    Returns a DataFrame (the `columns` of the data, default all; `prediction`; `proba_<class>` per
    class with `proba=True`), or with `into` the `Snapshot` it was registered as (identical results
    are the same version); the DataFrame's `attrs` name the model version and input scored. `log=True`
    also writes every row to the model's prediction log, and adds the `request_id` and `row`
    columns outcomes are reported by.
    `progress(done, total)` is called after each chunk of `chunk_rows` rows.
    """
    team = ws is None and remote_store() is not None
    ws = None if team else (ws or current_workspace())
    if into is not None:
        validate_name(into, "snapshot name")
    if team and log:
        raise WorkbenchError("Batch predictions cannot be logged to a team server's prediction log yet.",
                             "Score without --log, or with --home pointing at a workspace folder.")  # fmt: skip
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValidationError(f"chunk_rows must be a positive whole number, got {chunk_rows!r}.")
    model = load_version(ws, model_ref)  # type: ignore[arg-type]  (None: the team server's, see dispatch)
    classes = _classes(model) if proba else []
    with engine(ws) as con, _scratch(ws) as scratch:
        source = _open(con, data, ws)
        features = _features(model, source)
        keys = _keys(columns, source, classes, log)
        selected = ", ".join(quote_ident(c) for c in dict.fromkeys([*keys, *features]))
        relation = con.sql(f"SELECT {selected} FROM {source.relation}")
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader  # DuckDB 2 / 1.x
        reader = reader(chunk_rows)
        target = scratch / "scored.parquet" if into is not None else None
        batch_log = BatchLog(ws, model.version, model.predictor) if log and ws is not None else None
        try:
            parts = _score(reader, model, source, features, keys, classes, target, batch_log, progress)
            result = _register(into, target, model, source, ws) if target is not None else _frame(parts)
        except BaseException:
            if batch_log is not None:
                batch_log.discard()
            raise
        if batch_log is not None:
            batch_log.commit()  # the log's lines appear only with the result they describe
        if target is None:
            result.attrs.update(model=model.version.ref, input=source.ref or source.label,
                                request_id=batch_log.request_id if batch_log else None)  # fmt: skip
    if ws is not None and (into is not None or log):
        _audit(ws, model, source, result if into is not None else None, keys, proba, batch_log)
    return result


def _classes(model: LoadedModel) -> list[str]:
    classes = model.predictor.classes
    if classes is None:
        raise ValidationError(f"{model.version.ref} gives no class probabilities (a regressor, or a classifier "
                              "without predict_proba).", "Score without --proba.")  # fmt: skip
    return classes


@contextmanager
def _scratch(ws: Workspace | None) -> Iterator[Path]:
    """A private folder for the result file: the workspace's scratch folder (same disk as the blob
    store), or a temporary one with a team server. Removed, with whatever is in it, afterwards."""
    if ws is None:
        with tempfile.TemporaryDirectory(prefix="workbench-predict-") as folder:
            yield Path(folder)
        return
    from workbench import blobs

    with blobs.temp_path(ws) as folder:
        folder.mkdir()
        yield folder


def _open(con: Any, data: Any, ws: Workspace | None) -> _Input:
    """The relation the rows are read from: a snapshot's checked Parquet file, or a DataFrame."""
    from workbench.snapshots.engine import quote_literal
    from workbench.snapshots.sources import relation_sql, source_from
    from workbench.snapshots.store import get

    if isinstance(data, pd.DataFrame):
        relation = f"({relation_sql(con, source_from(data))})"
        label, ref = "the DataFrame", None
    elif isinstance(data, str):
        snap = get(data, ws)
        relation = f"read_parquet({quote_literal(str(_data_file(snap, ws)))})"
        label = ref = snap.ref
    else:
        raise ValidationError(f"Cannot score {type(data).__name__}.",
                              'Pass a snapshot reference such as "wine@3", or a pandas DataFrame.')  # fmt: skip
    names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    rows = con.execute(f"SELECT count(*) FROM {relation}").fetchall()[0][0]
    if rows == 0:
        raise ValidationError(f"Cannot score {label}: it has no rows.")
    return _Input(relation, label, ref, names, int(rows))


def _data_file(snap: Any, ws: Workspace | None) -> Path:
    """The snapshot's Parquet file, checked against its hash: in the workspace, or downloaded once
    into the client's cache from the team server."""
    if ws is None:
        return remote_store()._data_file(snap)  # type: ignore[union-attr]
    from workbench.snapshots.store import data_path

    return data_path(snap, ws)


def _features(model: LoadedModel, source: _Input) -> list[str]:
    """The model's input columns, which the data must have: the schema's (a missing one is the
    server's 422 message), else the names the estimator was fitted on, else every column."""
    schema = model.schema
    if schema:
        names = [c["name"] for c in schema]
        missing = [n for n in names if n not in source.columns]
        if missing:
            from workbench.serving.inputs import mismatch

            raise _schema_error(mismatch(missing, [], schema), model, source)
        return names
    fitted = getattr(model.estimator, "feature_names_in_", None)
    if fitted is None:
        return list(source.columns)
    names = [str(n) for n in fitted]
    missing = [n for n in names if n not in source.columns]
    if missing:
        raise ValidationError(f"Cannot score {source.label} with {model.version.ref}: it lacks columns the model "
                              f"was fitted on: {', '.join(missing[:_LISTED])}.",
                              "Score data with those columns.")  # fmt: skip
    return names


def _keys(columns: list[str] | None, source: _Input, classes: list[str], log: bool) -> list[str]:
    """The data's columns to carry into the output (default all), checked not to clash with it."""
    keys = list(source.columns) if columns is None else list(dict.fromkeys(columns))
    unknown = [c for c in keys if c not in source.columns]
    if unknown:
        raise NotFoundError(f"Cannot score {source.label}: it has no column(s) {', '.join(unknown)}.",
                            f"Its columns are: {', '.join(source.columns)}.")  # fmt: skip
    outputs = [*(LOG_KEYS if log else ()), PREDICTION, *(PROBA_PREFIX + c for c in classes)]
    clash = [c for c in keys if c in outputs]
    if clash:
        raise ValidationError(f"Cannot score {source.label}: its column {clash[0]!r} has the name of a column "
                              "the output adds.", "Leave it out with --columns (columns=[...]).")  # fmt: skip
    return keys


def _schema_error(error: InputError, model: LoadedModel, source: _Input) -> ValidationError:
    """The server's 422 message as a `ValidationError`, with the columns the model expects."""
    schema = model.schema or []
    expected = ", ".join(f"{c['name']} ({c['dtype']})" for c in schema[:_LISTED])
    more = f" and {len(schema) - _LISTED} more" if len(schema) > _LISTED else ""
    return ValidationError(f"Cannot score {source.label} with {model.version.ref}: {error}",
                           f"The model expects {expected}{more}; score data with those columns and types "
                           "(wb.sql can cast them).")  # fmt: skip


def _column(array: Any) -> Any:
    """A chunk's column as `conform` takes it: numbers as one numpy array (nulls as NaN; decimals as
    floats, as a JSON client would send them), anything else as Python values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_decimal(kind):
        array, kind = pc.cast(array, pa.float64()), pa.float64()
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return array.to_numpy(zero_copy_only=False)
    return array.to_pylist()


def _score(reader: Any, model: LoadedModel, source: _Input, features: list[str], keys: list[str],
           classes: list[str], target: Path | None, batch_log: BatchLog | None,
           progress: Progress | None) -> list[Any]:  # fmt: skip
    """Check, predict and write out every chunk; the output batches when there is no `target`."""
    import pyarrow.parquet as pq

    predictor = model.predictor
    names = [*keys, *(LOG_KEYS if batch_log else ()), PREDICTION, *(PROBA_PREFIX + c for c in classes)]
    parts: list[Any] = []
    writer = None
    done = 0
    try:
        for batch in reader:
            if batch.num_rows == 0:
                continue
            try:
                inputs = conform({name: _column(batch.column(name)) for name in features}, model.schema, done)
            except InputError as exc:
                raise _schema_error(exc, model, source) from None
            started = time.perf_counter()
            form = predictor.form(inputs)
            predictions = np.asarray(predictor.estimator.predict(form))
            table = predictor.estimator.predict_proba(form) if classes else None
            elapsed_ms = (time.perf_counter() - started) * 1000
            out = _output(batch, names, keys, batch_log, done, predictions, table)
            if target is None:
                parts.append(out)
            else:
                writer = writer or pq.ParquetWriter(target, out.schema, compression="zstd")
                writer.write_batch(out)
            if batch_log is not None:
                batch_log.write(inputs, predictions, table, done, elapsed_ms)
            done += batch.num_rows
            if progress is not None:
                progress(done, source.rows)
    finally:
        if writer is not None:
            writer.close()
    return parts


def _output(batch: Any, names: list[str], keys: list[str], batch_log: BatchLog | None, first_row: int,
            predictions: np.ndarray, table: np.ndarray | None) -> Any:  # fmt: skip
    """One chunk of the output: its key columns as they were read, the log keys, the predictions and
    the probabilities."""
    import pyarrow as pa

    rows = batch.num_rows
    arrays = [batch.column(k) for k in keys]
    if batch_log is not None:
        arrays += [
            pa.array([batch_log.request_id] * rows, pa.string()),
            pa.array(np.arange(first_row, first_row + rows)),
        ]
    arrays.append(pa.array(predictions if predictions.ndim == 1 else predictions.tolist()))  # multi-output: lists
    arrays += [pa.array(table[:, i]) for i in range(table.shape[1])] if table is not None else []
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _frame(parts: list[Any]) -> pd.DataFrame:
    """The output chunks as one DataFrame, as `Table.to_pandas` makes it, with numeric columns
    without nulls joined as numpy arrays: arrow's own conversion of a large first table cost more
    than the whole scoring loop's predictions (~0.1 s for 5M rows in a fresh process)."""
    import pandas as pd
    import pyarrow as pa

    if not parts:
        return pa.Table.from_batches(parts).to_pandas()
    columns: dict[str, Any] = {}
    for index, field in enumerate(parts[0].schema):
        chunks = [part.column(index) for part in parts]
        kind = field.type
        plain = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        if plain and not any(chunk.null_count for chunk in chunks):
            columns[field.name] = np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in chunks])
        else:
            columns[field.name] = pa.chunked_array(chunks, kind).to_pandas()
    return pd.DataFrame(columns, copy=False)


def _register(into: str | None, target: Path | None, model: LoadedModel, source: _Input, ws: Workspace | None) -> Any:
    """The finished result file registered as the next version of `into`, its source naming the
    model version and the input (the lineage of a scored snapshot)."""
    from workbench.snapshots.store import register

    ref = model.version.ref
    return register(into, str(target), description=f"Predictions of {ref} for {source.label}",
                    source_label=f"predict: {ref} on {source.label}", ws=ws)  # fmt: skip


def _audit(ws: Workspace, model: LoadedModel, source: _Input, snapshot: Any, keys: list[str], proba: bool,
           batch_log: BatchLog | None) -> None:  # fmt: skip
    """One audit entry for a scoring that left something behind (a snapshot, prediction log lines)."""
    from workbench.catalog import transaction

    details = {"model": model.version.name, "version": model.version.version, "input": source.ref or source.label,
               "rows": source.rows, "into": snapshot.ref if snapshot is not None else None,
               "created": snapshot.created if snapshot is not None else None, "columns": keys, "proba": proba,
               "logged_as": batch_log.request_id if batch_log is not None else None}  # fmt: skip
    with transaction(ws) as con:
        audit.record(con, "model.batch_scored", f"model:{model.version.ref}", details)


__all__ = ["CHUNK_ROWS", "predict"]
