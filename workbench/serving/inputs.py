"""Turning a request body into the DataFrame a model expects, or a clear 4xx error.

Accepted bodies: JSON records (`[{...}]` or `{"records": [...]}`), JSON columns
(`{"columns": {"a": [..]}}`), MLflow's scoring protocol (`{"dataframe_split": {"columns": [...],
"data": [[...]]}}`, `{"dataframe_records": [...]}`, `{"instances": [...]}`, `{"inputs": ...}`),
and CSV with a header row (`Content-Type: text/csv`). The input schema recorded by `log_model`
decides the column set, order and types: missing or unexpected columns, values of the wrong
type, nulls, empty and oversized payloads are the client's mistake (4xx with a message), never a
server error.

Single-row latency is what a model server is judged on, so bodies become plain column lists,
are checked in plain Python and numpy, and become one DataFrame only if the model needs one
(pandas per-column operations cost milliseconds per request; measured).

A body is hostile until checked, so every step costs at most linear time in its size: the row
limit is checked before any per-row work, only the schema's columns are ever built (a record
with 10,000 unknown keys is refused after one pass over its keys, not after building 10,000
columns of 10,000 rows), error messages quote a bounded number of short names and values, and
a cell must be a single value (which also bounds how deep the parsed JSON can be).
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from itertools import islice
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ROWS = 10_000
#: Columns of a model without a recorded schema (with one, the schema decides and others are refused).
MAX_COLUMNS = 10_000
#: Cells of a model without a schema: records missing keys are padded with nulls, so a small body
#: of sparse records could otherwise ask for rows x distinct keys cells. A dense body within
#: MAX_BODY_BYTES cannot hold more than this many (each cell needs at least `"k":1,`).
MAX_CELLS = 2_000_000
#: How many unexpected column names an error lists, and how long a quoted name or value may be.
MAX_REPORTED = 10
MAX_QUOTED = 60
_HINT = 'Send {"records": [{"col": value, ...}]}, {"columns": {"col": [values]}} or a CSV with a header.'

Columns = dict[str, list[Any]]
Schema = list[dict[str, str]]


class InputError(Exception):
    """A request the server refuses: HTTP `status` and a JSON-able body."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **details}


def cut(text: str) -> str:
    """`text` cut to MAX_QUOTED characters: errors echo client data, which may be megabytes."""
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."


def quoted(value: Any) -> str:
    """`repr(value)`, cut."""
    try:
        return cut(repr(value))
    except (ValueError, RecursionError):  # an int beyond str()'s digit limit, a deeply nested list
        return f"<{type(value).__name__}>"


def mismatch(missing: list[str], extra: list[str], schema: Schema) -> InputError:
    """The 422 for a column set that differs from the schema; lists at most MAX_REPORTED names each."""
    parts = []
    for label, names in (("missing columns", missing), ("unexpected columns", extra)):
        if names:
            shown = ", ".join(cut(n) for n in names[:MAX_REPORTED])
            parts.append(f"{label}: {shown}" + (" and more" if len(names) > MAX_REPORTED else ""))
    return InputError(422, "Input does not match the model's schema: " + "; ".join(parts) + ".", expected=schema)


def check_rows(rows: int) -> None:
    """Refuse an empty or oversized batch before any per-row work."""
    if rows == 0:
        raise InputError(400, "The payload holds no rows.")
    if rows > MAX_ROWS:
        raise InputError(413, f"{rows:,} rows is more than the limit of {MAX_ROWS:,} per request.")


def _check_columns(count: int) -> None:
    if count > MAX_COLUMNS:
        raise InputError(413, f"More than the limit of {MAX_COLUMNS:,} columns.")


def _unknown(keys: Any, wanted: Any, extra: dict[str, None]) -> None:
    """Add (up to MAX_REPORTED + 1, in the client's order) the keys of `keys` that are not `wanted`."""
    room = MAX_REPORTED + 1 - len(extra)
    if room > 0:
        extra.update(dict.fromkeys(islice((str(k) for k in keys if k not in wanted and k not in extra), room)))


def _schema_records(records: list[Any], names: list[str], schema: Schema) -> Columns:
    """The schema's columns of `records`, in one pass over their keys (linear in the body's size)."""
    wanted = dict.fromkeys(names).keys()
    seen: set[str] = set()
    extra: dict[str, None] = {}
    complete = False
    incomplete: int | None = None
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise InputError(400, "'records' must be a list of objects (one per row).")
        keys = record.keys()
        if keys == wanted:  # the usual record: exactly the schema's columns
            complete = True
            continue
        if len(keys - wanted):
            _unknown(keys, wanted, extra)
        if not complete:
            seen.update(keys & wanted)
        if incomplete is None and not keys >= wanted:
            incomplete = row
    missing = [] if complete else [n for n in names if n not in seen]
    if missing or extra:
        raise mismatch(missing, list(extra), schema)
    if incomplete is not None:
        name = next(n for n in names if n not in records[incomplete])
        raise InputError(422, f"Column {name!r} has no value in row {incomplete}.", expected=schema)
    return {name: list(map(itemgetter(name), records)) for name in names}


def _any_records(records: list[Any]) -> Columns:
    """Every key of `records` as a column (no schema), missing values as None, built in one pass."""
    names: dict[str, None] = {}
    for record in records:
        if not isinstance(record, dict):
            raise InputError(400, "'records' must be a list of objects (one per row).")
        names.update(dict.fromkeys(record))
        _check_columns(len(names))
    if len(names) * len(records) > MAX_CELLS:
        raise InputError(413, f"{len(records):,} rows of {len(names):,} columns is more than the limit of "
                              f"{MAX_CELLS:,} values.")  # fmt: skip
    columns: Columns = {name: [None] * len(records) for name in names}
    for row, record in enumerate(records):
        for name, value in record.items():
            columns[name][row] = value
    return columns


def _from_records(records: Any, schema: Schema | None) -> Columns:
    if not isinstance(records, list):
        raise InputError(400, "'records' must be a list of objects (one per row).")
    check_rows(len(records))
    if schema:
        return _schema_records(records, [c["name"] for c in schema], schema)
    return _any_records(records)


def _select(columns: dict[str, Any], schema: Schema | None) -> dict[str, Any]:
    """Only the schema's columns (in its order), refusing any other; without a schema, all of them."""
    if not schema:
        _check_columns(len(columns))
        return columns
    names = [c["name"] for c in schema]
    extra: dict[str, None] = {}
    _unknown(columns.keys(), set(names), extra)
    if extra:
        raise mismatch([n for n in names if n not in columns], list(extra), schema)
    return {name: columns[name] for name in names if name in columns}


def _from_columns(columns: dict[str, Any], schema: Schema | None) -> Columns:
    lengths = {len(v) if isinstance(v, list) else -1 for v in columns.values()}
    if -1 in lengths or len(lengths) > 1:
        raise InputError(400, "'columns' must map each column to a list, all of the same length.")
    check_rows(lengths.pop() if lengths else 0)
    return _select(columns, schema)


def _from_split(split: dict[str, Any], schema: Schema | None) -> Columns:
    names, rows = split.get("columns"), split.get("data")
    if not isinstance(names, list) or not isinstance(rows, list):
        raise InputError(400, "'dataframe_split' needs 'columns' (list) and 'data' (list of rows).")
    check_rows(len(rows))
    if any(not isinstance(row, list) or len(row) != len(names) for row in rows):
        raise InputError(400, "Every row of 'dataframe_split.data' must be a list as long as 'columns'.")
    index = {str(name): i for i, name in enumerate(names)}
    return {name: [row[i] for row in rows] for name, i in _select(index, schema).items()}


def _from_instances(items: Any, key: str, schema: Schema | None) -> Columns:
    """MLflow's `instances`/`inputs` rows: objects (records), or lists in the schema's column order."""
    if not isinstance(items, list):
        raise InputError(400, f"'{key}' must be a list of rows (objects, or lists in the schema's column order).")
    if not items or isinstance(items[0], dict):
        return _from_records(items, schema)
    if not schema:
        raise InputError(400, f"Rows of '{key}' without column names need a model with an input schema.",
                         hint="Send objects with column names instead.")  # fmt: skip
    return _from_split({"columns": [c["name"] for c in schema], "data": items}, schema)


def _from_json(body: Any, schema: Schema | None) -> Columns:
    """Workbench's own shapes and MLflow's scoring protocol (`dataframe_split`, `dataframe_records`,
    `instances`, `inputs`), so an MLflow client works unchanged; one set of limits for all."""
    if isinstance(body, list):
        return _from_records(body, schema)
    if not isinstance(body, dict):
        raise InputError(400, "Unrecognized JSON body.", hint=_HINT)
    if "records" in body or "dataframe_records" in body:
        return _from_records(body.get("records", body.get("dataframe_records")), schema)
    if isinstance(body.get("columns"), dict):
        return _from_columns(body["columns"], schema)
    if isinstance(body.get("dataframe_split"), dict):
        return _from_split(body["dataframe_split"], schema)
    if "instances" in body:
        return _from_instances(body["instances"], "instances", schema)
    if isinstance(body.get("inputs"), dict):
        return _from_columns(body["inputs"], schema)
    if "inputs" in body:
        return _from_instances(body["inputs"], "inputs", schema)
    raise InputError(400, "Unrecognized JSON body.", hint=_HINT)


def _csv_header(raw: bytes) -> list[str]:
    """The header row's names, read without pandas (which takes ~30 s for 700,000 columns)."""
    first = raw.split(b"\n", 1)[0]
    try:
        return next(csv.reader([first.decode("utf-8-sig")]), [])
    except (UnicodeDecodeError, csv.Error):
        return []  # pandas says what is wrong with it


def _wide_header(header: list[str], schema: Schema) -> InputError:
    names = dict.fromkeys(c["name"] for c in schema)
    extra = list(islice(dict.fromkeys(h for h in header if h not in names), MAX_REPORTED + 1))
    if not extra:
        return InputError(422, f"The CSV header repeats columns ({len(header):,} for {len(names):,}).",
                          expected=schema)  # fmt: skip
    given = set(header)
    return mismatch([n for n in names if n not in given], extra, schema)


def _from_csv(raw: bytes, schema: Schema | None) -> Columns:
    header = _csv_header(raw)
    if schema and len(header) > len(schema):  # refused before pandas parses a header that wide
        raise _wide_header(header, schema)
    _check_columns(len(header))
    try:
        frame = pd.read_csv(io.BytesIO(raw), nrows=MAX_ROWS + 1)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(400, f"Malformed CSV: {cut(str(exc).splitlines()[0])}") from exc
    check_rows(len(frame))
    return _select({str(k): v for k, v in frame.to_dict(orient="list").items()}, schema)


class _CollectorPause:
    """Keeps the cyclic garbage collector off while large bodies are parsed.

    `json.loads` builds up to millions of lists and dicts in one C call that holds the GIL; the
    collector, triggered by those allocations, traverses them (and the whole heap) again and
    again meanwhile: 8 MB of `[],` took 1.9 s instead of 0.3 s, and /health waited as long.
    Parsed JSON has no reference cycles, so collecting can wait until the parse is done.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parsing = 0
        self.was_enabled = True

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            self.parsing += 1
            if self.parsing == 1:
                self.was_enabled = gc.isenabled()
                gc.disable()
        try:
            yield
        finally:
            with self.lock:
                self.parsing -= 1
                if self.parsing == 0 and self.was_enabled:
                    gc.enable()


_collector_paused = _CollectorPause()
#: Bodies from this size on are parsed with the collector paused (below it, it costs nothing).
PAUSE_GC_BYTES = 256 * 1024


def _from_json_bytes(raw: bytes, schema: Schema | None) -> Columns:
    try:
        with _collector_paused() if len(raw) >= PAUSE_GC_BYTES else nullcontext():
            body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # ValueError includes ints beyond 4,300 digits
        raise InputError(400, f"Malformed JSON: {cut(str(exc))}") from exc
    except RecursionError as exc:  # e.g. [[[[...]]]] nested thousands deep
        raise InputError(400, "Malformed JSON: nested too deeply.") from exc
    return _from_json(body, schema)


def parse_body(raw: bytes, content_type: str | None, schema: Schema | None = None) -> Columns:
    """The columns of a request body; with a `schema`, only its columns (any other is a 422)."""
    if len(raw) > MAX_BODY_BYTES:
        raise InputError(413, f"Payload of {len(raw):,} bytes is larger than the limit of {MAX_BODY_BYTES:,}.",
                         hint=f"Send at most {MAX_ROWS:,} rows per request.")  # fmt: skip
    if not raw.strip():
        raise InputError(400, "Empty request body.", hint='Send {"records": [{...}]}.')
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        return _from_csv(raw, schema)
    if kind in ("application/json", "text/json", ""):
        return _from_json_bytes(raw, schema)
    raise InputError(415, f"Unsupported content type {quoted(kind)}.", hint="Use application/json or text/csv.")


_NUMBER_TYPES = (int, float, np.integer, np.floating)


def _missing_number(name: str, row: int, schema: Schema) -> InputError:
    return InputError(422, f"Column {name!r} has a missing or non-finite value in row {row}.", expected=schema)


def _check_number_types(name: str, values: list[Any], dtype: str, schema: Schema, first_row: int = 0) -> None:
    for row, value in enumerate(values, first_row):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise _missing_number(name, row, schema)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMBER_TYPES):
            raise InputError(422, f"Column {name!r} expects numbers ({dtype}), got {quoted(value)}.", expected=schema)


def _as_floats(name: str, values: list[Any], schema: Schema, first_row: int = 0) -> np.ndarray:
    try:
        return np.asarray(values, dtype="float64")
    except OverflowError:  # an integer beyond float64 (about 1.8e308)
        row = next(i for i, v in enumerate(values, first_row) if isinstance(v, int) and not _fits_float(v))
        raise InputError(422, f"Column {name!r} has a number too large in row {row}.", expected=schema) from None


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _numbers(name: str, values: list[Any] | np.ndarray, dtype: str, schema: Schema, first_row: int = 0) -> np.ndarray:
    if isinstance(values, np.ndarray):  # holds numbers only (see `conform`): no per-value type check
        array = values.astype("float64", copy=False)
        finite = np.isfinite(array)
        if not finite.all():  # a null read from a table is NaN here: the message a JSON null gets
            raise _missing_number(name, first_row + int(np.argmin(finite)), schema)
    else:
        _check_number_types(name, values, dtype, schema, first_row)
        array = _as_floats(name, values, schema, first_row)
        if not np.isfinite(array).all():
            raise InputError(422, f"Column {name!r} has a non-finite value.", expected=schema)
    if dtype.startswith(("int", "uint")):
        if not np.all(np.mod(array, 1) == 0):
            raise InputError(422, f"Column {name!r} expects integers.", expected=schema)
        info = np.iinfo(dtype)  # the float comparison is exact: the bounds are powers of two
        if array.size and (array.min() < float(info.min) or array.max() >= float(info.max) + 1):
            raise InputError(422, f"Column {name!r} has a value out of range for {dtype}.", expected=schema)
        return array.astype(dtype)
    if dtype != "float64" and array.size and np.abs(array).max() > float(np.finfo(dtype).max):  # 1e39 in float32
        raise InputError(422, f"Column {name!r} has a value out of range for {dtype}.", expected=schema)
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
        """One 2-D array (numeric schemas only): what scikit-learn makes of `frame()` itself, in the
        same column-major layout a DataFrame's float block has (each column one contiguous copy,
        and the model's arithmetic sees the memory order it sees for a DataFrame)."""
        values = [self.columns[name] for name in self.names]
        if not values:
            return np.empty((0, 0))
        array = np.empty((len(values[0]), len(values)), dtype=np.result_type(*values), order="F")
        for index, column in enumerate(values):
            array[:, index] = column
        return array

    def records(self) -> list[dict[str, Any]]:
        """One plain dict per row (for the prediction log)."""
        values = [self.columns[name] for name in self.names]
        plain = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in values]
        return [dict(zip(self.names, row, strict=True)) for row in zip(*plain, strict=True)]


def _others(name: str, values: list[Any], dtype: str, schema: Schema, first_row: int = 0) -> list[Any]:
    """A text (or other non-numeric, non-bool) column: single values only, no nulls."""
    for row, value in enumerate(values, first_row):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise InputError(422, f"Column {name!r} has a missing value.", expected=schema)
        if isinstance(value, (list, dict)):
            raise InputError(422, f"Column {name!r} expects a single value in row {row}, got {quoted(value)}.",
                             expected=schema)  # fmt: skip
    return [str(v) for v in values] if dtype in ("object", "string", "str") else values


def conform(columns: Columns | pd.DataFrame, schema: Schema | None, first_row: int = 0) -> Conformed:
    """Check columns and types against the model's input schema.

    Batch scoring (`models.batch`) checks a table chunk by chunk with the same rules and messages:
    its columns may be numpy arrays of numbers (int/uint/float dtype, nulls as NaN), checked without
    a per-value loop since they can hold nothing else, and row numbers in messages count from
    `first_row`, the chunk's first row in the whole table.
    """
    if isinstance(columns, pd.DataFrame):
        columns = {str(k): v for k, v in columns.to_dict(orient="list").items()}
    if not schema:
        return Conformed(dict(columns), list(columns))
    expected = [c["name"] for c in schema]
    wanted = set(expected)
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in wanted]
    if missing or extra:
        raise mismatch(missing, extra, schema)
    result: dict[str, Any] = {}
    for column in schema:
        name, dtype = column["name"], column["dtype"]
        given = columns[name]
        numeric = isinstance(given, np.ndarray) and given.dtype.kind in "iuf"
        values = given if numeric else list(given)
        if dtype.startswith(("int", "float", "uint")):
            result[name] = _numbers(name, values, dtype, schema, first_row)
        elif dtype == "bool":
            if not all(isinstance(v, (bool, np.bool_)) for v in values):
                raise InputError(422, f"Column {name!r} expects true/false.", expected=schema)
            result[name] = np.asarray(values, dtype=bool)
        else:
            result[name] = _others(name, values, dtype, schema, first_row)
    return Conformed(result, expected)
