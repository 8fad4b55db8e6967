"""Property-based and hostile input for names, version specs, SQL and expectations.

Whatever text arrives as a name or reference, the result is either a valid object or a clear
`WorkbenchError`; nothing is written outside the workspace and the catalog stays intact.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import workbench as wb
from workbench.catalog import connect
from workbench.errors import WorkbenchError
from workbench.names import NAME_PATTERN, parse_ref, validate_name

HOSTILE = [
    "x'; DROP TABLE snapshots; --",
    'x"; DELETE FROM audit; --',
    "../../etc/passwd",
    "/etc/passwd",
    "..",
    "a/../../b",
    "a\\b",
    "a\x00b",
    "name with spaces",
    "ünïcödé",
    "a" * 129,
    "",
    " ",
    "a@b@c",
    "$(rm -rf ~)",
    "snapshot('x')",
]

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.text(max_size=140))
def test_validate_name_accepts_exactly_the_documented_pattern(text):
    legal = bool(NAME_PATTERN.match(text)) and ".." not in text
    try:
        assert validate_name(text) == text
        assert legal
    except WorkbenchError:
        assert not legal


@FAST
@given(st.text(max_size=40), st.one_of(st.integers(-5, 10**12), st.text(max_size=12)))
def test_parse_ref_never_crashes(name, spec):
    text = f"{name}@{spec}"
    try:
        ref = parse_ref(text)
    except WorkbenchError:
        return
    assert NAME_PATTERN.match(ref.name)
    assert ref.version is None or ref.version > 0


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_and_nothing_written(ws, tmp_path, name):
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(WorkbenchError):
        wb.snapshot(name, pd.DataFrame({"a": [1]}))
    with pytest.raises(WorkbenchError):
        wb.get_snapshot(name + "@1" if name else "@1")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with connect(ws) as con:
        assert con.execute("select count(*) from snapshots").fetchone()[0] == 0
        assert {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()} >= {
            "snapshots",
            "audit",
        }


def test_injection_in_values_and_columns_is_data(ws):
    evil = "x'); DROP TABLE snapshots; --"
    frame = pd.DataFrame({evil: [evil, "ok"], 'q"uote': [1, 2]})
    snap = wb.snapshot("evil", frame, expect={"allowed_values": {evil: [evil, "ok"]}, "not_null": ['q"uote']})
    assert [c["name"] for c in snap.columns] == [evil, 'q"uote']
    assert snap.profile[evil]["top_values"][0]["value"] in (evil, "ok")
    assert wb.load_snapshot("evil").equals(frame)
    assert wb.sql("select count(*) as n from snapshot('evil@1')")["n"][0] == 2


@pytest.mark.parametrize(
    "query",
    ["select * from snapshot('x''); drop table snapshots; --')", "select * from snapshot('../../etc')"],
)
def test_snapshot_calls_in_sql_are_validated(ws, query):
    with pytest.raises(WorkbenchError):
        wb.sql(query)


@FAST
@given(st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=4))
def test_random_expectation_specs_never_crash(ws, spec):
    try:
        wb.snapshot("t", pd.DataFrame({"a": [1, 2]}), expect=spec)
    except WorkbenchError as exc:
        assert re.search(r"\w", str(exc))
