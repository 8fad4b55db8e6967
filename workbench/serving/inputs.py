"""Turning a request body into the DataFrame a model expects, or a clear 4xx error.

Accepted bodies: JSON records (`[{...}]` or `{"records": [...]}`), JSON columns
(`{"columns": {"a": [..]}}`), MLflow's `{"dataframe_split": {"columns": [...], "data": [[...]]}}`,
and CSV with a header row (`Content-Type: text/csv`). The input schema recorded by `log_model`
decides the column set, order and types: missing or unexpected columns, values of the wrong
type, nulls, empty and oversized payloads are the client's mistake (4xx with a message), never a
server error.
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


class InputError(Exception):
    """A request the server refuses: HTTP `status` and a JSON-able body."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **details}


def _records_frame(body: Any) -> pd.DataFrame:
    if isinstance(body, list):
        records = body
    elif isinstance(body, dict) and "records" in body:
        records = body["records"]
    elif isinstance(body, dict) and "columns" in body and isinstance(body["columns"], dict):
        columns = body["columns"]
        lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
        if -1 in lengths or len(lengths) > 1:
            raise InputError(400, "'columns' must map each column to a list, all of the same length.")
        return pd.DataFrame(columns)
    elif isinstance(body, dict) and isinstance(body.get("dataframe_split"), dict):
        split = body["dataframe_split"]
        if not isinstance(split.get("columns"), list) or not isinstance(split.get("data"), list):
            raise InputError(400, "'dataframe_split' needs 'columns' (list) and 'data' (list of rows).")
        if any(not isinstance(row, list) or len(row) != len(split["columns"]) for row in split["data"]):
            raise InputError(400, "Every row of 'dataframe_split.data' must be a list as long as 'columns'.")
        return pd.DataFrame(split["data"], columns=split["columns"])
    else:
        hint = 'Send {"records": [{"col": value, ...}]}, {"columns": {"col": [values]}} or a CSV with a header.'
        raise InputError(400, "Unrecognized JSON body.", hint=hint)
    if not isinstance(records, list) or any(not isinstance(r, dict) for r in records):
        raise InputError(400, "'records' must be a list of objects (one per row).")
    return pd.DataFrame.from_records(records)


def parse_body(raw: bytes, content_type: str | None) -> pd.DataFrame:
    """The rows of a request body as a DataFrame (not yet checked against the schema)."""
    if len(raw) > MAX_BODY_BYTES:
        raise InputError(413, f"Payload of {len(raw):,} bytes is larger than the limit of {MAX_BODY_BYTES:,}.",
                         hint=f"Send at most {MAX_ROWS:,} rows per request.")  # fmt: skip
    if not raw.strip():
        raise InputError(400, "Empty request body.", hint='Send {"records": [{...}]}.')
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        try:
            frame = pd.read_csv(io.BytesIO(raw))
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(400, f"Malformed CSV: {str(exc).splitlines()[0]}") from exc
    elif kind in ("application/json", "text/json", ""):
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(400, f"Malformed JSON: {exc}") from exc
        except RecursionError as exc:  # e.g. [[[[...]]]] nested thousands deep
            raise InputError(400, "Malformed JSON: nested too deeply.") from exc
        frame = _records_frame(body)
    else:
        raise InputError(415, f"Unsupported content type {kind!r}.", hint="Use application/json or text/csv.")
    if len(frame) == 0:
        raise InputError(400, "The payload holds no rows.")
    if len(frame) > MAX_ROWS:
        raise InputError(413, f"{len(frame):,} rows is more than the limit of {MAX_ROWS:,} per request.")
    return frame


def _is_number(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))


def conform(frame: pd.DataFrame, schema: list[dict[str, str]] | None) -> pd.DataFrame:
    """Check columns and types against the model's input schema; return columns in model order."""
    if not schema:
        return frame
    expected = [c["name"] for c in schema]
    missing = [c for c in expected if c not in frame.columns]
    extra = [str(c) for c in frame.columns if c not in expected]
    if missing or extra:
        parts = ([f"missing columns: {', '.join(missing)}"] if missing else []) + (
            [f"unexpected columns: {', '.join(extra)}"] if extra else [])  # fmt: skip
        raise InputError(422, "Input does not match the model's schema: " + "; ".join(parts) + ".",
                         expected=schema)  # fmt: skip
    result = {}
    for column in schema:
        name, dtype = column["name"], column["dtype"]
        values = frame[name]
        numeric = dtype.startswith(("int", "float", "uint"))
        if numeric:
            if values.dtype == object:
                bad = next((v for v in values if not _is_number(v) and v is not None), None)
                if bad is not None:
                    raise InputError(422, f"Column {name!r} expects numbers ({dtype}), got {bad!r}.", expected=schema)
            elif values.dtype == bool or not pd.api.types.is_numeric_dtype(values):
                raise InputError(
                    422, f"Column {name!r} expects numbers ({dtype}), got {values.dtype}.", expected=schema
                )
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            if numbers.isna().any() or not np.isfinite(numbers.to_numpy()).all():
                row = int(np.flatnonzero(~np.isfinite(numbers.to_numpy()))[0])
                raise InputError(422, f"Column {name!r} has a missing or non-finite value in row {row}.",
                                 expected=schema)  # fmt: skip
            if dtype.startswith(("int", "uint")):
                if not all(float(v).is_integer() for v in numbers):
                    raise InputError(422, f"Column {name!r} expects integers.", expected=schema)
                result[name] = numbers.astype(dtype)
            else:
                result[name] = numbers.astype(dtype)
        elif dtype == "bool":
            if not all(isinstance(v, (bool, np.bool_)) for v in values):
                raise InputError(422, f"Column {name!r} expects true/false.", expected=schema)
            result[name] = values.astype(bool)
        else:
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
                raise InputError(422, f"Column {name!r} has a missing value.", expected=schema)
            result[name] = values.astype(str) if dtype in ("object", "string", "str") else values
    return pd.DataFrame(result, columns=expected)
