"""Every stored file is checked against its hash before it is read.

The attack: swap a file in the blob store for another *valid* file of the same kind (another
model, another snapshot's Parquet, another notebook). Nothing about the file looks broken, so
only the hash catches it. Every reader must refuse with `BlobIntegrityError` naming the file and
`workbench doctor`, and the doctor must list the damaged files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli_in_process

import workbench as wb
from workbench import blobs
from workbench.catalog import connect
from workbench.doctor import run_checks
from workbench.errors import BlobIntegrityError
from workbench.runs.store import artifact_path, executed_notebook_path, load_artifact, read_executed_notebook
from workbench.serving.models import load_version


def swap(target: Path, source: Path) -> None:
    """Replace `target` by a copy of `source` the way an attacker with write access would."""
    copy = target.with_name(target.name + ".swap")
    shutil.copyfile(source, copy)
    os.replace(copy, target)


def refused(call, path: Path) -> BlobIntegrityError:
    with pytest.raises(BlobIntegrityError) as err:
        call()
    assert str(path) in err.value.message
    assert "workbench doctor" in err.value.hint
    return err.value


def assert_cli_doctor_lists(capsys, path: Path) -> None:
    proc = run_cli_in_process(capsys, "doctor", "--json")
    assert proc.returncode == 1
    assert any(f["severity"] == "error" and str(path) in f["message"] for f in json.loads(proc.stdout))


def doctor_errors(ws) -> str:
    return "\n".join(f.message for f in run_checks(ws) if f.severity == "error")


def _log_model(C: float, X: pd.DataFrame, y: pd.Series) -> str:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=500)).fit(X, y)
    wb.log_model(model, "wine", sample=X.head())
    run_id = wb.active_run_id()
    wb.end_run()
    return run_id


def test_swapped_model_file_is_refused_by_every_loader(ws, wine_frame, capsys):
    X, y = wine_frame.drop(columns="target"), wine_frame["target"]
    good, other = _log_model(1.0, X, y), _log_model(0.01, X, y)
    version = wb.promote(good)
    model, _ = wb.load_model(version.ref)  # intact: loads
    path = blobs.blob_path(ws, version.blob)
    swap(path, blobs.blob_path(ws, wb.get_run(other).artifact("wine").blob))

    err = refused(lambda: wb.load_model(version.ref), path)
    assert f"model {version.ref}" in err.message
    refused(lambda: load_version(ws, version.ref), path)
    refused(lambda: load_artifact(good, "wine", ws), path)
    refused(lambda: artifact_path(good, "wine", ws), path)

    errors = doctor_errors(ws)
    assert f"{path} (model {version.ref})" in errors and f"{path} (artifact wine of run {good})" in errors
    assert_cli_doctor_lists(capsys, path)


def _two_versions(ws) -> tuple[wb.Snapshot, wb.Snapshot, wb.Snapshot]:
    first = wb.snapshot("x", pd.DataFrame({"id": [1, 2, 3], "v": [1.0, 2.0, 3.0]}))
    second = wb.snapshot("x", pd.DataFrame({"id": [1, 2, 3, 4], "v": [1.0, 2.5, 3.0, 4.0]}))
    other = wb.snapshot("y", pd.DataFrame({"id": [7, 8], "v": [0.0, 0.0]}))
    return first, second, other


def test_swapped_snapshot_file_is_refused_by_every_reader(ws, tmp_path, capsys):
    first, second, other = _two_versions(ws)
    assert len(wb.load_snapshot("x@1")) == 3  # verified once and remembered: the swap must still be seen
    path = blobs.blob_path(ws, first.blob)
    swap(path, blobs.blob_path(ws, other.blob))

    err = refused(lambda: wb.load_snapshot("x@1"), path)
    assert "snapshot x@1" in err.message
    refused(lambda: wb.sql("select count(*) from snapshot('x@1')"), path)
    refused(lambda: wb.export_snapshot("x@1", tmp_path / "out.csv"), path)
    refused(lambda: wb.diff_snapshots("x@1", "x@2", key="id"), path)
    assert not (tmp_path / "out.csv").exists()

    assert len(wb.load_snapshot("x@2")) == 4  # other versions and names are unaffected
    assert wb.sql("select count(*) as n from y")["n"][0] == 2
    assert f"{path} (snapshot x@1)" in doctor_errors(ws)
    assert_cli_doctor_lists(capsys, path)


def test_latest_view_is_checked_too(ws):
    _, second, other = _two_versions(ws)
    path = blobs.blob_path(ws, second.blob)
    swap(path, blobs.blob_path(ws, other.blob))
    refused(lambda: wb.sql("select count(*) from x"), path)


def test_file_rewritten_in_place_is_refused(ws):
    snap = wb.snapshot("x", pd.DataFrame({"id": [1, 2, 3]}))
    assert len(wb.load_snapshot("x")) == 3
    path = blobs.blob_path(ws, snap.blob)
    other = wb.snapshot("y", pd.DataFrame({"id": [4, 5, 6]}))
    path.write_bytes(blobs.blob_path(ws, other.blob).read_bytes())  # same inode, new content
    refused(lambda: wb.load_snapshot("x"), path)


def _forget_file_hashes(ws) -> None:
    """Make every snapshot row look registered by an older Workbench (no file hash)."""
    with connect(ws) as con:
        con.execute("UPDATE snapshots SET file_sha256 = NULL")


def test_legacy_snapshot_rows_are_checked_by_their_data_digest(ws):
    first, _, other = _two_versions(ws)
    _forget_file_hashes(ws)
    assert len(wb.load_snapshot("x@1")) == 3  # no file hash: the data digest is checked instead
    warnings = [f for f in run_checks(ws) if f.severity == "warning" and "no recorded file hash" in f.message]
    assert warnings and warnings[0].fixable
    run_checks(ws, fix=True)  # records the hash of the files whose data checked out
    assert wb.get_snapshot("x@1").file_sha256 == blobs.sha256_file(blobs.blob_path(ws, first.blob))

    _forget_file_hashes(ws)
    path = blobs.blob_path(ws, first.blob)
    swap(path, blobs.blob_path(ws, other.blob))
    refused(lambda: wb.load_snapshot("x@1"), path)
    assert f"{path} (snapshot x@1)" in doctor_errors(ws)
    run_checks(ws, fix=True)
    assert wb.get_snapshot("x@1").file_sha256 is None  # a damaged file's hash is never recorded


def test_registering_the_same_data_replaces_a_damaged_copy(ws):
    frame = pd.DataFrame({"id": [1, 2, 3]})
    first = wb.snapshot("x", frame)
    path = blobs.blob_path(ws, first.blob)
    path.write_bytes(b"not parquet at all")
    again = wb.snapshot("z", frame)  # same data, same blob id: the damaged copy is replaced
    assert again.blob == first.blob
    pd.testing.assert_frame_equal(wb.load_snapshot("x"), frame, check_dtype=False)
    pd.testing.assert_frame_equal(wb.load_snapshot("z"), frame, check_dtype=False)
    assert not [f for f in run_checks(ws) if f.check == "snapshot data" and f.severity == "error"]


def test_swapped_artifact_is_refused(ws):
    wb.log_text("the real notes", "notes.txt")
    wb.log_text("something else", "other.txt")
    run_id = wb.active_run_id()
    wb.end_run()
    run = wb.get_run(run_id)
    path = blobs.blob_path(ws, run.artifact("notes.txt").blob)
    assert load_artifact(run, "notes.txt", ws) == "the real notes"
    swap(path, blobs.blob_path(ws, run.artifact("other.txt").blob))
    refused(lambda: load_artifact(run, "notes.txt", ws), path)
    refused(lambda: artifact_path(run, "notes.txt", ws), path)
    assert f"{path} (artifact notes.txt of run {run_id})" in doctor_errors(ws)


def test_missing_blob_is_a_clear_error(ws):
    wb.log_text("notes", "notes.txt")
    run_id = wb.active_run_id()
    wb.end_run()
    path = blobs.blob_path(ws, wb.get_run(run_id).artifact("notes.txt").blob)
    path.unlink()
    with pytest.raises(wb.NotFoundError, match="missing from the blob store") as err:
        load_artifact(run_id, "notes.txt", ws)
    assert str(path) in err.value.message and "workbench doctor" in err.value.hint


@pytest.mark.slow
def test_swapped_notebooks_are_refused(ws, notebook):
    first = wb.run(notebook("first", "n = 1", "x = n + 1"), experiment="nb")
    second = wb.run(notebook("second", "n = 2", "y = n * 3"), experiment="nb")
    assert first.status == second.status == "finished"
    assert json.loads(read_executed_notebook(first.run_id, ws))["cells"]

    output = blobs.blob_path(ws, first.output_blob)
    swap(output, blobs.blob_path(ws, second.output_blob))
    refused(lambda: read_executed_notebook(first.run_id, ws), output)
    refused(lambda: executed_notebook_path(first.run_id, ws), output)

    source = blobs.blob_path(ws, first.notebook_blob)
    swap(source, blobs.blob_path(ws, second.notebook_blob))
    refused(lambda: wb.rerun(first.run_id), source)  # would otherwise execute the other notebook's code
    errors = doctor_errors(ws)
    assert f"{output} (executed notebook of run {first.run_id})" in errors
    assert f"{source} (notebook source of run {first.run_id})" in errors
