"""The JupyterLab front end with 1,000 runs: Runs section and Compare view in headless Chromium.

Issue 7 item 7: the Runs section and the Compare view each show 1,000 runs in under 2 s. There is
no other tool to race here, so each figure is an absolute time set against the 2 s target: the
"baseline" series is that constant target (not a measurement), the ratio is measured / 2 s and
the figure is met when the ratio is <= 1.

Setup (once, untimed): a workspace with `runs` finished runs recorded through the real run
lifecycle (`create_run` + `record.end("finished")`, then one `ingest_pending`), each with three
params, a 5-step `loss` curve and an `accuracy`. Every trial is a fresh process that starts its
own `jupyter lab` on that workspace and a fresh headless Chromium, loads JupyterLab, then times

- Runs: from clicking the Workbench sidebar tab to `runs` rows in the Runs table (the sidebar's
  first REST calls, JSON, DOM rendering);
- Compare: with the first `compare_runs` rows ticked (50, and all 1,000: a separate lab and
  browser for each size, so each is the first Compare of its page and server process), from
  clicking *Compare* to the first plotly chart painted (`compare_s`; the plotly chunk is fetched
  and evaluated when runs are ticked, which a benchmark does only milliseconds before clicking),
  and to all charts plus the diff table (`compare_all_s`).

Times are taken in the page (`performance.now()`): from the click's pointerdown to the first
painted frame after the condition holds (MutationObserver, then requestAnimationFrame + a task),
so browser-driver round trips are not counted. `compare_all_s` (all charts and the diff table)
is polled every 20 ms, so it can be up to ~20 ms (plus one round trip) late.

Run a single trial: `python -m benchmarks.bench_extension lab ROOT RUNS COMPARE_RUNS`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.harness import Comparison, Series, Trial, report_trial, run_trial

MODULE = "benchmarks.bench_extension"
TARGET_S = 2.0
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TOKEN = "workbench-bench"
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


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


def _labextension_dir() -> Path:
    built = REPO / "workbench" / "labextension"
    if (built / "package.json").is_file():
        return built
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "workbench-jupyterlab"
    if (installed / "package.json").is_file():
        return installed
    raise SystemExit("The front end is not built (make setup, or jlpm build:prod in extension/).")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_lab(root: Path, scratch: Path) -> tuple[subprocess.Popen, str]:
    """A `jupyter lab` on `root` with the extension and isolated Jupyter folders; returns (process, URL)."""
    data_dir = scratch / "jupyter-data"
    (data_dir / "labextensions").mkdir(parents=True)
    (data_dir / "labextensions" / "workbench-jupyterlab").symlink_to(_labextension_dir(), target_is_directory=True)
    config_dir = scratch / "jupyter-config"
    config_dir.mkdir()
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"workbench.jupyter": True}}})
    )
    settings = scratch / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_HOME"}
    env.update(
        JUPYTER_PATH=str(data_dir),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTERLAB_SETTINGS_DIR=str(scratch / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(scratch / "lab-workspaces"),
    )
    port = _free_port()
    log = open(scratch / "lab.log", "wb")  # noqa: SIM115 - the child keeps it; closed with the scratch folder
    proc = subprocess.Popen(
        [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         "--port", str(port), f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/workbench/api/snapshots?token={TOKEN}", timeout=2) as answer:
                if answer.status == 200:
                    return proc, f"{base}/lab?token={TOKEN}"
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("jupyter lab did not start:\n" + (scratch / "lab.log").read_text()[-3000:])
        time.sleep(0.25)


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
            page.wait_for_selector(SIDEBAR_TAB, timeout=30_000)
            page.wait_for_timeout(1000)  # let JupyterLab finish its start-up requests

            rows = f"document.querySelectorAll('.wb-Run').length >= {runs}"
            try:
                runs_s = timed_click(page, SIDEBAR_TAB, rows, 60_000)
            except Exception as exc:
                shown = page.evaluate("document.querySelectorAll('.wb-Run').length")
                raise RuntimeError(f"the Runs section shows {shown} rows, not {runs}") from exc

            ticked = page.evaluate(
                "(n) => { const boxes = Array.from(document.querySelectorAll('.wb-Run .wb-Run-select')).slice(0, n);"
                " boxes.forEach(b => { if (!b.checked) b.click(); }); return boxes.length; }",
                compare_runs,
            )
            page.wait_for_function(
                f"document.querySelector('.wb-Runs-compare').textContent === 'Compare ({ticked})'", timeout=10_000
            )
            answers: list = []  # the compare API's response: how many charts the view will draw
            page.on("response", lambda r: answers.append(r) if "/workbench/api/compare" in r.url else None)
            chart = "document.querySelector('.wb-CompareView-chart .main-svg') !== null"
            compare_s = timed_click(page, ".wb-Runs-compare", chart, 120_000)
            started = page.evaluate("window.__wbStart")
            deadline = time.monotonic() + 60
            while not answers and time.monotonic() < deadline:
                page.wait_for_timeout(10)
            total = len(answers[0].json().get("figures") or {}) if answers else 1
            page.wait_for_function(
                f"document.querySelectorAll('.wb-CompareView-chart .main-svg').length >= {total}"
                " && document.querySelector('.wb-CompareView-diff') !== null",
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
    if not CHROMIUM.exists():
        raise SystemExit("Chromium is not installed (apt-get install -y chromium)")
    scratch = Path(tempfile.mkdtemp(prefix="wb-bench-lab-"))
    proc, url = start_lab(Path(root), scratch)
    try:
        result = measure(url, int(runs), int(compare_runs))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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
    # The baseline is the 2 s target itself, one constant "trial" per measured one: not a measurement.
    how = "ratio = measured / target; met when <= 1; the baseline column is the target, not a measured tool"
    every = Series("Workbench in JupyterLab", [t for s in series.values() for t in s.trials])
    note = f"{runs:,} finished runs, fresh lab + Chromium per trial; {how}"
    results = [Comparison(f"Runs section shows {runs:,} runs (tab click -> rows)", every, _target(every), target=1.0,
                          note=note)]  # fmt: skip
    for subject in series.values():
        compared, figures = subject.trials[0].extra["compared"], subject.trials[0].extra["figures"]
        target = _target(subject)
        results += [
            Comparison(f"Compare view, {compared:,} of {runs:,} runs (click -> first plotly chart, s)", subject, target,
                       metric="compare_s", target=1.0,
                       note=f"first Compare in the page (plotly chunk is prefetched once runs are ticked); {how}. "
                            f"{BEFORE.get(compared, '')}"),
            Comparison(f"Compare view, {compared:,} of {runs:,} runs (click -> all {figures} charts + table, s)",
                       subject, target, metric="compare_all_s", target=None, note="for information; same trials"),
        ]  # fmt: skip
    return results


#: Figures before the fixes of 2026-11-27 (profiled with Chromium traces): all charts were drawn in one
#: task, so the first one was painted only after the last; comparing more than 256 runs failed.
BEFORE = {
    50: "Before: 3.1 s quiet machine, 7.3 s under load (all 7 charts drawn in one task before any paint)",
    1000: "Before: the view failed (run details were requested 300 ids at a time; the filter takes 256)",
}


def _target(subject: Series) -> Series:
    return Series(f"target {TARGET_S:g} s (constant)", [
        Trial(TARGET_S, 0.0, {"compare_s": TARGET_S, "compare_all_s": TARGET_S}) for _ in subject.trials])  # fmt: skip


if __name__ == "__main__":
    trial(*sys.argv[1:5])
