"""Snapshots through the Python API, against a real DuckDB catalog and Parquet blobs."""

from __future__ import annotations

import pandas as pd
import pytest

import workbench as wb
from workbench import blobs
from workbench.catalog import connect
from workbench.errors import DataSourceError, InvalidNameError, NotFoundError, ValidationError


def count_snapshots(ws) -> int:
    with connect(ws) as con:
        return con.execute("select count(*) from snapshots").fetchone()[0]


def test_register_dataframe_records_everything(ws, wine_frame):
    snap = wb.snapshot("wine", wine_frame, description="UCI wine")
    assert (snap.name, snap.version, snap.created) == ("wine", 1, True)
    assert snap.row_count == 178 and len(snap.columns) == 14
    assert {"name": "target", "type": "BIGINT"} in snap.columns
    assert snap.byte_size > 0 and len(snap.content_hash) == 64
    assert snap.description == "UCI wine" and snap.creator and snap.source == "dataframe"
    alcohol = snap.profile["alcohol"]
    assert alcohol["null_count"] == 0
    assert alcohol["min"] == pytest.approx(wine_frame.alcohol.min())
    assert alcohol["max"] == pytest.approx(wine_frame.alcohol.max())
    assert alcohol["mean"] == pytest.approx(wine_frame.alcohol.mean())
    assert 100 < alcohol["distinct_estimate"] < 150
    pd.testing.assert_frame_equal(wb.load_snapshot("wine@1"), wine_frame, check_dtype=False)


def test_string_profile_has_top_values_and_nulls(ws):
    frame = pd.DataFrame({"city": ["a", "b", "a", None, "a"], "n": [1, 2, 3, 4, None]})
    snap = wb.snapshot("cities", frame)
    city = snap.profile["city"]
    assert city["null_count"] == 1
    assert city["top_values"][0] == {"value": "a", "count": 3}
    assert snap.profile["n"]["null_count"] == 1


def test_same_data_dedups_across_sources(ws, wine_frame, tmp_path):
    first = wb.snapshot("wine", wine_frame)
    csv = tmp_path / "wine.csv"
    wine_frame.to_csv(csv, index=False)
    parquet = tmp_path / "wine.parquet"
    wine_frame.to_parquet(parquet)
    again_df = wb.snapshot("wine", wine_frame)
    again_parquet = wb.snapshot("wine", parquet)
    assert again_df.version == 1 and not again_df.created
    assert again_parquet.version == 1 and not again_parquet.created
    assert again_parquet.content_hash == first.content_hash
    changed = wine_frame.copy()
    changed.loc[0, "alcohol"] += 1
    second = wb.snapshot("wine", changed)
    assert second.version == 2 and second.created
    reordered = wine_frame.iloc[::-1].reset_index(drop=True)
    assert wb.snapshot("wine", reordered).version == 3  # order is part of the content
    assert count_snapshots(ws) == 3


def test_versions_and_latest(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    wb.snapshot("wine", wine_frame.head(50))
    assert wb.get_snapshot("wine").version == 2
    assert wb.get_snapshot("wine@latest").version == 2
    assert wb.get_snapshot("wine@1").row_count == 178
    assert list(wb.snapshots()["ref"]) == ["wine@2"]
    assert list(wb.snapshots(all_versions=True)["ref"]) == ["wine@1", "wine@2"]


def test_csv_and_sql_sources(ws, tmp_path):
    csv = tmp_path / "people.csv"
    csv.write_text("id,name,age\n1,ann,31\n2,bob,42\n3,cy,\n")
    snap = wb.snapshot("people", csv)
    assert snap.row_count == 3 and snap.source.startswith("csv:")
    older = wb.snapshot("older", sql="select * from snapshot('people@1') where age > 35")
    assert older.row_count == 1 and older.source.startswith("sql:")
    by_view = wb.sql("select name from people order by id")
    assert list(by_view["name"]) == ["ann", "bob", "cy"]
    assert wb.sql("select count(*) as n from snapshot('people')")["n"][0] == 3


def test_diff_schema_rows_and_keys(ws):
    a = pd.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0], "old": ["p", "q", "r"]})
    b = pd.DataFrame({"id": [2, 3, 4, 5], "x": [2.0, 30.0, 4.0, 5.0], "new": [1, 2, 3, 4]})
    wb.snapshot("t", a)
    wb.snapshot("t", b)
    d = wb.diff_snapshots("t@1", "t@2", key="id")
    assert d.row_count == (3, 4) and d.row_delta == 1
    assert [c["name"] for c in d.columns_added] == ["new"]
    assert [c["name"] for c in d.columns_removed] == ["old"]
    assert (d.rows_added, d.rows_removed, d.rows_changed) == (2, 1, 1)
    assert d.examples["removed"] == [{"id": 1}]
    assert d.profile_changes["x"]["max"] == [3.0, 30.0]
    assert not d.same_content
    with pytest.raises(ValidationError, match="not in both"):
        wb.diff_snapshots("t@1", "t@2", key="old")


def test_expectations_reject_bad_data_and_register_nothing(ws, tmp_path):
    frame = pd.DataFrame({"id": [1, 2, 2], "score": [0.5, 1.5, None], "cls": ["a", "b", "z"]})
    rules = {
        "min_rows": 10,
        "not_null": ["score"],
        "unique": ["id"],
        "ranges": {"score": {"min": 0, "max": 1}},
        "allowed_values": {"cls": ["a", "b"]},
    }
    with pytest.raises(ValidationError) as info:
        wb.snapshot("scores", frame, expect=rules)
    report = info.value.report
    assert report.checked == 5 and len(report.failures) == 5
    failed = {f.expectation: f for f in report.failures}
    assert failed["ranges"].failed_rows == 1 and failed["ranges"].examples[0]["score"] == 1.5
    assert failed["allowed_values"].examples[0]["cls"] == "z"
    assert failed["unique"].failed_rows == 2
    assert count_snapshots(ws) == 0
    assert list(blobs.iter_blob_ids(ws)) == []
    good = tmp_path / "rules.yaml"
    good.write_text("not_null: [id]\nranges: {score: {min: 0, max: 2}}\nmin_rows: 3\n")
    assert wb.snapshot("scores", frame, expect=str(good)).version == 1


@pytest.mark.parametrize(
    "rules, message",
    [
        ({"not_nul": ["a"]}, "Unknown expectation"),
        ({"not_null": ["nope"]}, "does not have"),
        ({"ranges": {"id": {"low": 1}}}, "min"),
        ({"min_rows": -1}, "non-negative"),
    ],
)
def test_malformed_expectations(ws, rules, message):
    with pytest.raises(ValidationError, match=message):
        wb.snapshot("x", pd.DataFrame({"id": [1]}), expect=rules)
    assert count_snapshots(ws) == 0


def test_export_roundtrip(ws, wine_frame, tmp_path):
    wb.snapshot("wine", wine_frame)
    out_csv = wb.export_snapshot("wine@1", tmp_path / "out.csv")
    out_pq = wb.export_snapshot("wine", tmp_path / "out.parquet")
    assert len(pd.read_csv(out_csv)) == 178
    pd.testing.assert_frame_equal(pd.read_parquet(out_pq), wine_frame, check_dtype=False)
    with pytest.raises(DataSourceError, match="unknown format"):
        wb.export_snapshot("wine", tmp_path / "out.xlsx")


@pytest.mark.parametrize("name", ["", "1abc", "a b", "a;drop table snapshots", "../x", "a/b", "é"])
def test_illegal_names(ws, name):
    with pytest.raises(InvalidNameError):
        wb.snapshot(name, pd.DataFrame({"a": [1]}))
    assert count_snapshots(ws) == 0


@pytest.mark.parametrize("ref", ["wine@0", "wine@x", "wine@", "@1", "wine@1@2", "wine@-1"])
def test_malformed_refs(ws, ref):
    with pytest.raises(InvalidNameError):
        wb.get_snapshot(ref)


def test_unknown_snapshot_and_version(ws, wine_frame):
    with pytest.raises(NotFoundError, match="No snapshot named"):
        wb.load_snapshot("nope")
    wb.snapshot("wine", wine_frame)
    with pytest.raises(NotFoundError, match="has versions 1"):
        wb.get_snapshot("wine@7")


def test_bad_sources(ws, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    corrupt = tmp_path / "bad.parquet"
    corrupt.write_bytes(b"this is not parquet at all")
    cases = [
        (tmp_path / "missing.csv", "not found"),
        (empty, "empty"),
        (corrupt, "Could not read"),
        (tmp_path / "notes.xlsx", "not found"),
        (42, "Cannot make a snapshot"),
    ]
    for source, message in cases:
        with pytest.raises(DataSourceError, match=message):
            wb.snapshot("bad", source)
    with pytest.raises(DataSourceError, match="SQL|Could not read"):
        wb.snapshot("bad", sql="select * from no_such_table")
    assert count_snapshots(ws) == 0
    assert list(blobs.iter_blob_ids(ws)) == []


def test_registration_is_audited_once(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    wb.snapshot("wine", wine_frame)  # dedup: no state change, no entry
    entries = wb.audit_log(target="wine")
    assert [(e.action, e.target) for e in entries] == [("snapshot.registered", "wine@1")]
