"""Disk full: a clear error and no partial records.

Two ways of running out of space are simulated, neither needing root:

* in-process, an `OSError(ENOSPC)` injected where the blob store writes (`shutil.copyfile`,
  `os.fsync`, `os.replace`), i.e. exactly where a full disk reports itself;
* in a real `workbench` CLI process, `RLIMIT_FSIZE` (what `ulimit -f` sets): every write past the
  limit fails with EFBIG in the kernel, DuckDB's own C++ writes included, as on a full disk.

After each failure nothing is half-recorded: no snapshot row, no artifact event, no blob, no
scratch file, and the catalog still opens.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess

import duckdb
import pandas as pd
import pytest
from conftest import VENV_BIN

import workbench as wb
from workbench import blobs
from workbench.catalog import connect
from workbench.models.registry import ALIAS_FILE, model_dir
from workbench.runs.events import EVENTS_FILE, read_events, run_dir


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _store_files(ws) -> tuple[set[str], list[str]]:
    stored = set(blobs.iter_blob_ids(ws))
    scratch = [p.name for p in ws.tmp_dir.iterdir()] if ws.tmp_dir.is_dir() else []
    return stored, scratch


def test_disk_full_during_snapshot_registration_records_nothing(ws, monkeypatch):
    frame = pd.DataFrame({"a": range(1000), "b": ["x"] * 1000})
    before, _ = _store_files(ws)
    monkeypatch.setattr(blobs, "_fsync", _enospc)  # fsync is where delayed allocation reports ENOSPC
    with pytest.raises(OSError) as raised:
        wb.snapshot("full", frame)
    assert raised.value.errno == errno.ENOSPC and "No space left" in str(raised.value)
    monkeypatch.undo()
    stored, scratch = _store_files(ws)
    assert stored == before and scratch == []
    with connect(ws) as con:
        assert con.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM audit").fetchone()[0] == 0
    assert wb.snapshot("full", frame).version == 1  # space is back: the same call works


def test_disk_full_during_log_artifact_records_nothing(ws, tmp_path, monkeypatch):
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3 << 20))
    wb.log_param("p", 1)
    run_id = wb.active_run_id()
    before, _ = _store_files(ws)

    def half_copy(src: object, dst: object, *args: object, **kwargs: object) -> None:
        with open(src, "rb") as reader, open(dst, "wb") as writer:  # type: ignore[arg-type]
            writer.write(reader.read(1 << 20))
        _enospc()

    monkeypatch.setattr(blobs.shutil, "copyfile", half_copy)
    with pytest.raises(OSError) as raised:
        wb.log_artifact(source, "model/weights.bin")
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    stored, scratch = _store_files(ws)
    assert stored == before and scratch == [], "the half-written copy must not stay behind"
    wb.end_run()
    events = list(read_events(run_dir(ws, run_id) / EVENTS_FILE))
    assert not [e for e in events if e.get("t") == "artifact"]
    run = wb.get_run(run_id)
    assert run.status == "finished" and run.artifacts == [] and run.params == {"p": 1}


def test_disk_full_when_renaming_a_blob_into_place(ws, tmp_path, monkeypatch):
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    wb.log_param("p", 1)
    monkeypatch.setattr(os, "replace", _enospc)
    with pytest.raises(OSError):
        wb.log_artifact(source)
    monkeypatch.undo()
    assert _store_files(ws)[1] == []
    wb.end_run()
    assert wb.get_run(wb.runs()["run_id"][0]).artifacts == []


@pytest.fixture()
def promoted(ws, wine_frame):
    from model_fixtures import train_run

    wb.snapshot("wine", wine_frame)
    first, second = train_run(C=0.01), train_run(C=10.0)
    wb.promote(first, "wine")
    return first, second


def _fail_alias_file_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up exactly when the alias file that model servers watch is written."""
    real_replace = os.replace

    def replace(src: object, dst: object, *args: object, **kwargs: object) -> None:
        if str(dst).endswith(ALIAS_FILE):
            _enospc()
        real_replace(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)


def test_disk_full_during_promotion_leaves_catalog_and_alias_file_agreeing(ws, promoted, monkeypatch):
    first, second = promoted
    _fail_alias_file_writes(monkeypatch)
    with pytest.raises(OSError):
        wb.promote(second, "wine")
    monkeypatch.undo()
    on_disk = __import__("json").loads((model_dir(ws, "wine") / ALIAS_FILE).read_text())["aliases"]
    leftovers = [p.name for p in model_dir(ws, "wine").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], "the scratch copy of the alias file must not stay behind"
    assert wb.get_model_version("wine@production").version == on_disk["production"]


def test_disk_full_during_promotion_does_not_corrupt_the_registry(ws, promoted, monkeypatch):
    """What does hold today: versions stay dense, a retry converges, nothing is duplicated."""
    first, second = promoted
    _fail_alias_file_writes(monkeypatch)
    with pytest.raises(OSError) as raised:
        wb.promote(second, "wine")
    assert raised.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert wb.promote(second, "wine").version == 2  # the retry reuses the version, no third one
    assert sorted(v["version"] for v in wb.get_model("wine")["versions"]) == [1, 2]
    on_disk = __import__("json").loads((model_dir(ws, "wine") / ALIAS_FILE).read_text())["aliases"]
    assert on_disk == {"production": 2}


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
def test_cli_snapshot_add_on_a_full_disk_is_a_one_line_error(ws, tmp_path):
    big = tmp_path / "big.csv"
    duckdb.connect().execute(
        f"copy (select i, random() as r, md5(i::varchar) as h from range(300000) t(i)) to '{big}' (header)"
    )
    catalog_size = ws.catalog_path.stat().st_size
    limit = catalog_size + (2 << 20)  # room for the catalog to grow a little, not for the Parquet file
    env = dict(os.environ, WORKBENCH_HOME=str(ws.root), COLUMNS="200", NO_COLOR="1")
    proc = subprocess.run(
        [str(VENV_BIN / "workbench"), "snapshot", "add", "big", str(big)],
        capture_output=True, text=True, env=env, timeout=180, preexec_fn=_limit_file_size(limit),
    )  # fmt: skip
    print(f"\n[disk full] exit {proc.returncode}; stderr:\n{proc.stderr.strip()[:2000]}")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, "a full disk must be a one-line error, not a traceback"
    assert proc.stderr.strip().lower().startswith("error")
    with connect(ws) as con:
        assert con.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 0
    assert _store_files(ws) == (set(), [])
    assert shutil.disk_usage(ws.root).free > 0
