"""The JupyterLab front end with 1,000 runs: the Runs table and the Compare view in headless Chromium.

Issue 7 item 7: the runs view and the Compare view each show 1,000 runs in under 2 s; issue 21:
the whole Compare view (every chart and the table) drawn in under 2 s for 50 runs and under 3 s
for 1,000. The sidebar
lists only the 50 most recent runs since issue 16; all of them are in the main-area Runs table,
so that is what is timed here. There is no other tool to race here, so each figure is an absolute
time set against its target: the "baseline" series is that constant target (not a
measurement), the ratio is measured / target and the figure is met when the ratio is <= 1.

Setup (once, untimed): a workspace with `runs` finished runs recorded through the real run
lifecycle (`create_run` + `record.end("finished")`, then one `ingest_pending`), each with three
params, a 5-step `loss` curve and an `accuracy`. Every trial is a fresh process that starts its
own `jupyter lab` on that workspace (`tests/lab_server.py`, as the browser tests do) and a fresh
headless Chromium, loads JupyterLab, opens the Workbench sidebar, then times

- Runs: from clicking the sidebar's *All runs…* to every one of the `runs` rows loaded in the Runs
  table (REST, columnar JSON, the grid's first paint);
- Compare: with the first `compare_runs` rows of the table selected (50, and all 1,000: a separate
  lab and browser for each size, so each is the first Compare of its page and server process),
  from clicking *Compare* to the first plotly chart painted (`compare_s`; the plotly chunk is
  fetched and evaluated when runs are selected, which a benchmark does only milliseconds before
  clicking), and to all charts plus the diff table (`compare_all_s`): every chart box holds a
  drawn plotly chart, as many as the compare API sent figures. (Until 2026-12-01 this counted the
  page's `.main-svg` elements, but plotly draws two per chart, so it was met when about half the
  charts were drawn: with the old drawing order, the parallel coordinates and the three charts
  before them, not the three after.)

Times are taken in the page (`performance.now()`): from the click's pointerdown to the first
painted frame after the condition holds (MutationObserver, then requestAnimationFrame + a task),
so browser-driver round trips are not counted. `compare_all_s` (all charts and the diff table)
is polled every 20 ms, so it can be up to ~20 ms (plus one round trip) late.

Run a single trial: `python -m benchmarks.bench_extension lab ROOT RUNS COMPARE_RUNS`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Comparison, Series, Trial, report_trial, run_trial

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the lab launcher the browser tests use

from lab_server import CHROMIUM, CHROMIUM_ARGS, labextension_dir, running_lab  # noqa: E402

MODULE = "benchmarks.bench_extension"
TARGET_S = 2.0
#: Issue 21: the whole Compare view (all charts + the table) by the number of runs compared.
ALL_TARGET_S = {50: 2.0, 1000: 3.0}
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
TABLE = "document.querySelector('.wb-RunsTable')"
#: Compare charts drawn so far: chart boxes holding a plotly chart (plotly draws two `.main-svg` per chart).
DRAWN_CHARTS = (
    "[...document.querySelectorAll('.wb-CompareView-chart')].filter(c => c.querySelector('.main-svg')).length"
)


def build_workspace(root: Path, runs: int) -> None:
    """`runs` finished runs written through the run lifecycle, then indexed in one go.

    `ingest_pending` (rather than `ingest_all`) also clears the runs' "pending" markers, so the
    server's first request does not re-index all of them inside a timed trial.
    """
    from workbench.runs.ingest import ingest_pending
    from workbench.runs.lifecycle import create_run
    from workbench.workspace import init_workspace

    ws = init_workspace(root / ".workbench")
    for i in range(runs):
        rec = create_run(ws, experiment="bench", kind="notebook", notebook="train.ipynb",
                         params={"lr": 10.0 ** -(i % 4), "depth": i % 7, "seed": i})  # fmt: skip
        for step in range(5):
            rec.writer.emit("metric", key="loss", value=1.0 / (step + 1 + i % 13), step=step, at=None)
        rec.writer.emit("metric", key="accuracy", value=(i * 7919 % 1000) / 1000, step=None, at=None)
        rec.end("finished")
    ingest_pending(ws)
    if any((ws.root / "pending").iterdir()):
        raise RuntimeError("runs are still pending after ingest_pending")


#: In-page clock: `__wbStart` = the click's pointerdown reaching the page; `__wbDone` = the first
#: frame after `test()` holds (a MutationObserver sees the DOM change, then rAF + a task: painted).
WATCH = """([test]) => {
  window.__wbStart = null; window.__wbDone = null;
  document.addEventListener('pointerdown', () => { window.__wbStart ??= performance.now(); },
                            {capture: true, once: true});
  const check = new Function('return (' + test + ')');
  const observer = new MutationObserver(() => {
    if (window.__wbStart !== null && check()) {
      observer.disconnect();
      requestAnimationFrame(() => setTimeout(() => { window.__wbDone = performance.now(); }));
    }
  });
  observer.observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def timed_click(page, selector: str, test: str, timeout_ms: int) -> float:  # noqa: ANN001 - playwright Page
    """Seconds from clicking `selector` to the first painted frame where the JS expression `test` holds."""
    page.evaluate(WATCH, [test])
    page.click(selector)
    page.wait_for_function("window.__wbDone !== null", timeout=timeout_ms)
    return page.evaluate("(window.__wbDone - window.__wbStart) / 1000")


def measure(url: str, runs: int, compare_runs: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.goto(url)
            page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
            page.click(SIDEBAR_TAB, timeout=30_000)
            page.wait_for_selector(".wb-Runs-all", timeout=30_000)
            page.wait_for_timeout(1000)  # let JupyterLab finish its start-up requests

            loaded = (f"{TABLE} !== null && {TABLE}.dataset.state === 'complete'"
                      f" && Number({TABLE}.dataset.rows) >= {runs}")  # fmt: skip
            try:
                runs_s = timed_click(page, ".wb-Runs-all", loaded, 60_000)
            except Exception as exc:
                shown = page.evaluate(f"{TABLE} && {TABLE}.dataset.rows")
                raise RuntimeError(f"the Runs table shows {shown} rows, not {runs}") from exc

            # Select the first `compare_runs` rows as a user would: click the first, shift-click the last.
            ticked = page.evaluate(
                f"(n) => {{ const t = {TABLE}.wbRunsTable; t.clickRow(0, 'only'); t.clickRow(n - 1, 'range');"
                " return t.selection.length; }",
                compare_runs,
            )
            page.wait_for_function(
                f"document.querySelector('.wb-RunsTable-compare').textContent === 'Compare ({ticked})'",
                timeout=10_000,
            )
            answers: list = []  # the compare API's response: how many charts the view will draw
            page.on("response", lambda r: answers.append(r) if "/workbench/api/compare" in r.url else None)
            chart = "document.querySelector('.wb-CompareView-chart .main-svg') !== null"
            compare_s = timed_click(page, ".wb-RunsTable-compare", chart, 120_000)
            started = page.evaluate("window.__wbStart")
            deadline = time.monotonic() + 60
            while not answers and time.monotonic() < deadline:
                page.wait_for_timeout(10)
            total = len(answers[0].json().get("figures") or {}) if answers else 1
            page.wait_for_function(
                f"{DRAWN_CHARTS} >= {total} && document.querySelector('.wb-CompareView-diff') !== null",
                timeout=60_000,
                polling=20,
            )
            compare_all_s = (page.evaluate("performance.now()") - started) / 1000
        finally:
            browser.close()
    return {"compare_s": compare_s, "compare_all_s": compare_all_s, "compared": ticked, "figures": total,
            "runs_s": runs_s}  # fmt: skip


def trial(case: str, root: str, runs: str, compare_runs: str) -> None:
    if case != "lab":
        raise SystemExit(f"unknown case {case}")
    extension = labextension_dir()
    if CHROMIUM is None or extension is None:
        raise SystemExit("Needs chromium on PATH (apt-get install -y chromium) and a built extension (make setup).")
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-lab-"))
    try:
        with running_lab(Path(root), scratch, extension, timeout=60) as lab:
            result = measure(lab["url"], int(runs), int(compare_runs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report_trial(result.pop("runs_s"), **result)


def run(repeats: int = 3, runs: int = 1000, compare_runs: tuple[int, ...] = (50, 1000)) -> list[Comparison]:
    """`repeats` rounds; each round one fresh lab + browser per Compare size (the first Compare of a page)."""
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-ext-"))
    series = {size: Series("Workbench in JupyterLab") for size in compare_runs}
    try:
        root = scratch / "root"
        root.mkdir()
        build_workspace(root, runs)
        for _ in range(repeats):
            for size in compare_runs:
                trial_args = [str(root), str(runs), str(size)]
                series[size].trials.append(run_trial(MODULE, "lab", trial_args, timeout=600))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The baseline is the target itself, one constant "trial" per measured one: not a measurement.
    how = "ratio = measured / target; met when <= 1; the baseline column is the target, not a measured tool"
    every = Series("Workbench in JupyterLab", [t for s in series.values() for t in s.trials])
    note = f"{runs:,} finished runs, fresh lab + Chromium per trial; {how}"
    title = f"Runs table shows {runs:,} runs (All runs… click -> every row loaded)"
    results = [Comparison(title, every, _target(every), target=1.0, note=note)]
    for subject in series.values():
        compared, figures = subject.trials[0].extra["compared"], subject.trials[0].extra["figures"]
        all_target = ALL_TARGET_S.get(compared)
        results += [
            Comparison(f"Compare view, {compared:,} of {runs:,} runs (click -> first plotly chart, s)", subject,
                       _target(subject), metric="compare_s", target=1.0,
                       note=f"first Compare in the page (plotly chunk is prefetched once runs are ticked); {how}. "
                            f"{BEFORE.get(compared, '')}"),
            Comparison(f"Compare view, {compared:,} of {runs:,} runs (click -> all {figures} charts + table, s)",
                       subject, _target(subject, all_target or TARGET_S), metric="compare_all_s",
                       target=1.0 if all_target else None,
                       note=(f"issue 21: {how}. " if all_target else "for information. ") +
                            f"Same trials. {BEFORE_ALL.get(compared, '')}"),
        ]  # fmt: skip
    return results


#: Figures before the fixes of 2026-11-27 (profiled with Chromium traces): all charts were drawn in one
#: task, so the first one was painted only after the last; comparing more than 256 runs failed.
BEFORE = {
    50: "Before: 3.1 s quiet machine, 7.3 s under load (all 7 charts drawn in one task before any paint)",
    1000: "Before: the view failed (run details were requested 300 ids at a time; the filter takes 256)",
}

#: The whole view before the changes of 2026-12-01 (issue 21), re-measured with this count on the same
#: machine right before the final run (the old code: front end and compare package). Profiled (Chromium
#: traces): ~0.85 s of 50 runs' ~1.6 s went to the parallel coordinates' first WebGL drawing (shaders
#: compiled in three new contexts by software GL while the page waits), and 1,000 runs' step curves
#: were 1,000 plotly traces (~0.5 s to build, send and draw). The figures published before (1.89 s and
#: 2.51 s; first chart 0.86 s and 0.98 s) counted `.main-svg` elements and missed the last charts.
BEFORE_ALL = {
    50: "Before: 1.91 s (first chart 0.81 s); published before: 1.89 s, counted before the last 3 charts were drawn",
    1000: "Before: 2.83 s (first chart 1.06 s); published before: 2.51 s, counted before the last 3 charts were drawn",
}


def _target(subject: Series, seconds: float = TARGET_S) -> Series:
    return Series(f"target {seconds:g} s (constant)", [
        Trial(seconds, 0.0, {"compare_s": seconds, "compare_all_s": seconds}) for _ in subject.trials])  # fmt: skip


if __name__ == "__main__":
    trial(*sys.argv[1:5])
