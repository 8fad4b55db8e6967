"""The run filter language (parsing, errors, SQL safety) and `runs()` results on real catalogs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.catalog import connect, transaction
from workbench.errors import ValidationError
from workbench.runs.filters import BoolOp, Compare, Field, Not, parse_filter, parse_order
from workbench.runs.ingest import ingest_runs
from workbench.runs.lifecycle import create_run
from workbench.runs.query import build_select, experiments_summary, runs

# ------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    "text",
    [
        "metrics.rmse < 0.3 and params.depth >= 5",
        "params.model = 'rf' or (tags.team != \"ml\" and status = 'finished')",
        "metrics.acc > 0.9 and not params.fast = true",
        "experiment = 'wine'",
        "params.name like 'lr%'",
        "params.name not like 'lr%'",
        "params.name ILIKE 'LR%'",
        "params.depth in (3, 5)",
        "params.depth not in (3, '5', true)",
        "metrics.loss is null",
        "metrics.loss IS NOT NULL",
        "metrics.rmse.min < 0.2 and metrics.rmse.max <= 1e3 and metrics.rmse.last > -.5",
        "params.`my key` == 'x' AND tags.`a b`.c <> 'y'",
        "params.lr-rate/2.x >= 1 OR duration > 10 or created_at >= '2024-01-01T00:00:00Z'",
        "run_id = '20240101-000000-00000001' and kind = 'notebook' and sweep_id is null and parent_run_id is not null",
        "((status = 'finished'))",
        "not not status = 'failed'",
        "attributes.status = 'finished'",
    ],
)
def test_good_filters_parse_and_compile(text: str) -> None:
    node = parse_filter(text)
    assert node is not None
    sql = build_select(node, parse_order(None), limit=10)
    assert sql.text.count("?") == len(sql.params)


def test_parse_tree_shape_and_precedence() -> None:
    node = parse_filter("params.a = 1 or params.b = 'x' and not metrics.m.min < 2")
    assert isinstance(node, BoolOp) and node.op == "or"
    left, right = node.items
    assert left == Compare(Field("params", "a"), "=", (1.0,))
    assert isinstance(right, BoolOp) and right.op == "and"
    assert right.items[0] == Compare(Field("params", "b"), "=", ("x",))
    assert right.items[1] == Not(Compare(Field("metrics", "m", "min"), "<", (2.0,)))
    # a trailing .min on a quoted key is the aggregate; a quoted segment is part of the key
    assert parse_filter("metrics.`a.min`.max > 0") == Compare(Field("metrics", "a.min", "max"), ">", (0.0,))
    assert parse_filter("metrics.`x.min` > 0") == Compare(Field("metrics", "x.min", "last"), ">", (0.0,))
    assert parse_filter("params.a = null") == Compare(Field("params", "a"), "isnull", ())
    assert parse_filter("params.a != null") == Compare(Field("params", "a"), "isnull", (), True)
    assert parse_filter("   ") is None


def test_string_escapes() -> None:
    assert parse_filter("params.a = 'it''s'").values == ("it's",)  # type: ignore[union-attr]
    assert parse_filter(r"params.a = 'it\'s'").values == ("it's",)  # type: ignore[union-attr]
    assert parse_filter('params.a = "say ""hi"""').values == ('say "hi"',)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "position", "near"),
    [
        ("metrics.rmse << 0.3", 14, "<<"),
        ("metrics.rmse < << 0.3", 16, "<<"),
        ("metrics.rmse <", 15, "end of filter"),
        ("foo = 1", 1, "foo"),
        ("params. = 1", 7, "params."),
        ("(status = 'x'", 14, "end of filter"),
        ("status = 'x')", 13, ")"),
        ("status = 'x", 10, "'x"),
        ("params.a = 1 and", 17, "end of filter"),
        ("params.a = 1 params.b = 2", 14, "params.b"),
        ("params.a in 1", 13, "1"),
        ("params.a in (1,)", 16, ")"),
        ("params.a like 5", 15, "5"),
        ("params.a is 5", 13, "5"),
        ("params.a not = 5", 14, "="),
        ("metrics.m = 'abc'", 13, "'abc'"),
        ("metrics.m = true", 13, "true"),
        ("metrics.m like 'a%'", 16, "'a%'"),
        ("created_at > 'yesterday'", 14, "'yesterday'"),
        ("params.a < null", 12, "null"),
        ("params.a = 5x", 12, "5x"),
        ("params.a = 1; DROP TABLE runs", 13, ";"),
        ("`params`.a = 1", 1, "`params`.a"),
        ("params.`a = 1", 8, "`a"),
    ],
)
def test_malformed_filters_point_at_the_bad_token(text: str, position: int, near: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_filter(text)
    err = info.value
    assert err.report["position"] == position, err.message
    assert err.report["near"] == near, err.message
    assert repr(text) in err.message and f"position {position}" in err.message
    assert err.hint and "metrics.rmse < 0.3" in err.hint


def test_limits_on_size_and_depth() -> None:
    with pytest.raises(ValidationError, match="nested"):
        parse_filter("(" * 200 + "status = 'x'" + ")" * 200)
    with pytest.raises(ValidationError, match="nested"):
        parse_filter("not " * 200 + "status = 'x'")
    with pytest.raises(ValidationError, match="comparisons"):
        parse_filter(" or ".join(["status = 'x'"] * 300))
    with pytest.raises(ValidationError, match="characters long"):
        parse_filter("status = '" + "x" * 20_000 + "'")
    with pytest.raises(ValidationError, match="NUL"):
        parse_filter("status = 'a\x00'")
    with pytest.raises(ValidationError):
        parse_filter(5)  # type: ignore[arg-type]


def test_order_by_grammar() -> None:
    keys = parse_order(["params.depth asc", "metrics.rmse.min DESC", "created_at"])
    assert [(k.field.label, k.descending) for k in keys] == [
        ("params.depth", False),
        ("metrics.rmse.min", True),
        ("created_at", False),
    ]
    for bad in ["metrics.rmse sideways", "nope", "metrics.rmse desc extra", "", "1"]:
        with pytest.raises(ValidationError, match="order_by"):
            parse_order(bad)
    with pytest.raises(ValidationError):
        parse_order(3)  # type: ignore[arg-type]


def test_random_text_only_ever_raises_validation_error() -> None:
    """Random text is refused with a ValidationError or compiles to SQL with matching parameters.

    Half the inputs are valid filters from the grammar below (`_valid_filters`): a parser that
    refused everything would pass a check that only catches other exceptions, so a share of the
    inputs must be accepted, and every valid filter must be.
    """
    seen = {"inputs": 0, "accepted": 0}

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(st.text(max_size=80), _valid_filters.map(lambda f: f[0])))
    def check(text: str) -> None:
        _parse_or_refuse(text, seen)

    check()
    assert seen["accepted"] >= 0.25 * seen["inputs"], seen


def _parse_or_refuse(text: str, seen: dict[str, int]) -> None:
    """Refused with a ValidationError, or accepted and compiled to SQL whose every value is bound;
    `seen` counts both, so a test can require that some inputs were accepted."""
    seen["inputs"] += 1
    try:
        node = parse_filter(text)
    except ValidationError:
        return
    seen["accepted"] += 1
    sql = build_select(node, parse_order(None), limit=5)
    assert sql.text.count("?") == len(sql.params)


_ALPHABET = st.sampled_from(list("metrics.params.tags.status()'\"`<>=! andornotlikeinisnull0123456789.-_,%"))


@st.composite
def _mangled_filters(draw) -> str:
    """A valid filter with a few characters deleted, replaced or inserted: noise shaped like a
    filter, some of which still parses."""
    text = list(draw(_valid_filters)[0])
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        if action == "insert" or at == len(text):
            text.insert(at, draw(_ALPHABET))
        elif action == "delete":
            del text[at]
        else:
            text[at] = draw(_ALPHABET)
    return "".join(text)


def test_filter_shaped_noise_only_ever_raises_validation_error() -> None:
    """Noise from the filter's own alphabet, and mangled valid filters: refused with a
    ValidationError or accepted; some of it must be accepted for the test to mean anything."""
    seen = {"inputs": 0, "accepted": 0}

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(st.lists(_ALPHABET, max_size=60).map("".join), _mangled_filters()))
    def check(text: str) -> None:
        _parse_or_refuse(text, seen)

    check()
    assert seen["accepted"] >= 0.1 * seen["inputs"], seen


# ------------------------------------------------------------------------------------------
# Results on a dozen real runs


def _make_runs(ws) -> list[str]:
    """12 runs through the real event path: params of several types, metric series, tags, statuses."""
    ids = []
    records = []
    for i in range(12):
        record = create_run(
            ws,
            experiment="wine" if i % 2 == 0 else "iris",
            kind="notebook",
            params={
                "depth": i,
                "model": "rf" if i % 3 == 0 else "lr",
                "name": f"lr-{i}" if i % 4 == 0 else f"x{i}",
                "fast": i % 2 == 1,
                "lr": 0.1 * (i + 1),
                "my key": "spaced",
            },  # fmt: skip
            tags={"team": "ml" if i < 6 else "data"},
        )
        for step, value in enumerate([1.0 - i / 20, 0.5 - i / 40, 0.3 + i / 100]):
            record.writer.emit("metric", key="rmse", value=value, step=step, at=None)
        if i % 5 != 0:
            record.writer.emit("metric", key="acc", value=i / 12, step=0, at=None)
        if i == 0:
            for name, version in [("wine", 2), ("wine", 1), ("extra", 3)]:
                record.writer.emit("input", name=name, version=version)
        record.end("finished" if i != 11 else "failed")
        records.append(record)
        ids.append(record.run_id)
    ingest_runs(ws, ids)
    return ids


@pytest.fixture(scope="module")
def dozen_ws(tmp_path_factory):
    """One read-only workspace with the dozen runs, shared by the result tests (creating it takes a while)."""
    from workbench.workspace import init_workspace

    workspace = init_workspace(tmp_path_factory.mktemp("dozen") / ".workbench")
    return workspace, _make_runs(workspace)


@pytest.fixture()
def ws_dozen(dozen_ws):
    return dozen_ws[0]


@pytest.fixture()
def dozen(dozen_ws):
    return dozen_ws[1]


def _depths(frame: pd.DataFrame) -> list[int]:
    return [int(v) for v in frame["params.depth"]] if len(frame) else []


def test_runs_frame_columns_and_types(ws_dozen, dozen) -> None:
    ws = ws_dozen
    frame = runs(ws=ws)
    assert len(frame) == 12
    assert list(frame.columns[:8]) == ["run_id", "experiment", "status", "created_at", "duration_s", "notebook",
                                       "sweep_id", "parent_run_id"]  # fmt: skip
    assert list(frame.columns[8:]) == [
        "params.depth", "params.fast", "params.lr", "params.model", "params.my key", "params.name",
        "metrics.acc", "metrics.rmse", "tags.team", "inputs",
    ]  # fmt: skip
    row = frame.set_index("run_id").loc[dozen[3]]
    assert frame["params.depth"].dtype.kind == "i" and row["params.depth"] == 3
    assert frame["params.lr"].dtype.kind == "f" and row["params.lr"] == pytest.approx(0.4)
    assert frame["params.fast"].dtype.kind == "b" and bool(row["params.fast"]) is True
    assert row["params.model"] == "rf" and row["params.my key"] == "spaced"
    assert row["metrics.rmse"] == pytest.approx(0.33)  # last value of the series
    assert row["tags.team"] == "ml"
    # default order: newest first
    assert frame["created_at"].is_monotonic_decreasing


def test_filters_select_the_right_runs(ws_dozen, dozen) -> None:
    ws = ws_dozen

    def depths(text: str, **kwargs) -> list[int]:
        with connect(ws):  # one catalog connection for the many queries (nested connects share it)
            return sorted(_depths(runs(filter=text, ws=ws, **kwargs)))

    assert depths("params.depth >= 5 and params.depth < 8") == [5, 6, 7]
    assert depths("params.depth = '5'") == [5]  # strings compare with the text form
    assert depths("params.model = 'rf' or (tags.team != \"ml\" and status = 'finished')") == [0, 3, 6, 7, 8, 9, 10]
    assert depths("metrics.acc > 0.5 and not params.fast = true") == [8]
    assert depths("params.fast = false") == [0, 2, 4, 6, 8, 10]
    assert depths("experiment = 'wine' and params.depth > 6") == [8, 10]
    assert depths("params.name like 'lr%'") == [0, 4, 8]
    assert depths("params.name not like 'lr%' and params.depth < 4") == [1, 2, 3]
    assert depths("params.name ilike 'LR-%'") == [0, 4, 8]
    assert depths("params.depth in (3, 5, '7')") == [3, 5, 7]
    assert depths("params.depth not in (3, 5) and params.depth < 6") == [0, 1, 2, 4]
    assert depths("metrics.acc is null") == [0, 5, 10]
    assert depths("metrics.acc = null") == [0, 5, 10]
    assert depths("metrics.acc is not null and params.depth < 4") == [1, 2, 3]
    assert depths("params.missing is null and params.depth < 2") == [0, 1]
    assert depths("params.missing = 1") == []
    assert depths("params.missing != 1") == []  # a comparison needs the key...
    assert depths("not params.missing = 1 and params.depth < 2") == [0, 1]  # ...plain negation does not
    assert depths("metrics.rmse.min < 0.3") == [9, 10, 11]  # min of the series is 0.5 - i/40
    assert depths("metrics.rmse.max >= 0.9") == [0, 1, 2]
    assert depths("metrics.rmse.last > 0.4") == [11]
    assert depths("params.`my key` = 'spaced' and params.depth = 0") == [0]
    assert depths("status = 'failed'") == [11]
    assert depths("STATUS = 'failed' OR Params.depth = 0") == [0, 11]
    assert depths("params.lr > 0.95") == [9, 10, 11]
    assert depths("created_at > '2000-01-01' and created_at < '2999-01-01'") == list(range(12))
    assert depths("duration >= 0 and kind = 'notebook'") == list(range(12))
    assert depths("sweep_id is null and parent_run_id is null and params.depth = 1") == [1]
    assert depths(f"run_id = '{dozen[4]}'") == [4]
    assert depths("", experiment="iris") == [1, 3, 5, 7, 9, 11]
    assert depths("params.depth < 4", experiment=["wine", "iris"], status="finished") == [0, 1, 2, 3]
    assert depths("params.depth < 4", experiment=[]) == []


def test_order_by_and_limit(ws_dozen, dozen) -> None:
    ws = ws_dozen
    assert _depths(runs(order_by="params.depth", ws=ws)) == list(range(12))
    assert _depths(runs(order_by="params.depth desc", limit=3, ws=ws)) == [11, 10, 9]
    assert _depths(runs(order_by="metrics.rmse", limit=4, ws=ws)) == [0, 1, 2, 3]  # last = 0.3 + i/100
    assert _depths(runs(order_by="metrics.rmse.min", limit=2, ws=ws)) == [11, 10]
    # missing values sort last in both directions
    assert _depths(runs(order_by="metrics.acc desc", ws=ws))[:2] == [11, 9]
    assert sorted(_depths(runs(order_by="metrics.acc desc", ws=ws))[-3:]) == [0, 5, 10]
    assert sorted(_depths(runs(order_by="metrics.acc asc", ws=ws))[-3:]) == [0, 5, 10]
    assert _depths(runs(order_by=["params.model asc", "params.depth desc"], ws=ws)) == [
        11, 10, 8, 7, 5, 4, 2, 1, 9, 6, 3, 0,
    ]  # fmt: skip
    by_team = runs(filter="params.depth > 2", order_by=["tags.team desc", "params.depth"], limit=2, ws=ws)
    assert _depths(by_team) == [3, 4]
    assert len(runs(limit=0, ws=ws)) == 0
    with pytest.raises(ValidationError):
        runs(limit=-1, ws=ws)
    with pytest.raises(ValidationError):
        runs(order_by="metrics.rmse upward", ws=ws)


def test_include_min_max(ws_dozen, dozen) -> None:
    ws = ws_dozen
    frame = runs(filter="params.depth = 2", include_min_max=True, ws=ws)
    assert list(frame.columns[-8:]) == ["metrics.acc", "metrics.acc.min", "metrics.acc.max", "metrics.rmse",
                                        "metrics.rmse.min", "metrics.rmse.max", "tags.team", "inputs"]  # fmt: skip
    row = frame.iloc[0]
    assert row["metrics.rmse"] == pytest.approx(0.32)
    assert row["metrics.rmse.min"] == pytest.approx(0.32)
    assert row["metrics.rmse.max"] == pytest.approx(0.9)


def test_empty_result_has_base_columns(ws_dozen, dozen) -> None:
    ws = ws_dozen
    frame = runs(filter="params.depth > 100", ws=ws)
    assert frame.empty
    assert list(frame.columns) == ["run_id", "experiment", "status", "created_at", "duration_s", "notebook",
                                   "sweep_id", "parent_run_id", "inputs"]  # fmt: skip


def test_experiments_summary_counts_runs_per_experiment(ws_dozen, dozen) -> None:
    summary = experiments_summary(ws=ws_dozen)
    counts = {row["name"]: (row["runs"], row["finished"], row["active"], row["failed"]) for row in summary}
    assert counts == {"iris": (6, 5, 0, 1), "wine": (6, 6, 0, 0)}
    assert [row["name"] for row in summary] == ["iris", "wine"]
    assert all(row["last_run_at"] is not None for row in summary)


def test_injection_attempts_are_just_values(ws_dozen, dozen) -> None:
    ws = ws_dozen
    # As written this is not a filter at all: the ';' is rejected before anything reaches SQL.
    with pytest.raises(ValidationError, match="position 15"):
        runs(filter="params.x = '1'; DROP TABLE runs; --'", ws=ws)
    # Inside quotes it is an ordinary string value, in a key as well as in a value.
    assert runs(filter="params.model = '1''; DROP TABLE runs; --'", ws=ws).empty
    assert runs(filter="params.`x'; DROP TABLE run_params; --` = \"a') OR 1=1 --\"", ws=ws).empty
    assert runs(filter="tags.team like '%'' OR ''1''=''1'", ws=ws).empty
    assert runs(filter="status in ('x''); DELETE FROM runs; --')", ws=ws).empty
    with connect(ws) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 12
        assert con.execute("SELECT count(*) FROM run_params").fetchone()[0] == 72
    assert len(runs(ws=ws)) == 12


def test_inputs_column(ws_dozen, dozen) -> None:
    ws = ws_dozen
    frame = runs(filter="params.depth <= 1", order_by="params.depth", ws=ws)
    assert frame["inputs"].iloc[0] == "extra@3, wine@1, wine@2"
    assert pd.isna(frame["inputs"].iloc[1])


# ------------------------------------------------------------------------------------------
# Grammar-shaped random filters execute (the generated SQL is valid) or fail with ValidationError

_fields = st.sampled_from(["params.p1", "params.p2", "params.`my key`", "metrics.m0", "metrics.m1.min",
                           "metrics.m2.max", "tags.team", "status", "experiment", "duration", "created_at",
                           "sweep_id", "run_id"])  # fmt: skip
_values = st.one_of(
    st.integers(-5, 20).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.text(max_size=6).map(lambda s: "'" + s.replace("'", "''") + "'"),
    st.sampled_from(["true", "false", "null", "'2024-01-01'", "'lr%'"]),
)
_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "like", "not like", "ilike"])


@st.composite
def _predicates(draw) -> str:
    fld = draw(_fields)
    shape = draw(st.integers(0, 3))
    if shape == 0:
        return f"{fld} is {draw(st.sampled_from(['', 'not ']))}null"
    if shape == 1:
        items = ", ".join(draw(st.lists(_values, min_size=1, max_size=3)))
        return f"{fld} {draw(st.sampled_from(['in', 'not in']))} ({items})"
    return f"{fld} {draw(_ops)} {draw(_values)}"


_filters = st.recursive(
    _predicates(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda f: f"not {f}"),
    ),
    max_leaves=6,
)


def test_generated_filters_run_against_the_catalog(ws) -> None:
    """Grammar-shaped filters (some ill-typed, e.g. a metric compared with a string) run as SQL
    or fail with ValidationError; a share of them must run, or the test checks nothing."""
    _bulk_insert(ws, 30)
    seen = {"inputs": 0, "accepted": 0}

    @settings(max_examples=100, deadline=None)
    @given(text=_filters, order=st.sampled_from([None, "metrics.m1 desc", "params.p1", "tags.team", "duration"]))
    def check(text: str, order: str | None) -> None:
        seen["inputs"] += 1
        try:
            frame = runs(filter=text, order_by=order, limit=10, ws=ws)
        except ValidationError:
            return
        seen["accepted"] += 1
        assert len(frame) <= 10

    with connect(ws):  # nested connects reuse this one: no file open per example
        check()
    assert seen["accepted"] >= 0.25 * seen["inputs"], seen


# ------------------------------------------------------------------------------------------
# Valid filters from a typed grammar, checked against pandas on the same data (the oracle)

_N_ORACLE = 40
_int_literals = st.integers(-1, 10)
_float_literals = st.integers(-1100, 2100).map(lambda k: k / 1000)
_teams = st.sampled_from(["t0", "t1", "t2", "t3", "t9"])
_LIKE = {"t%": lambda v: v.str.startswith("t"), "%1": lambda v: v.str.endswith("1"), "t_": lambda v: v.str.len() == 2,
         "x%": lambda v: v.str.startswith("x"), "%": lambda v: v == v}  # fmt: skip
_COMPARE = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}


def _literal(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@st.composite
def _valid_predicates(draw):
    """(filter text, oracle): the oracle maps `_expected(n)` to the boolean mask of matching runs."""
    kind = draw(st.sampled_from(["param", "metric", "param_in", "team", "team_in", "team_like", "status", "null"]))
    j = draw(st.integers(0, 9))
    if kind in ("param", "metric"):
        op = draw(st.sampled_from(list(_COMPARE)))
        if kind == "param":
            column, text_field, value = f"params.p{j}", f"params.p{j}", draw(_int_literals)
            series = lambda f, c=column: f[c]  # noqa: E731
        else:
            agg = draw(st.sampled_from(["", ".last", ".min", ".max"]))
            shift = {"": 0, ".last": 0, ".min": -1, ".max": 1}[agg]
            column, text_field, value = f"metrics.m{j}", f"metrics.m{j}{agg}", draw(_float_literals)
            series = lambda f, c=column, d=shift: f[c] + d if d else f[c]  # noqa: E731
        return f"{text_field} {op} {_literal(value)}", lambda f, s=series, o=_COMPARE[op], v=value: getattr(s(f), o)(v)
    if kind == "param_in":
        values = draw(st.lists(_int_literals, min_size=1, max_size=3))
        negate = draw(st.booleans())
        text = f"params.p{j} {'not in' if negate else 'in'} ({', '.join(map(str, values))})"
        return text, lambda f, c=f"params.p{j}", v=values, n=negate: ~f[c].isin(v) if n else f[c].isin(v)
    if kind == "team":
        op, team = draw(st.sampled_from(["=", "!="])), draw(_teams)
        return f"tags.team {op} '{team}'", lambda f, o=_COMPARE[op], t=team: getattr(f["tags.team"], o)(t)
    if kind == "team_in":
        teams = draw(st.lists(_teams, min_size=1, max_size=3))
        return f"tags.team in ({', '.join(repr(t) for t in teams)})", lambda f, t=teams: f["tags.team"].isin(t)
    if kind == "team_like":
        pattern, negate = draw(st.sampled_from(list(_LIKE))), draw(st.booleans())
        text = f"tags.team {'not like' if negate else 'like'} '{pattern}'"
        return text, lambda f, m=_LIKE[pattern], n=negate: ~m(f["tags.team"]) if n else m(f["tags.team"])
    if kind == "status":
        status = draw(st.sampled_from(["finished", "failed"]))
        return f"status = '{status}'", lambda f, v=status: f["status"] == v
    negate = draw(st.booleans())  # every run has every key: `is not null` is everything
    return f"metrics.m{j} is {'not ' if negate else ''}null", lambda f, n=negate: f["status"].notna() == n


_valid_filters = st.recursive(
    _valid_predicates(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(
            lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})",
                       (lambda f, a=t[0][1], b=t[2][1], op=t[1]: (a(f) & b(f)) if op == "and" else (a(f) | b(f))))
        ),  # fmt: skip
        inner.map(lambda t: (f"not {t[0]}", lambda f, a=t[1]: ~a(f))),
    ),
    max_leaves=5,
)


def test_generated_valid_filters_select_what_pandas_selects(ws) -> None:
    """Every filter of the grammar is accepted and selects exactly the runs pandas selects with
    the same condition on the same data, so a wrong operator, aggregate or precedence shows."""
    _bulk_insert(ws, _N_ORACLE)
    expected = _expected(_N_ORACLE)
    expected["status"] = ["failed" if k % 10 == 0 else "finished" for k in range(_N_ORACLE)]
    sizes = []

    @settings(max_examples=80, deadline=None)
    @given(_valid_filters)
    def check(generated) -> None:
        text, oracle = generated
        got = set(runs(filter=text, ws=ws)["run_id"])
        want = set(expected.loc[oracle(expected), "run_id"])
        assert got == want, (text, sorted(got ^ want)[:5])
        sizes.append(len(want))

    with connect(ws):
        check()
    assert any(0 < n < _N_ORACLE for n in sizes), sizes  # not only "everything" or "nothing"


# ------------------------------------------------------------------------------------------
# Bulk-inserted catalogs


def _bulk_insert(ws, n: int, params: int = 10, metrics: int = 10) -> None:
    """`n` synthetic runs written straight into the catalog (much faster than event files).

    Run i: experiment exp<i % 3>, status failed when i % 10 == 0; params p<j> = (7i + 3j) % 10
    (integers); metrics m<j> with last = ((i * 37 + j * 11) % 1000) / 1000, min = last - 1,
    max = last + 1; tag team = t<i % 4>.
    """
    run_id = "printf('20240101-000000-%08x', i)"
    with transaction(ws) as con:
        con.execute(
            f"INSERT INTO runs (run_id, experiment, kind, status, created_at, duration_s) SELECT {run_id}, "
            "'exp' || (i % 3), 'notebook', CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'finished' END, "
            "TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i), (i % 100)::DOUBLE FROM range(?) t(i)",
            [n],
        )
        con.execute(
            f"INSERT INTO run_params SELECT {run_id}, 'p' || j, to_json(v), v, CAST(v AS VARCHAR) FROM "
            "(SELECT i, j, ((i * 7 + j * 3) % 10)::INTEGER AS v FROM range(?) t(i), range(?) s(j))",
            [n, params],
        )
        con.execute(
            f"INSERT INTO run_metric_summary SELECT {run_id}, 'm' || j, x, x - 1, x + 1, 9, 10 FROM "
            "(SELECT i, j, ((i * 37 + j * 11) % 1000) / 1000 AS x FROM range(?) t(i), range(?) s(j))",
            [n, metrics],
        )
        con.execute(f"INSERT INTO run_tags SELECT {run_id}, 'team', 't' || (i % 4) FROM range(?) t(i)", [n])


def _expected(n: int) -> pd.DataFrame:
    """The same synthetic data computed in pandas, as the oracle."""
    i = pd.Series(range(n))
    frame = pd.DataFrame({"run_id": [f"20240101-000000-{k:08x}" for k in i], "i": i})
    for j in range(10):
        frame[f"params.p{j}"] = (i * 7 + j * 3) % 10
        frame[f"metrics.m{j}"] = ((i * 37 + j * 11) % 1000) / 1000
    frame["status"] = ["failed" if k % 10 == 0 else "finished" for k in i]
    frame["tags.team"] = [f"t{k % 4}" for k in i]
    return frame


def test_two_thousand_runs_query_correctly(ws) -> None:
    n = 2_000
    _bulk_insert(ws, n)
    expected = _expected(n)
    frame = runs(filter="metrics.m0 < 0.5 and params.p1 >= 3", order_by="metrics.m1", limit=100, ws=ws)
    want = expected[(expected["metrics.m0"] < 0.5) & (expected["params.p1"] >= 3)]
    want = want.sort_values(["metrics.m1", "run_id"]).head(100)
    assert list(frame["run_id"]) == list(want["run_id"])
    assert frame.shape == (100, 8 + 10 + 10 + 1 + 1)
    got = frame.set_index("run_id")
    ref = want.set_index("run_id")
    for j in range(10):
        assert (got[f"params.p{j}"] == ref[f"params.p{j}"]).all()
        assert got[f"params.p{j}"].dtype.kind == "i"
        assert got[f"metrics.m{j}"].tolist() == pytest.approx(ref[f"metrics.m{j}"].tolist())
    assert (got["tags.team"] == ref["tags.team"]).all()

    everything = runs(filter="status = 'finished' and tags.team in ('t1', 't2')", order_by="params.p2 desc", ws=ws)
    want = expected[(expected["status"] == "finished") & expected["tags.team"].isin(["t1", "t2"])]
    assert set(everything["run_id"]) == set(want["run_id"])
    assert everything["params.p2"].is_monotonic_decreasing
    assert len(runs(experiment="exp1", ws=ws)) == len(range(1, n, 3))
    minmax = runs(filter="metrics.m3.max > 1.99", include_min_max=True, ws=ws)
    assert len(minmax) == int(((expected["metrics.m3"] + 1) > 1.99).sum())
    assert not math.isnan(minmax["metrics.m3.min"].iloc[0])
