"""Snapshot registration of a large generated CSV vs DuckDB's own load and vs pandas + hashing.

Run a single trial: `python -m benchmarks.bench_snapshots CASE CSV WORKDIR`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Comparison, interleave, report_trial, run_trial

MODULE = "benchmarks.bench_snapshots"


def generate_csv(path: Path, rows: int) -> Path:
    import duckdb

    if not path.exists():
        duckdb.connect().execute(
            "COPY (SELECT i AS id, i * 0.5 AS x, 'label-' || (i % 97) AS s, random() AS r, "
            f"(i % 7)::INTEGER AS k FROM range({int(rows)}) t(i)) TO '{path}' (HEADER)"
        )
    return path


def trial(case: str, csv: str, workdir: str) -> None:
    work = Path(workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Imports and workspace creation happen before the clock starts: users register into an
    # existing workspace from a running process.
    import duckdb
    import pandas as pd

    from workbench.snapshots import register
    from workbench.workspace import init_workspace

    ws = init_workspace(work / ".workbench") if case == "workbench" else None
    start = time.perf_counter()
    if case == "workbench":
        extra = {"rows": register("big", csv, ws=ws).row_count}
    elif case == "duckdb_ctas":
        con = duckdb.connect(str(work / "ctas.duckdb"))
        con.execute(f"CREATE TABLE t AS SELECT * FROM read_csv('{csv}')")
        extra = {"rows": con.execute("SELECT count(*) FROM t").fetchone()[0]}
        con.close()
    elif case == "pandas_hash":
        frame = pd.read_csv(csv)
        pd.util.hash_pandas_object(frame, index=False).sum()
        extra = {"rows": len(frame)}
    else:
        raise SystemExit(f"unknown case {case}")
    seconds = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)
    report_trial(seconds, **extra)


def run(repeats: int = 3, rows: int = 10_000_000) -> list[Comparison]:
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-snap-"))
    try:
        csv = str(generate_csv(scratch / f"data_{rows}.csv", rows))
        work = str(scratch / "work")
        series = interleave(
            {
                "workbench snapshot add": lambda: run_trial(MODULE, "workbench", [csv, work]),
                "duckdb CREATE TABLE AS read_csv": lambda: run_trial(MODULE, "duckdb_ctas", [csv, work]),
                "pandas.read_csv + hash": lambda: run_trial(MODULE, "pandas_hash", [csv, work]),
            },
            repeats,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    wb_series = series["workbench snapshot add"]
    peak = wb_series.summary("peak_rss_mb")["median"]
    note = f"{rows:,} rows; Workbench peak RSS {peak:.0f} MB (target < 2048 MB)"
    return [
        Comparison(f"snapshot add {rows // 1_000_000}M-row CSV vs DuckDB CTAS", wb_series,
                   series["duckdb CREATE TABLE AS read_csv"], target=1.25, note=note),
        Comparison(f"snapshot add {rows // 1_000_000}M-row CSV vs pandas+hash", wb_series,
                   series["pandas.read_csv + hash"], target=None),
        Comparison("snapshot add peak memory vs pandas", wb_series, series["pandas.read_csv + hash"],
                   metric="peak_rss_mb", target=None),
    ]  # fmt: skip


if __name__ == "__main__":
    trial(*sys.argv[1:4])
