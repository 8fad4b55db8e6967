"""`runs()` and the Runs table's columnar REST answer stay exactly what they were before the pivot
moved into DuckDB (issue 21, wide run tables).

The reference here is the straightforward algorithm `runs()` used until then: long rows fetched as
Python tuples, JSON param values decoded one by one, pivoted with a dict per key and handed to the
pandas constructor as lists (so pandas infers each column's dtype from the Python values). The
workspace mixes every kind of value a run can hold, and leaves params, metrics, tags and inputs out
of some runs, so the missing-value handling and the dtype inference are compared too: content,
column order, dtypes and the Python type of every object cell.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from workbench.catalog import connect, transaction
from workbench.runs.filters import parse_filter, parse_order
from workbench.runs.ingest import ingest_runs
from workbench.runs.lifecycle import create_run
from workbench.runs.query import BASE_COLUMNS, build_select, runs, runs_by_id

# ------------------------------------------------------------------------------------------
# The workspace

#: Per run (index 0-7), the params it logs; a key missing from a run's dict is not logged there.
# fmt: off
PARAMS: list[dict[str, Any]] = [
    {"i": 0, "i_some": 5, "f": 0.1, "s": "a", "s_some": "x", "b": True, "b_some": False, "none": None,
     "mixed": 1, "lst": [1, 2], "big": 2**70, "Zed": "upper", "émoji ✓": "ü"},
    {"i": 1, "f": float("nan"), "s": "b", "b": False, "none": None, "mixed": "one", "lst": [],
     "big": 1, "Zed": "z", "_under": 1.5},
    {"i": 2, "i_some": -7, "f": float("inf"), "s": "", "s_some": "y", "b": True, "b_some": True,
     "none": None, "mixed": 1.5, "lst": ["a", {"k": [None]}], "big": 3},
    {"i": 3, "f": -0.0, "s": "3", "b": False, "none": None, "mixed": True, "lst": [1.5], "big": 4, "Zed": "q"},
    {"i": 4, "i_some": 0, "f": 1e300, "s": "null", "b": True, "b_some": False, "none": None,
     "mixed": None, "lst": [[1], [2]], "big": 5, "nested": {"a": 1, "b": [1, 2]}},
    {"i": 5, "f": 2.0, "s": "with 'quote' \"and\" \\", "b": True, "none": None, "mixed": {"d": 1},
     "lst": [None], "big": 6},
    {"i": 6, "i_some": 2**53 + 1, "f": 5e-324, "s": "z", "s_some": "w", "b": False, "none": None,
     "mixed": [1, "a"], "lst": [1, 2], "big": 7},
    {"i": 7, "f": 1.0, "s": "Ω", "b": False, "none": None, "mixed": -3, "lst": [True], "big": 8},
]
# fmt: on


def _metrics(i: int) -> dict[str, list[float]]:
    """Metric series of run i: `loss` everywhere, the others in some runs (NaN and inf values too)."""
    out = {"loss": [1.0 / (i + 1), 0.5 / (i + 1), 0.75 / (i + 1)]}
    if i % 3:
        out["acc"] = [i / 10]
    if i in (1, 4):
        out["weird"] = [float("nan"), 2.0] if i == 1 else [float("inf"), float("-inf")]
    if i == 2:
        out["B"] = [0.25]
    return out


def _build(ws: Any) -> list[str]:
    """Eight runs through the real event path, and two more written straight into the catalog
    with what the event path never writes: a SQL NULL param value and NULL metric summaries, and a
    metric key `a.min` beside `a`, whose column name `metrics.a.min` collides with `a`'s min column."""
    ids = []
    for i, params in enumerate(PARAMS):
        tags = {"team": "ml" if i < 4 else "data"} if i % 4 != 3 else {}
        if i == 5:
            tags["only"] = "five"
        record = create_run(ws, experiment="wide" if i % 2 == 0 else "other", kind="notebook", params=params,
                            tags=tags)  # fmt: skip
        for key, series in _metrics(i).items():
            for step, value in enumerate(series):
                record.writer.emit("metric", key=key, value=value, step=step, at=None)
        if i in (0, 5):
            for name, version in [("wine", 2), ("iris", 1)] if i == 0 else [("wine", 3)]:
                record.writer.emit("input", name=name, version=version)
        record.end("finished" if i != 7 else "failed")
        ids.append(record.run_id)
    ingest_runs(ws, ids)
    extra = ["20240101-000000-0000e001", "20240101-000000-0000e002"]
    with transaction(ws) as con:
        for index, run_id in enumerate(extra):
            con.execute(
                "INSERT INTO runs (run_id, experiment, kind, status, created_at, duration_s) "
                "VALUES (?, 'wide', 'notebook', 'finished', TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_seconds(?), "
                "NULL)",
                [run_id, index],
            )
        con.execute(f"INSERT INTO run_params VALUES ('{extra[0]}', 'i', NULL, NULL, NULL), "
                    f"('{extra[0]}', 'sqlnull', NULL, NULL, NULL), ('{extra[1]}', 'i', '9', 9, '9')")  # fmt: skip
        con.execute(
            f"INSERT INTO run_metric_summary VALUES ('{extra[0]}', 'loss', NULL, NULL, NULL, 0, 0), "
            f"('{extra[0]}', 'a', 1.0, 0.5, 2.0, 1, 2), ('{extra[0]}', 'a.min', 7.0, 7.0, 7.0, 0, 1), "
            f"('{extra[1]}', 'a', NULL, 3.0, NULL, 0, 1)"
        )
    return ids + extra


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> tuple[Any, list[str]]:
    from workbench.workspace import init_workspace

    workspace = init_workspace(tmp_path_factory.mktemp("wide") / ".workbench")
    return workspace, _build(workspace)


# ------------------------------------------------------------------------------------------
# The reference: the algorithm of runs() before issue 21


def _reference_spread(rows: list[tuple], position: dict[str, int], prefix: str, width: int = 1) -> dict[str, list]:
    n = len(position)
    columns: dict[str, list[list[Any]]] = {}
    for run_id, key, *values in rows:
        lists = columns.setdefault(key, [[None] * n for _ in range(width)])
        for index in range(width):
            lists[index][position[run_id]] = values[index]
    out: dict[str, list[Any]] = {}
    for key in sorted(columns):
        out[f"{prefix}{key}"] = columns[key][0]
        if width == 3:
            out[f"{prefix}{key}.min"], out[f"{prefix}{key}.max"] = columns[key][1], columns[key][2]
    return out


def _reference_decode(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def reference_runs(ws: Any, *, filter: str | None = None, order_by: str | None = None, limit: int | None = None,
                   experiment: list[str] | None = None, include_min_max: bool = False) -> pd.DataFrame:  # fmt: skip
    """What `runs()` answered before issue 21, for the same arguments."""
    node = parse_filter(filter) if filter is not None else None
    select = build_select(node, parse_order(order_by), experiments=experiment, limit=limit)
    with connect(ws) as con:
        base = con.execute(select.text, select.params).df()
        if base.empty:
            return pd.DataFrame(columns=[*BASE_COLUMNS, "inputs"])
        ids = list(base["run_id"])

        def rows(sql: str) -> list[tuple]:
            return con.execute(sql + " WHERE list_contains(?, run_id)", [ids]).fetchall()

        params = rows("SELECT run_id, key, value FROM run_params")
        metrics = rows(f"SELECT run_id, key, {'last, min, max' if include_min_max else 'last'} FROM run_metric_summary")
        tags = rows("SELECT run_id, key, value FROM run_tags")
        inputs = con.execute(
            "SELECT run_id, string_agg(snapshot_name || '@' || snapshot_version, ', ' ORDER BY snapshot_name, "
            "snapshot_version) FROM run_inputs WHERE list_contains(?, run_id) GROUP BY run_id",
            [ids],
        ).fetchall()
    position = {run_id: index for index, run_id in enumerate(ids)}
    columns: dict[str, Any] = _reference_spread([(r, k, _reference_decode(v)) for r, k, v in params], position,
                                                "params.")  # fmt: skip
    metric_columns = _reference_spread(metrics, position, "metrics.", 3 if include_min_max else 1)
    columns.update((name, np.array(values, dtype=float)) for name, values in metric_columns.items())
    columns.update(_reference_spread(tags, position, "tags."))
    columns["inputs"] = _reference_spread([(r, "", v) for r, v in inputs], position, "inputs").get(
        "inputs", [None] * len(base)
    )
    return pd.concat([base, pd.DataFrame(columns, index=base.index)], axis=1)


def assert_identical(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns (names, order, index dtype), dtypes, values, and Python type of each object cell."""
    pd.testing.assert_index_equal(got.columns, want.columns, exact=True)
    assert list(got.dtypes) == list(want.dtypes)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for name in want.columns:
        if want[name].dtype == object:
            got_cells, want_cells = got[name].tolist(), want[name].tolist()
            assert [type(v) for v in got_cells] == [type(v) for v in want_cells], name
            assert json.dumps(got_cells, default=str) == json.dumps(want_cells, default=str), name
        elif want[name].dtype.kind == "f":  # NaN where NaN, and -0.0 keeps its sign
            assert np.array_equal(got[name].to_numpy().view(np.int64), want[name].to_numpy().view(np.int64)), name


# ------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("include_min_max", [False, True])
@pytest.mark.parametrize(
    "query",
    [
        {},
        {"experiment": ["wide"]},
        {"order_by": "params.i", "limit": 3},
        {"filter": "params.i >= 2 and params.i < 7", "order_by": "metrics.loss desc"},
        {"filter": "metrics.acc is null"},
        {"filter": "params.i > 100"},
        {"filter": "run_id = '20240101-000000-0000e002'"},  # no tag, no input: keys elsewhere are left out
    ],
)
def test_runs_frame_is_what_it_was(wide, query: dict[str, Any], include_min_max: bool) -> None:
    ws, _ = wide
    got = runs(ws=ws, include_min_max=include_min_max, **query)
    want = reference_runs(ws, include_min_max=include_min_max, **query)
    assert_identical(got, want)


def test_reference_covers_every_kind_of_column(wide) -> None:
    """The comparisons above mean something: the workspace yields every dtype pandas infers."""
    ws, ids = wide
    frame = reference_runs(ws, include_min_max=True)
    assert len(frame) == len(ids) == 10
    kinds = {name: str(frame[name].dtype) for name in frame.columns}
    assert kinds["params.i"] == "float64"  # the NULL value of one run makes the ints floats
    assert kinds["params.big"] == "object"  # 2**70 does not fit int64
    assert kinds["params.b"] == "object" and kinds["params.none"] == "object"
    assert frame["params.s"].dtype.kind in "OU" or str(frame["params.s"].dtype) == "str"
    assert kinds["metrics.loss"] == "float64" and kinds["inputs"] in ("object", "str")
    assert list(frame.columns).count("metrics.a.min") == 1  # a.min's last replaced a's min, in a's place
    assert "metrics.B" in frame.columns and list(frame.columns).index("metrics.B") < list(frame.columns).index(
        "metrics.a"
    )  # keys sorted by code point: upper case first
    only_b = reference_runs(ws, filter="params.i = 3")
    assert only_b["params.b"].dtype == bool and only_b["params.i"].dtype == np.int64


def test_runs_by_id_is_what_it_was(wide) -> None:
    ws, ids = wide
    order = [ids[5], ids[9], ids[0], ids[3]]
    got = runs_by_id(order, ws=ws, include_min_max=True)
    quoted = ", ".join(f"'{run_id}'" for run_id in order)
    want = reference_runs(ws, filter=f"run_id in ({quoted})", include_min_max=True)
    want = want.sort_values("run_id", key=lambda s: s.map(order.index)).reset_index(drop=True)
    assert list(got["run_id"]) == order
    assert_identical(got, want)


# ------------------------------------------------------------------------------------------
# The columnar REST answer


def _reference_columnar(frame: pd.DataFrame, details: dict[str, tuple]) -> str:
    """The JSON text `GET runs?format=columns` sent before issue 21 (`column_values` + json.dumps)."""
    from workbench.jupyter.base import to_jsonable

    def values(series: pd.Series) -> list[Any]:
        kind = series.dtype.kind
        if kind == "f":
            return [v if math.isfinite(v) else None for v in series.to_numpy(dtype=float).tolist()]
        if kind in "iub":
            return series.tolist()
        if kind == "M":
            return [None if pd.isna(v) else v.isoformat() for v in series]
        return [v if isinstance(v, str) else None if v is None or (np.ndim(v) == 0 and pd.isna(v))
                else to_jsonable(v) for v in series.astype(object)]  # fmt: skip

    columns = [str(name) for name in frame.columns] + ["creator", "started_at"]
    data = [values(frame[name]) for name in frame.columns]
    for index in range(2):
        data.append([to_jsonable(details.get(r, (None, None))[index]) for r in frame["run_id"]])
    return json.dumps({"columns": columns, "data": data, "rows": len(frame)}, allow_nan=False, separators=(",", ":"))


def _strict(value: Any) -> Any:
    """Parsed JSON with each number tagged by its type, so 1 and 1.0 (and true) differ."""
    if isinstance(value, list):
        return [_strict(v) for v in value]
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    return (type(value).__name__, value)


def runs_columns(frame: Any, ws: Any) -> dict[str, Any]:
    """The reference answer: each column through `column_values`, details with `to_jsonable`, then
    `json.dumps` of the whole dict (how the answer was written before `runs_columns_json`)."""
    from workbench.httpapi import column_values, to_jsonable
    from workbench.runs.query import DETAIL_COLUMNS, run_details

    details = run_details(frame["run_id"], ws)
    columns = [str(name) for name in frame.columns]
    data = [column_values(frame[name]) for name in frame.columns]
    for index, name in enumerate(DETAIL_COLUMNS):
        columns.append(name)
        data.append([to_jsonable(details.get(run_id, (None,) * len(DETAIL_COLUMNS))[index])
                     for run_id in frame["run_id"]])  # fmt: skip
    return {"columns": columns, "data": data, "rows": len(frame)}


@pytest.mark.parametrize("float_cells", [0, 10**9])  # DuckDB spells the floats / Python does (small answers)
def test_columnar_json_is_what_it_was(wide, monkeypatch, float_cells: int) -> None:
    from workbench.httpapi import runs_columns_json
    from workbench.runs import query
    from workbench.runs.query import run_details

    monkeypatch.setattr(query, "FLOAT_JSON_MIN_CELLS", float_cells)
    ws, _ = wide
    for include_min_max in (False, True):
        frame = runs(ws=ws, include_min_max=include_min_max)
        text = runs_columns_json(frame, ws)
        want = _reference_columnar(frame, run_details(frame["run_id"], ws))
        assert _strict(json.loads(text)) == _strict(json.loads(want))
        # the same answer as the dict the team server serialises itself
        assert _strict(json.loads(text)) == _strict(json.loads(json.dumps(runs_columns(frame, ws))))
    assert json.loads(runs_columns_json(runs(ws=ws, filter="params.i > 100"), ws)) == {
        "columns": [*BASE_COLUMNS, "inputs", "creator", "started_at"],
        "data": [[]] * 11,
        "rows": 0,
    }


def test_float_json_reads_back_as_the_same_doubles(monkeypatch) -> None:
    """Every finite double (random bit patterns, subnormals, -0.0, integers) spelled by DuckDB reads
    back bit for bit; NaN and +-inf are null; columns keep their row order."""
    from workbench.runs import query

    monkeypatch.setattr(query, "FLOAT_JSON_MIN_CELLS", 0)
    rng = np.random.default_rng(21)
    bits = rng.integers(0, 2**64 - 1, size=200_000, dtype=np.uint64, endpoint=True)
    special = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-7, 1e16, 1e21, 0.1, 1 / 3,
               123456789012345678.0, 3.0, -2.5, np.nan, np.inf, -np.inf]  # fmt: skip
    values = np.concatenate([bits.view(np.float64), special])
    columns = [values, values[::-1].copy(), np.arange(len(values), dtype=float)]
    texts = query.float_columns_json(columns)
    for column, text in zip(columns, texts, strict=True):
        back = json.loads(text)
        finite = np.isfinite(column)
        assert [v is None for v in back] == (~finite).tolist()
        read = np.array([np.nan if v is None else v for v in back], dtype=float)
        assert np.array_equal(read[finite].view(np.uint64), column[finite].view(np.uint64))
    assert query.float_columns_json([np.array([]), np.array([])]) == ["[]", "[]"]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_iso_times_are_timestamp_isoformat(unit: str) -> None:
    from workbench.httpapi import iso_times

    times = pd.Series([pd.Timestamp("2024-01-01 00:00:00.5", tz="UTC"), pd.Timestamp("2024-03-01 12:00:01", tz="UTC"),
                       pd.NaT]).dt.as_unit(unit)  # fmt: skip
    if unit == "s":
        times = times.dt.floor("s")
    cases = [times, times.dt.tz_convert("Europe/Paris"), times.dt.tz_localize(None)]
    if unit == "ns":
        cases.append(times + pd.Timedelta(1, "ns"))  # nanoseconds: pandas' own isoformat
    for series in cases:
        assert iso_times(series) == [None if pd.isna(v) else v.isoformat() for v in series]
    far = pd.Series(np.array(["12000-01-01T00:00:00", "NaT"], dtype="datetime64[us]"))  # past datetime's year 9999
    assert iso_times(far) == ["12000-01-01T00:00:00", None]
