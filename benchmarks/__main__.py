"""Run every benchmark (or those named), print a table, write benchmarks/results/latest.*.

python -m benchmarks                  # everything
python -m benchmarks snapshots        # only some
python -m benchmarks --quick          # fewer repetitions and smaller data (smoke run)
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from datetime import datetime, timezone

from benchmarks.harness import markdown_table, write_results

#: benchmark name -> (module, keyword arguments for a full run, for a quick run)
BENCHMARKS: dict[str, tuple[str, dict, dict]] = {
    "snapshots": ("benchmarks.bench_snapshots", {"repeats": 3, "rows": 10_000_000},
                  {"repeats": 1, "rows": 1_000_000}),
    "runs": ("benchmarks.bench_runs", {"repeats": 3, "runs": 4, "sweep_runs": 16, "metrics": 10_000},
             {"repeats": 1, "runs": 2, "sweep_runs": 4, "metrics": 10_000}),
    "extension": ("benchmarks.bench_extension", {"repeats": 3, "runs": 1000, "compare_runs": (50, 1000)},
                  {"repeats": 1, "runs": 1000, "compare_runs": (50, 1000)}),
    "serving": ("benchmarks.bench_serving", {"repeats": 3, "seconds": 15.0}, {"repeats": 1, "seconds": 5.0}),
    # MLflow's search_runs takes minutes per call at 100,000 runs (measured): side by side at 20,000,
    # then 100,000 with MLflow given one time-limited trial.
    # The wide run table (issue 21): 30,000 runs x 100 metrics, all at once, vs one time-limited MLflow call.
    "query": ("benchmarks.bench_query", {"repeats": 3, "runs": 20_000, "scale_runs": 100_000, "wide_runs": 30_000},
              {"repeats": 1, "runs": 10_000, "scale_runs": 0, "wide_runs": 2_000}),
    # The team server (issue 18): MLflow's log_metric loop over HTTP takes ~100 s for 10,000 points: time-limited.
    "team": ("benchmarks.bench_team", {"repeats": 3, "metrics": 10_000, "loop_limit_s": 60.0, "query_runs": 100_000},
             {"repeats": 1, "metrics": 10_000, "loop_limit_s": 15.0, "query_runs": 20_000}),
    # Live model quality (issue 19): shadow on vs off, probabilities logged or not, /feedback ingestion.
    "live": ("benchmarks.bench_live", {"repeats": 5, "seconds": 8.0}, {"repeats": 1, "seconds": 3.0}),
    # Batch scoring (issue 20): wb.predict on a 5M-row snapshot vs a pandas row-group loop and MLflow pyfunc.
    "predict": ("benchmarks.bench_predict", {"repeats": 3, "rows": 5_000_000}, {"repeats": 1, "rows": 500_000}),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, smaller data")
    parser.add_argument("--output", default="latest", help="results file stem under benchmarks/results/")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    comparisons = []
    for name in args.names or list(BENCHMARKS):
        module, full, quick = BENCHMARKS[name]
        print(f"== {name}", file=sys.stderr, flush=True)
        comparisons += importlib.import_module(module).run(**(quick if args.quick else full))
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "quick": args.quick,
    }
    path = write_results(comparisons, meta, args.output)
    print(markdown_table(comparisons, meta))
    print(f"written: {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
