"""What Workbench's two HTTP APIs share: the JupyterLab extension's and the team server's.

JSON from library results (`to_jsonable`, `frame_records`), the `{"error", "hint"}` body of a
refused request (`error_body`), checked numbers and bodies (`int_text`, `check_int`,
`parse_json_body`), and the runs query: its request arguments (`runs_request`, one set of
parameters and error messages for both APIs) and its answer, by rows or by columns
(`runs_answer_json`). Nothing here knows about tornado or FastAPI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ValidationError, WorkbenchError
from workbench.remote.dispatch import remote_capable

if TYPE_CHECKING:
    from workbench.workspace import Workspace

#: Most rows the runs table asks for when the client gives no limit: keeps polling cheap.
DEFAULT_RUNS_LIMIT = 500
#: Most rows one runs request may ask for (a bigger `limit` is a 400, not a DuckDB overflow).
MAX_RUNS_LIMIT = 100_000
#: Largest POST body: requests carry a notebook path, parameters and a sweep grid (a few KiB).
MAX_BODY_BYTES = 1024 * 1024
#: Deepest nesting of arrays/objects in a POST body; parameters need a handful of levels.
MAX_JSON_DEPTH = 32
#: Largest integer a body or query argument may carry by default (fits every catalog integer column).
MAX_INT = 2**31 - 1


class BodyTooLargeError(ValidationError):
    """A request body over `MAX_BODY_BYTES` (answered 413)."""


# --------------------------------------------------------------------------------------------
# JSON


def error_status(exc: WorkbenchError) -> int:
    """The HTTP status of a user-facing error in both HTTP APIs: no such object 404, a body over the
    limit 413, a catalog that stayed busy 503 (worth retrying), any other mistake of the caller 400."""
    from workbench.errors import NotFoundError, StoreBusyError

    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, BodyTooLargeError):
        return 413
    if isinstance(exc, StoreBusyError):
        return 503
    return 400


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from library results: NaN/NaT -> null, datetimes -> ISO text, numpy -> Python.

    Strict JSON (no `NaN` tokens) matters because browsers' `JSON.parse` rejects them.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict) and not _is_pandas(value):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    try:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return frame_records(value)
        if value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a hard dependency
        pass
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):  # numpy arrays
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas")


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame as a list of row dicts with JSON-safe values (missing -> null).

    Column by column: a float column (metrics, most of a runs table) is one `tolist` and a finiteness
    test per value, instead of the per-cell checks every other column gets (a third of the time of the
    team server's `GET /runs` for 1,000 runs went here)."""
    import pandas as pd

    names = [str(key) for key in frame.columns]
    if not names:
        return [{} for _ in range(len(frame))]
    columns = []
    for index in range(frame.shape[1]):
        column = frame.iloc[:, index]
        if column.dtype.kind == "f":
            columns.append([v if math.isfinite(v) else None for v in column.to_numpy().tolist()])
        else:
            columns.append([_json_cell(cell, pd) for cell in column.astype(object).tolist()])
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _json_cell(cell: Any, pd: Any) -> Any:
    kind = type(cell)
    if kind is str or kind is int or kind is bool or cell is None:
        return cell
    if kind is float:
        return cell if math.isfinite(cell) else None
    return None if not isinstance(cell, (list, dict, tuple)) and pd.isna(cell) else to_jsonable(cell)


def json_depth(value: Any, stop_after: int = MAX_JSON_DEPTH) -> int:
    """How deeply arrays/objects nest in parsed JSON (a scalar is 0), counted without recursion.

    Stops counting once past `stop_after`: the caller only needs to know the limit is exceeded.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack and deepest <= stop_after:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object (empty: `{}`), refused if too big, too deep or not an object."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"The request body is {len(raw):,} bytes, more than the limit of {MAX_BODY_BYTES:,}.")
    too_deep = ValidationError(f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.",
                               "Send a flat JSON object of plain values.")  # fmt: skip
    try:
        body = json.loads(raw or b"{}")
    except RecursionError as exc:  # the parser recurses: [[[[...]]]] thousands deep
        raise too_deep from exc
    except ValueError as exc:  # also bad UTF-8 and integers of more than 4,300 digits
        raise ValidationError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise too_deep
    return body


def text_field(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    """`data[key]` if it is text; missing, null or "" gives `default`; any other type is a 400."""
    value = data.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string, not {type(value).__name__}.")
    return value


def check_int(name: str, value: Any, minimum: int, maximum: int) -> int:
    """`value` if it is a whole number in [minimum, maximum], else a 400 naming `name` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be a whole number from {minimum:,} to {maximum:,}, not {value!r}.")
    return value


def int_field(data: dict[str, Any], key: str, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
    """`data[key]` as a checked whole number (None when missing or null)."""
    value = data.get(key)
    return None if value is None else check_int(key, value, minimum, maximum)


def error_body(exc: WorkbenchError) -> dict[str, Any]:
    """The JSON body of a refused request: message and hint, plus what lets the UI show it in place:
    the form field it is about (`field`) and every gate's verdict of a refused promotion (`gates`)."""
    body: dict[str, Any] = {"error": exc.message, "hint": exc.hint}
    field = getattr(exc, "field", None)
    if isinstance(field, str):
        body["field"] = field
    results = getattr(exc, "results", None)  # GateRefused (imported lazily by the model handlers)
    if results:
        body["gates"] = to_jsonable(results)
    return body


def int_text(name: str, text: str | None, default: int, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """A whole-number query argument in [minimum, maximum] (missing or empty: `default`), else a 400."""
    if text is None or not text.strip():
        return default
    text = text.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > len(str(maximum)) + 1:
        raise ValidationError(f"{name} must be a whole number from {minimum:,} to {maximum:,}, not {text[:40]!r}.")
    return check_int(name, int(text), minimum, maximum)


# --------------------------------------------------------------------------------------------
# The runs query


def split_values(values: Sequence[str]) -> list[str]:
    """The values of a repeatable query argument, each occurrence also a comma-separated list (`a,b`)."""
    return [item for value in values for item in value.split(",") if item]


def runs_request(experiment: Sequence[str] = (), filter: str | None = None, order_by: Sequence[str] = (),
                 limit: str | None = None, status: str | None = None,
                 format: str | None = None) -> tuple[dict[str, Any], str]:  # fmt: skip
    """The arguments of `runs()` and the answer's shape ("records" or "columns") from the query
    arguments of a runs request (each repeatable one as the list of its values; `experiment=a,b`
    counts as two), checked: the same parameters and messages in both HTTP APIs."""
    experiments = split_values(experiment)
    order = [o for o in order_by if o.strip()]
    count = int_text("limit", limit, DEFAULT_RUNS_LIMIT, 0, MAX_RUNS_LIMIT)
    shape = format or "records"
    if shape not in ("records", "columns"):
        raise ValidationError(f"format must be 'records' or 'columns', not {shape[:40]!r}.")
    arguments = {
        "experiment": (experiments[0] if len(experiments) == 1 else experiments) if experiments else None,
        "filter": filter or None,
        "order_by": (order[0] if len(order) == 1 else order) if order else None,
        "limit": count,
        "status": status or None,
    }
    return arguments, shape


@remote_capable("runs_answer_json")
def runs_answer_json(arguments: dict[str, Any], shape: str, ws: Workspace) -> str:
    """The runs `runs_request` asked for, as the JSON text of the reply, written by the caller's
    thread (a worker, not a server's event loop): a list of row objects, or with shape "columns"
    the table column by column, `{"columns": [name, ...], "data": [[every value of column 0], ...],
    "rows": n}`, plus the `creator` and `started_at` of each run (`runs_columns_json`). The
    JupyterLab runs table asks for columns: for 10,000 wide runs it is about half the bytes (no key
    repeated in every row) and several times cheaper to build."""
    from workbench.runs.query import runs, runs_by_id

    frame = runs_by_id(**arguments, ws=ws) if "run_ids" in arguments else runs(**arguments, ws=ws)
    return runs_columns_json(frame, ws) if shape == "columns" else json.dumps(frame_records(frame), allow_nan=False)


def runs_columns_json(frame: Any, ws: Workspace) -> str:
    """`frame` (from `runs()`) column by column, plus `DETAIL_COLUMNS`, as compact JSON text.

    The float columns (metrics: the bulk of a wide table) are spelled all at once by
    `float_columns_json`: for 30,000 runs x 100 metrics `json.dumps` of the dict took 1.2 s, more
    than the whole request may. That and the details' catalog read run in DuckDB, which lets go
    of the GIL, so they run in threads of their own while this one writes every other column
    (`column_values` through `json.dumps`).
    """
    from concurrent.futures import ThreadPoolExecutor

    from workbench.runs.query import DETAIL_COLUMNS, float_columns_json, run_details

    def dumps(value: Any) -> str:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))

    names = [str(name) for name in frame.columns] + list(DETAIL_COLUMNS)
    series = [frame.iloc[:, index] for index in range(frame.shape[1])]
    floats = [index for index, column in enumerate(series) if column.dtype.kind == "f"]
    with ThreadPoolExecutor(2, thread_name_prefix="workbench-json") as pool:
        spelled = pool.submit(float_columns_json, [series[index].to_numpy(dtype=float) for index in floats])
        read = pool.submit(run_details, frame["run_id"], ws)
        pieces = {index: dumps(column_values(column)) for index, column in enumerate(series) if index not in floats}
        details = read.result()
        missing = (None,) * len(DETAIL_COLUMNS)
        extra = [dumps([value.isoformat() if isinstance(value, dt.datetime) else to_jsonable(value)
                        for value in (details.get(run_id, missing)[index] for run_id in frame["run_id"])])
                 for index in range(len(DETAIL_COLUMNS))]  # fmt: skip
        pieces.update(zip(floats, spelled.result(), strict=True))
    data = ",".join([*(pieces[index] for index in range(len(series))), *extra])
    return f'{{"columns":{dumps(names)},"data":[{data}],"rows":{len(frame)}}}'


def column_values(series: Any) -> list[Any]:
    """One column as a JSON-safe list: NaN/NaT/NA -> None, times -> ISO text, numpy -> Python."""
    import numpy as np
    import pandas as pd

    kind = series.dtype.kind
    if kind == "f":
        values = series.to_numpy(dtype=float)
        out = values.tolist()
        for index in np.flatnonzero(~np.isfinite(values)):
            out[index] = None
        return out
    if kind in "iub":
        return series.tolist()
    if kind == "M":
        return iso_times(series)
    return [v if isinstance(v, str) else None if v is None or (np.ndim(v) == 0 and pd.isna(v))
            else to_jsonable(v) for v in series.astype(object)]  # fmt: skip


def iso_times(series: Any) -> list[str | None]:
    """Each `Timestamp.isoformat()` of a datetime64 column, None for NaT.

    Written by `datetime.isoformat` (C) where that is the same text, i.e. when no time has
    nanoseconds and every year fits a `datetime`: three times quicker for the runs table's
    `created_at` (0.1 s of a 30,000-run reply otherwise).
    """
    import pandas as pd

    if not (series.dt.unit == "ns" and series.dt.nanosecond.any()):
        try:
            return [None if v is pd.NaT else v.isoformat() for v in series.dt.to_pydatetime()]
        except ValueError:  # a year past 9999
            pass
    return [None if pd.isna(v) else v.isoformat() for v in series]
