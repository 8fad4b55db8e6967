"""Searching runs: filters compiled to parameterized DuckDB SQL, and `runs()`.

The filter language itself (syntax, semantics, parser) is in `workbench.runs.filters`. Its
syntax tree becomes SQL here: fixed fragments chosen by the compiler, with every key and every
value a bound ``?`` parameter.

`runs()` first selects the matching run ids (filtered, ordered, limited) in one SQL statement,
then fetches params, metrics, tags and inputs for just those ids in long form and pivots them in
pandas, so its cost follows the size of the answer rather than the size of the catalog.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.catalog import connect
from workbench.errors import ValidationError
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


def _decode(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _spread(rows: list[tuple], position: dict[str, int], prefix: str, width: int = 1) -> dict[str, list[Any]]:
    """Long rows (run_id, key, v1[, v2, v3]) -> columns `<prefix><key>` (+ `.min`/`.max` when width is 3).

    A plain loop over the few thousand rows of the answer: far cheaper than pandas' pivot, whose
    fixed overhead dominated the run time for small answers.
    """
    n = len(position)
    columns: dict[str, list[list[Any]]] = {}
    for run_id, key, *values in rows:
        lists = columns.get(key)
        if lists is None:
            lists = columns[key] = [[None] * n for _ in range(width)]
        row = position[run_id]
        for index in range(width):
            lists[index][row] = values[index]
    out: dict[str, list[Any]] = {}
    for key in sorted(columns):
        out[f"{prefix}{key}"] = columns[key][0]
        if width == 3:
            out[f"{prefix}{key}.min"], out[f"{prefix}{key}.max"] = columns[key][1], columns[key][2]
    return out


def _normalise_experiments(experiment: str | list[str] | None) -> list[str] | None:
    if experiment is None:
        return None
    items = [experiment] if isinstance(experiment, str) else experiment
    if not isinstance(items, (list, tuple)) or not all(isinstance(e, str) for e in items):
        raise ValidationError("experiment must be a name or a list of names.")
    return list(items)


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
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be a non-negative integer, not {limit!r}.")
    select = build_select(node, order, experiments=experiments, status=status, limit=limit)
    index_runs(ws)
    with connect(ws) as con:
        base = con.execute(select.text, select.params).df()
        return _with_details(con, base, include_min_max)


def _with_details(con: Any, base: pd.DataFrame, include_min_max: bool) -> pd.DataFrame:
    """`base` (rows of the runs table) with the params, metrics, tags and inputs of those runs."""
    if base.empty:
        return pd.DataFrame(columns=[*BASE_COLUMNS, "inputs"])
    con.register(_IDS_VIEW, base[["run_id"]])
    try:
        in_ids = f"run_id IN (SELECT run_id FROM {_IDS_VIEW})"
        params = con.execute(f"SELECT run_id, key, value FROM run_params WHERE {in_ids}").fetchall()
        metric_cols = "last, min, max" if include_min_max else "last"
        metrics = con.execute(f"SELECT run_id, key, {metric_cols} FROM run_metric_summary WHERE {in_ids}").fetchall()
        tags = con.execute(f"SELECT run_id, key, value FROM run_tags WHERE {in_ids}").fetchall()
        inputs = con.execute(
            "SELECT run_id, string_agg(snapshot_name || '@' || snapshot_version, ', ' "
            f"ORDER BY snapshot_name, snapshot_version) FROM run_inputs WHERE {in_ids} GROUP BY run_id"
        ).fetchall()
    finally:
        con.unregister(_IDS_VIEW)
    position = {run_id: index for index, run_id in enumerate(base["run_id"])}
    decoded: dict[Any, Any] = {}  # each distinct JSON text once: sweeps repeat few values many times
    for index, (run_id, key, text) in enumerate(params):
        if text not in decoded:
            decoded[text] = _decode(text)
        params[index] = (run_id, key, decoded[text])
    columns: dict[str, Any] = _spread(params, position, "params.")
    metric_columns = _spread(metrics, position, "metrics.", 3 if include_min_max else 1)
    columns.update((name, np.array(values, dtype=float)) for name, values in metric_columns.items())
    columns.update(_spread(tags, position, "tags."))
    columns["inputs"] = _spread([(r, "", v) for r, v in inputs], position, "inputs").get("inputs", [None] * len(base))
    return pd.concat([base, pd.DataFrame(columns, index=base.index)], axis=1)


# --------------------------------------------------------------------------------------------
# Runs by id


def _checked_ids(run_ids: Sequence[str]) -> list[str]:
    from workbench.runs.ids import check_run_id

    if isinstance(run_ids, str):
        run_ids = [run_ids]
    return list(dict.fromkeys(check_run_id(run_id) for run_id in run_ids))


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
