"""Turning a request body into the DataFrame a model expects, or a clear 4xx error.

Accepted bodies: JSON records (`[{...}]` or `{"records": [...]}`), JSON columns
(`{"columns": {"a": [..]}}`), MLflow's `{"dataframe_split": {"columns": [...], "data": [[...]]}}`,
and CSV with a header row (`Content-Type: text/csv`). The input schema recorded by `log_model`
decides the column set, order and types: missing or unexpected columns, values of the wrong
type, nulls, empty and oversized payloads are the client's mistake (4xx with a message), never a
server error.

Single-row latency is what a model server is judged on, so bodies become plain column lists,
are checked in plain Python and numpy, and become one DataFrame only if the model needs one
(pandas per-column operations cost milliseconds per request; measured).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ROWS = 10_000
_HINT = 'Send {"records": [{"col": value, ...}]}, {"columns": {"col": [values]}} or a CSV with a header.'

Columns = dict[str, list[Any]]


class InputError(Exception):
    """A request the server refuses: HTTP `status` and a JSON-able body."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **details}


def _from_records(records: Any) -> Columns:
    if not isinstance(records, list) or any(not isinstance(r, dict) for r in records):
        raise InputError(400, "'records' must be a list of objects (one per row).")
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {str(name): [record.get(name) for record in records] for name in names}


def _from_split(split: dict[str, Any]) -> Columns:
    names, rows = split.get("columns"), split.get("data")
    if not isinstance(names, list) or not isinstance(rows, list):
        raise InputError(400, "'dataframe_split' needs 'columns' (list) and 'data' (list of rows).")
    if any(not isinstance(row, list) or len(row) != len(names) for row in rows):
        raise InputError(400, "Every row of 'dataframe_split.data' must be a list as long as 'columns'.")
    return {str(name): [row[i] for row in rows] for i, name in enumerate(names)}


def _from_json(body: Any) -> Columns:
    if isinstance(body, list):
        return _from_records(body)
    if isinstance(body, dict) and "records" in body:
        return _from_records(body["records"])
    if isinstance(body, dict) and isinstance(body.get("columns"), dict):
        columns = body["columns"]
        lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
        if -1 in lengths or len(lengths) > 1:
            raise InputError(400, "'columns' must map each column to a list, all of the same length.")
        return {str(k): v for k, v in columns.items()}
    if isinstance(body, dict) and isinstance(body.get("dataframe_split"), dict):
        return _from_split(body["dataframe_split"])
    raise InputError(400, "Unrecognized JSON body.", hint=_HINT)


def parse_body(raw: bytes, content_type: str | None) -> Columns:
    """The columns of a request body (not yet checked against the schema)."""
    if len(raw) > MAX_BODY_BYTES:
        raise InputError(413, f"Payload of {len(raw):,} bytes is larger than the limit of {MAX_BODY_BYTES:,}.",
                         hint=f"Send at most {MAX_ROWS:,} rows per request.")  # fmt: skip
    if not raw.strip():
        raise InputError(400, "Empty request body.", hint='Send {"records": [{...}]}.')
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        try:
            columns = pd.read_csv(io.BytesIO(raw)).to_dict(orient="list")
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(400, f"Malformed CSV: {str(exc).splitlines()[0]}") from exc
        columns = {str(k): v for k, v in columns.items()}
    elif kind in ("application/json", "text/json", ""):
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(400, f"Malformed JSON: {exc}") from exc
        except RecursionError as exc:  # e.g. [[[[...]]]] nested thousands deep
            raise InputError(400, "Malformed JSON: nested too deeply.") from exc
        columns = _from_json(body)
    else:
        raise InputError(415, f"Unsupported content type {kind!r}.", hint="Use application/json or text/csv.")
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows == 0:
        raise InputError(400, "The payload holds no rows.")
    if rows > MAX_ROWS:
        raise InputError(413, f"{rows:,} rows is more than the limit of {MAX_ROWS:,} per request.")
    return columns


_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _numbers(name: str, values: list[Any], dtype: str, schema: list[dict[str, str]]) -> np.ndarray:
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise InputError(422, f"Column {name!r} has a missing or non-finite value in row {row}.", expected=schema)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBER_TYPES):
            raise InputError(422, f"Column {name!r} expects numbers ({dtype}), got {value!r}.", expected=schema)
    array = np.asarray(values, dtype="float64")
    if not np.isfinite(array).all():
        raise InputError(422, f"Column {name!r} has a non-finite value.", expected=schema)
    if dtype.startswith(("int", "uint")):
        if not np.all(np.mod(array, 1) == 0):
            raise InputError(422, f"Column {name!r} expects integers.", expected=schema)
        return array.astype(dtype)
    return array.astype(dtype, copy=False)


class Conformed:
    """A request's columns after the schema check, in model order; the DataFrame is built only
    when something asks for it (the array path of `predict.Predictor` never does)."""

    def __init__(self, columns: dict[str, Any], names: list[str]) -> None:
        self.columns = columns
        self.names = names

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, columns=self.names)

    def array(self) -> np.ndarray:
        """One 2-D array (numeric schemas only): what scikit-learn makes of `frame()` itself."""
        return np.column_stack([self.columns[name] for name in self.names])

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per row (for the prediction log)."""
        values = [self.columns[name] for name in self.names]
        plain = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in values]
        return [dict(zip(self.names, row, strict=True)) for row in zip(*plain, strict=True)]


def conform(columns: Columns | pd.DataFrame, schema: list[dict[str, str]] | None) -> Conformed:
    """Check columns and types against the model's input schema."""
    if isinstance(columns, pd.DataFrame):
        columns = {str(k): v for k, v in columns.to_dict(orient="list").items()}
    if not schema:
        return Conformed(dict(columns), list(columns))
    expected = [c["name"] for c in schema]
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        parts = ([f"missing columns: {', '.join(missing)}"] if missing else []) + (
            [f"unexpected columns: {', '.join(extra)}"] if extra else [])  # fmt: skip
        raise InputError(422, "Input does not match the model's schema: " + "; ".join(parts) + ".",
                         expected=schema)  # fmt: skip
    result: dict[str, Any] = {}
    for column in schema:
        name, dtype = column["name"], column["dtype"]
        values = list(columns[name])
        if dtype.startswith(("int", "float", "uint")):
            result[name] = _numbers(name, values, dtype, schema)
        elif dtype == "bool":
            if not all(isinstance(v, (bool, np.bool_)) for v in values):
                raise InputError(422, f"Column {name!r} expects true/false.", expected=schema)
            result[name] = np.asarray(values, dtype=bool)
        else:
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
                raise InputError(422, f"Column {name!r} has a missing value.", expected=schema)
            result[name] = [str(v) for v in values] if dtype in ("object", "string", "str") else values
    return Conformed(result, expected)
