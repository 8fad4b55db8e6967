"""Searching runs: filters compiled to parameterized DuckDB SQL, and `runs()`.

The filter language itself (syntax, semantics, parser) is in `workbench.runs.filters`. Its
syntax tree becomes SQL here: fixed fragments chosen by the compiler, with every key and every
value a bound ``?`` parameter.

`runs()` first selects the matching run ids (filtered, ordered, limited) in one SQL statement,
then fetches params, metrics, tags and inputs for just those ids in long form, as numpy arrays of
(run position, key code, value), and scatters them into place, so its cost follows the size of
the answer rather than the size of the catalog, with no Python object per metric value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.catalog import connect
from workbench.catalog.read_cache import cached_read, deep_copies, frame_copies, shallow_copies
from workbench.errors import ValidationError
from workbench.remote.dispatch import remote_capable
from workbench.runs.filters import (
    COLUMNS,
    BoolOp,
    Compare,
    Field,
    Node,
    Not,
    OrderKey,
    parse_filter,
    parse_order,
    to_float,
    to_time,
)
from workbench.workspace import Workspace, current_workspace

# --------------------------------------------------------------------------------------------
# SQL


@dataclass
class Sql:
    """SQL text plus its positional parameters, built together so they cannot drift apart."""

    text: str = ""
    params: list[Any] = field(default_factory=list)


_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_TABLES = {"params": "run_params", "metrics": "run_metric_summary", "tags": "run_tags"}
_TEXT_COLUMNS = {"params": "value_text", "tags": "value"}


def _value_condition(node: Compare, params: list[Any]) -> str:
    """The condition on one row of the field's table (or on the runs row for columns)."""
    fld = node.field
    parts = []
    if node.op in ("like", "ilike"):
        column = f"r.{COLUMNS[fld.name][0]}" if fld.source == "column" else _TEXT_COLUMNS[fld.source]
        params.append(node.values[0])
        return f"{column} {node.op.upper()} ?"
    ops = [("=", v) for v in node.values] if node.op == "in" else [(node.op, node.values[0])]
    for op, value in ops:
        parts.append(_one_condition(fld, _SQL_OPS[op], value, params))
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _one_condition(fld: Field, op: str, value: Any, params: list[Any]) -> str:
    if fld.source == "metrics":
        params.append(value if isinstance(value, float) else to_float(value))
        return f"{fld.agg} {op} ?"
    if fld.source == "params":
        if isinstance(value, bool):
            params.append("true" if value else "false")
            return f"(value_text {op} ? AND json_type(value) = 'BOOLEAN')"
        params.append(value)
        return f"value_num {op} ?" if isinstance(value, float) else f"value_text {op} ?"
    if fld.source == "tags":
        if isinstance(value, bool):
            params.append("true" if value else "false")
            return f"lower(value) {op} ?"
        params.append(value)
        return f"TRY_CAST(value AS DOUBLE) {op} ?" if isinstance(value, float) else f"value {op} ?"
    column, kind = COLUMNS[fld.name]
    if kind == "number":
        params.append(value if isinstance(value, float) else to_float(value))
    elif kind == "time":
        params.append(to_time(value))
    elif isinstance(value, bool):
        params.append("true" if value else "false")
    else:
        params.append(value if isinstance(value, str) else _number_text(value))
    return f"r.{column} {op} ?"


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def compile_filter(node: Node, out: Sql) -> str:
    """SQL for a node over `runs r`; appends its parameters to `out.params` in text order."""
    if isinstance(node, BoolOp):
        joined = f" {node.op.upper()} ".join(compile_filter(item, out) for item in node.items)
        return f"({joined})"
    if isinstance(node, Not):
        return f"(NOT {compile_filter(node.item, out)})"
    fld = node.field
    if fld.source == "column":
        column = f"r.{COLUMNS[fld.name][0]}"
        if node.op == "isnull":
            return f"({column} IS {'NOT ' if node.negate else ''}NULL)"
        condition = _value_condition(node, out.params)
        # NOT LIKE / NOT IN on a NULL column is unknown, i.e. false: the field must be present.
        return f"(NOT {condition})" if node.negate else f"({condition})"
    table = _TABLES[fld.source]
    out.params.append(fld.name)
    if node.op == "isnull":
        present = {"params": "value IS NOT NULL AND json_type(value) <> 'NULL'", "tags": "value IS NOT NULL",
                   "metrics": f"{fld.agg} IS NOT NULL"}[fld.source]  # fmt: skip
        return f"(r.run_id {'' if node.negate else 'NOT '}IN (SELECT run_id FROM {table} WHERE key = ? AND {present}))"
    condition = _value_condition(node, out.params)
    if node.negate:
        condition = f"NOT {condition}"
    return f"(r.run_id IN (SELECT run_id FROM {table} WHERE key = ? AND {condition}))"


def _order_sql(keys: list[OrderKey], joins: list[str], join_params: list[Any]) -> str:
    parts = []
    for index, key in enumerate(keys):
        direction = "DESC" if key.descending else "ASC"
        fld = key.field
        if fld.source == "column":
            parts.append(f"r.{COLUMNS[fld.name][0]} {direction} NULLS LAST")
            continue
        alias = f"o{index}"
        table = _TABLES[fld.source]
        column = {"params": "value_num, value_text", "metrics": fld.agg, "tags": "value"}[fld.source]
        joins.append(f"LEFT JOIN (SELECT run_id, {column} FROM {table} WHERE key = ?) {alias} "
                     f"ON {alias}.run_id = r.run_id")  # fmt: skip
        join_params.append(fld.name)
        if fld.source == "params":  # numbers first in numeric order, then text values
            parts += [f"{alias}.value_num {direction} NULLS LAST", f"{alias}.value_text {direction} NULLS LAST"]
        else:
            parts.append(f"{alias}.{column} {direction} NULLS LAST")
    parts.append("r.run_id ASC")  # stable ties
    return ", ".join(parts)


def build_select(
    node: Node | None,
    order: list[OrderKey],
    *,
    experiments: list[str] | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> Sql:
    """The statement selecting matching runs (base columns only), ordered and limited."""
    joins: list[str] = []
    out = Sql()
    order_sql = _order_sql(order, joins, out.params)
    where = []
    if experiments is not None:
        where.append(f"r.experiment IN ({', '.join('?' for _ in experiments)})" if experiments else "FALSE")
        out.params += experiments
    if status is not None:
        where.append("r.status = ?")
        out.params.append(status)
    if node is not None:
        where.append(compile_filter(node, out))
    text = (
        "SELECT r.run_id, r.experiment, r.status, r.created_at, r.duration_s, r.notebook, r.sweep_id, "
        f"r.parent_run_id FROM runs r {' '.join(joins)}"
    )
    if where:
        text += " WHERE " + " AND ".join(where)
    text += f" ORDER BY {order_sql}"
    if limit is not None:
        text += " LIMIT ?"
        out.params.append(limit)
    out.text = text
    return out


# --------------------------------------------------------------------------------------------
# runs()

BASE_COLUMNS = ["run_id", "experiment", "status", "created_at", "duration_s", "notebook", "sweep_id", "parent_run_id"]
_IDS_VIEW = "__wb_query_ids"
_KEYS_VIEW = "__wb_query_keys"


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _filled(values: np.ndarray, fill: Any) -> np.ndarray:
    """`fetchnumpy` answers a masked array for a column holding NULLs: those cells become `fill`."""
    if not isinstance(values, np.ma.MaskedArray):
        return values
    data = np.ma.getdata(values).copy()
    data[np.ma.getmaskarray(values)] = fill
    return data


def _pivot(con: Any, table: str, values: list[str], n: int, fill: Any) -> tuple[list[str], list[np.ndarray]]:
    """The rows of `table` for the runs in `_IDS_VIEW`, pivoted: the keys they have, sorted, and for
    each column in `values` a (keys x n) array with a run's value at [key, run position], else `fill`.

    DuckDB joins each long row to its run's position and its key's code and hands the three back
    as numpy arrays; numpy scatters them into place in one assignment. No Python object is made
    per row: at 30,000 runs x 100 metrics the tuples and the loop over them took ~2 s of ~2.4 s.
    Codes come from every key of the table (`SELECT DISTINCT key` reads one compressed column:
    ~2 ms at 100,000 runs, where the keys of just these runs would cost a second join, ~15 ms) in
    Python's sort order, as `runs()` always sorted them; the keys no row used are then left out.
    """
    dtype = float if isinstance(fill, float) else object
    keys = sorted(key for (key,) in con.execute(f"SELECT DISTINCT key FROM {table}").fetchall())
    if not keys:
        return [], [np.full((0, n), fill, dtype=dtype) for _ in values]
    con.register(_KEYS_VIEW, pd.DataFrame({"key": keys, "code": np.arange(len(keys))}))
    try:
        fetched = con.execute(
            f"SELECT i.pos, k.code, {', '.join(f't.{column}' for column in values)} FROM {table} t "
            f"JOIN {_IDS_VIEW} i ON t.run_id = i.run_id JOIN {_KEYS_VIEW} k ON t.key = k.key"
        ).fetchnumpy()
    finally:
        con.unregister(_KEYS_VIEW)
    used = np.flatnonzero(np.bincount(fetched["code"], minlength=len(keys)))  # codes in use, in key order
    index = np.zeros(len(keys), dtype=np.intp)
    index[used] = np.arange(len(used))
    rows = index[fetched["code"]]  # each row's place among the keys in use
    out = [np.full((len(used), n), fill, dtype=dtype) for _ in values]
    for array, column in zip(out, values, strict=True):
        array[rows, fetched["pos"]] = _filled(fetched[column], fill)
    return [keys[code] for code in used], out


def _decoded(texts: np.ndarray) -> np.ndarray:
    """JSON texts (None for SQL NULL) -> the values they encode; text that is not JSON stays text.

    Each distinct text is decoded once (sweeps repeat a few values across many runs), and the
    decoded values are shared by the cells that had the same text, as they always were.
    """
    codes, uniques = pd.factorize(texts)  # NULL -> code -1: the None at the end of `values`
    values = np.empty(len(uniques) + 1, dtype=object)  # filled one by one: a list value stays one cell
    for index, text in enumerate(uniques):
        values[index] = _decode(text)
    return values[codes]


def _normalise_experiments(experiment: str | list[str] | None) -> list[str] | None:
    if experiment is None:
        return None
    items = [experiment] if isinstance(experiment, str) else experiment
    if not isinstance(items, (list, tuple)) or not all(isinstance(e, str) for e in items):
        raise ValidationError("experiment must be a name or a list of names.")
    return list(items)


def check_limit(limit: object) -> None:
    """`limit` of `runs()` (here and on a team server's client): None or a non-negative integer."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be a non-negative integer, not {limit!r}.")


@remote_capable("search_runs")
@cached_read(frame_copies, indexes_runs=True)  # warm polls (Lab, widgets) skip the catalog while it is unchanged
def runs(
    experiment: str | list[str] | None = None,
    filter: str | None = None,
    order_by: str | list[str] | None = None,
    limit: int | None = None,
    status: str | None = None,
    ws: Workspace | None = None,
    include_min_max: bool = False,
) -> pd.DataFrame:
    """Runs matching `filter` as a DataFrame, one row per run.

    Columns: run_id, experiment, status, created_at, duration_s, notebook, sweep_id,
    parent_run_id, then `params.<k>` (values as logged), `metrics.<k>` (last value; with
    `include_min_max` also `metrics.<k>.min` / `.max`), `tags.<k>` and `inputs`
    ("name@version, ..."). Sorted by `order_by` (default newest first), at most `limit` rows.
    """
    from workbench.runs.ingest import index_runs

    ws = ws or current_workspace()
    node = parse_filter(filter) if filter is not None else None
    order = parse_order(order_by)
    experiments = _normalise_experiments(experiment)
    if status is not None and not isinstance(status, str):
        raise ValidationError("status must be a string such as 'finished'.")
    check_limit(limit)
    select = build_select(node, order, experiments=experiments, status=status, limit=limit)
    index_runs(ws)
    with connect(ws) as con:
        base = con.execute(select.text, select.params).df()
        return _with_details(con, base, include_min_max)


def _with_details(con: Any, base: pd.DataFrame, include_min_max: bool) -> pd.DataFrame:
    """`base` (rows of the runs table) with the params, metrics, tags and inputs of those runs.

    The columns and their dtypes are those of pivoting the long rows in Python: param, tag and
    inputs columns reach pandas as lists of Python values, so pandas infers their dtypes from the
    values (ints -> int64, ints with a gap -> float64, text -> str, ...); metric columns are float64.
    Only the pivot itself is done in bulk (`_pivot`): metrics, the bulk of a wide table, never
    become Python objects at all.
    """
    if base.empty:
        return pd.DataFrame(columns=[*BASE_COLUMNS, "inputs"])
    n = len(base)
    con.register(_IDS_VIEW, pd.DataFrame({"run_id": base["run_id"].to_numpy(), "pos": np.arange(n)}))
    try:
        param_keys, (param_texts,) = _pivot(con, "run_params", ["value"], n, None)
        metric_cols = ["last", "min", "max"] if include_min_max else ["last"]
        metric_keys, metric_values = _pivot(con, "run_metric_summary", metric_cols, n, np.nan)
        tag_keys, (tag_values,) = _pivot(con, "run_tags", ["value"], n, None)
        inputs = con.execute(
            "SELECT i.pos, string_agg(t.snapshot_name || '@' || t.snapshot_version, ', ' "
            f"ORDER BY t.snapshot_name, t.snapshot_version) FROM run_inputs t JOIN {_IDS_VIEW} i "
            "ON t.run_id = i.run_id GROUP BY i.pos"
        ).fetchall()
    finally:
        con.unregister(_IDS_VIEW)
    param_values = _decoded(param_texts.ravel()).reshape(param_texts.shape)
    params = {f"params.{key}": row.tolist() for key, row in zip(param_keys, param_values, strict=True)}
    others: dict[str, list[Any]] = {f"tags.{key}": row.tolist() for key, row in zip(tag_keys, tag_values, strict=True)}
    others["inputs"] = [None] * n
    for pos, text in inputs:
        others["inputs"][pos] = text
    frames = [base, pd.DataFrame(params, index=base.index), _metric_frame(metric_keys, metric_values, base.index),
              pd.DataFrame(others, index=base.index)]  # fmt: skip
    return pd.concat([frame for frame in frames if len(frame.columns)], axis=1)


def _metric_frame(keys: list[str], values: list[np.ndarray], index: pd.Index) -> pd.DataFrame:
    """The metric columns as one float64 block: `metrics.<key>` (+ `.min`, `.max` with 3 arrays).

    Named as a dict of columns always named them: should a key's `.min`/`.max` name be another
    key's name (keys `a` and `a.min`), the later column replaces the earlier in its place.
    """
    # rows key0, key0 min, key0 max, key1, ...: interleaved as the columns are
    block = values[0] if len(values) == 1 else np.stack(values, axis=1).reshape(len(keys) * len(values), len(index))
    suffixes = ["", ".min", ".max"][: len(values)]
    rows = {}
    for row, name in enumerate(f"metrics.{key}{suffix}" for key in keys for suffix in suffixes):
        rows[name] = row
    if len(rows) < len(block):
        block = block[list(rows.values())]
    return pd.DataFrame(block.T, index=index, columns=list(rows), copy=False)


# --------------------------------------------------------------------------------------------
# Runs by id


def _checked_ids(run_ids: Sequence[str]) -> list[str]:
    from workbench.runs.ids import check_run_id

    if isinstance(run_ids, str):
        run_ids = [run_ids]
    return list(dict.fromkeys(check_run_id(run_id) for run_id in run_ids))


@remote_capable("runs_by_id")
def runs_by_id(run_ids: Sequence[str], ws: Workspace | None = None, include_min_max: bool = False) -> pd.DataFrame:
    """The runs with these ids, in the order given (unknown ids are left out), with the columns of
    `runs()`. The ids are checked, then bound as one list parameter: never pasted into SQL text."""
    from workbench.runs.ingest import index_runs

    ids = _checked_ids(run_ids)
    ws = ws or current_workspace()
    index_runs(ws)
    with connect(ws) as con:
        base = con.execute(
            f"SELECT {', '.join('r.' + c for c in BASE_COLUMNS)} FROM runs r WHERE list_contains(?, r.run_id)", [ids]
        ).df()
        frame = _with_details(con, base, include_min_max)
    position = {run_id: index for index, run_id in enumerate(ids)}
    return frame.sort_values("run_id", key=lambda s: s.map(position)).reset_index(drop=True)


#: What the lab's runs table shows that `runs()` leaves out: who started a run and when it began.
DETAIL_COLUMNS = ("creator", "started_at")


@cached_read(shallow_copies)  # polled with runs(); values are tuples of str/datetime
def run_details(run_ids: Sequence[str], ws: Workspace | None = None) -> dict[str, tuple[Any, ...]]:
    """`DETAIL_COLUMNS` of these runs (already indexed: they come from `runs()`), by run id.

    The ids travel as a registered table joined in DuckDB: never pasted into SQL text, and no
    10,000-element list parameter scanned for every row.
    """
    if not len(run_ids):
        return {}
    ws = ws or current_workspace()
    with connect(ws) as con:
        con.register("__wb_detail_ids", pd.DataFrame({"run_id": list(run_ids)}))
        try:
            found = con.execute(
                f"SELECT run_id, {', '.join(DETAIL_COLUMNS)} FROM runs "
                "WHERE run_id IN (SELECT run_id FROM __wb_detail_ids)"
            ).fetchall()
        finally:
            con.unregister("__wb_detail_ids")
    return {row[0]: row[1:] for row in found}


#: Fewest float cells for which `float_columns_json` has DuckDB spell them: below that, starting
#: an in-memory DuckDB (~13 ms) costs more than Python's own formatting saves (measured: even at 50,000).
FLOAT_JSON_MIN_CELLS = 50_000


def float_columns_json(columns: Sequence[np.ndarray]) -> list[str]:
    """Each float array (all of one length) as the text of a JSON array: NaN and +-inf as null,
    every other number spelled so that it reads back as the same double.

    For the Runs table's REST answer, whose bulk is metric values: Python's json spells a float in
    ~0.4 us (`float.__repr__`), 1.2 s for a 30,000 x 100 table, above the 1 s the whole request
    may take. DuckDB's `to_json` writes the same shortest round-trip digits (`1e-7`, `1e16` where
    Python writes `1e-07`, `1e+16`: the same numbers to any JSON reader) in a fifth of the time,
    in C and without the GIL, the columns split over the cores (a query over a handful of rows
    runs on one). Each column reaches DuckDB as one list value (a row of its own), so its order is
    the array's without any sorting. Only formatting happens there: an in-memory database, no catalog.
    """
    if not columns:
        return []
    n = len(columns[0])
    if n == 0 or n * len(columns) < FLOAT_JSON_MIN_CELLS:
        return [json.dumps([v if math.isfinite(v) else None for v in column.tolist()], allow_nan=False,
                           separators=(",", ":")) for column in columns]  # fmt: skip
    import os
    from concurrent.futures import ThreadPoolExecutor

    import duckdb

    size = -(-len(columns) // min(os.cpu_count() or 1, _FLOAT_JSON_THREADS, len(columns)))
    batches = [columns[start : start + size] for start in range(0, len(columns), size)]
    with duckdb.connect() as con, ThreadPoolExecutor(len(batches), thread_name_prefix="workbench-floats") as pool:
        spelled = pool.map(lambda batch: _spell_floats(con.cursor(), batch), batches)
        return [text for batch in spelled for text in batch]


#: Most threads `float_columns_json` spreads the columns over.
_FLOAT_JSON_THREADS = 4


def _spell_floats(con: Any, columns: Sequence[np.ndarray]) -> list[str]:
    """`float_columns_json` of some columns, on `con`: a cursor of its own (registrations are per cursor)."""
    cells = np.empty(len(columns), dtype=object)  # filled one by one: each array stays one cell
    for index, column in enumerate(columns):
        cells[index] = np.ascontiguousarray(column, dtype=float)
    with con:
        con.register("__wb_floats", pd.DataFrame({"i": np.arange(len(columns)), "v": cells}))
        rows = con.execute(
            "SELECT i, to_json([CASE WHEN isfinite(x) THEN x END FOR x IN v]) FROM __wb_floats ORDER BY i"
        ).fetchall()
    return [text for _, text in rows]


@remote_capable("metric_point_counts")
def metric_point_counts(run_ids: Sequence[str], ws: Workspace | None = None) -> dict[str, int]:
    """For each metric of these runs, the most points (steps) any one of them logged."""
    from workbench.runs.ingest import index_runs

    ids = _checked_ids(run_ids)
    ws = ws or current_workspace()
    index_runs(ws)
    with connect(ws) as con:
        rows = con.execute(
            "SELECT key, max(count) FROM run_metric_summary WHERE list_contains(?, run_id) GROUP BY key ORDER BY key",
            [ids],
        ).fetchall()
    return {key: int(count or 0) for key, count in rows}


@remote_capable("experiments_summary")
@cached_read(deep_copies, indexes_runs=True)
def experiments_summary(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Every experiment with its run counts and last activity, sorted by name.

    One row per name known either to the experiments table or to a run (a run can name an
    experiment nobody created explicitly, and an experiment can have no runs yet): `name`, `runs`,
    `finished`, `active` (queued or running), `failed` (failed or killed) and `last_run_at`.
    Runs are indexed first, so runs that ended since the last read are counted as they ended.
    """
    from workbench.runs.ingest import index_runs

    ws = ws or current_workspace()
    index_runs(ws)
    with connect(ws) as con:
        cursor = con.execute(
            "SELECT coalesce(e.name, r.experiment) AS name, count(r.run_id) AS runs, "
            "count(r.run_id) FILTER (WHERE r.status = 'finished') AS finished, "
            "count(r.run_id) FILTER (WHERE r.status IN ('queued', 'running')) AS active, "
            "count(r.run_id) FILTER (WHERE r.status IN ('failed', 'killed')) AS failed, "
            "max(r.created_at) AS last_run_at "
            "FROM experiments e FULL OUTER JOIN runs r ON r.experiment = e.name "
            "GROUP BY 1 ORDER BY 1"
        )
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
