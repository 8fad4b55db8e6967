"""The Monitor view of a served model, in a real `jupyter lab` driven by headless Chromium.

A workspace with model "wine" (v1 production, v2 a canary taking ~30 % of requests) whose prediction
and outcome logs are written in issue 19's formats (contract items 1 and 2) over the last five
hours, and model "quiet", registered but never served. From the Models section of a 300 px sidebar
the "Monitor" action opens a main-area view per model: for "wine" plotly charts of traffic, latency,
live metrics per version and drift, and the A/B verdict of v2 against v1; for "quiet" the empty state
that says how to get predictions and outcomes. The REST answer the view draws from is checked too
(shape, a bad window as a 400 with a hint). Screenshots in both themes go to /tmp/monitor_light.png and
/tmp/monitor_dark.png for a person to look at.
"""

from __future__ import annotations

import fcntl
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lab_server import TOKEN, require_browser, running_lab, set_sidebar_width
from model_fixtures import train_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
VIEW = ".wb-MonitorView"
SHOTS = Path("/tmp")
#: The hour the logs start: five hours back, on the hour, so "7d" covers every line.
T0 = pd.Timestamp.now(tz="UTC").floor("1h") - pd.Timedelta(hours=5)


def _jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fh.writelines(json.dumps(record) + "\n" for record in records)


def _served_workspace(root: Path, wine_frame: pd.DataFrame) -> None:
    """Models "wine" (two versions, five hours of canary traffic with outcomes) and "quiet" (no traffic)."""
    import workbench as wb
    from workbench.workspace import init_workspace, use_workspace

    ws = init_workspace(root / ".workbench")
    use_workspace(ws)
    try:
        wb.snapshot("wine", wine_frame)
        wb.promote(train_run(C=0.01))  # v1: weak
        wb.promote(train_run(C=10.0), alias="canary")  # v2: the canary
        wb.promote(train_run(C=1.0), "quiet")
        models = {1: wb.load_model("wine@1")[0], 2: wb.load_model("wine@2")[0]}
    finally:
        use_workspace(None)
    rng = np.random.default_rng(19)
    predictions: list[dict[str, Any]] = []
    outcomes: list[dict[str, Any]] = []
    for n in range(400):
        version = 2 if rng.random() < 0.3 else 1
        row = wine_frame.iloc[int(rng.integers(len(wine_frame)))]
        at = T0 + pd.Timedelta(seconds=int(rng.integers(5 * 3600)))
        inputs = row[FEATURES].to_frame().T.astype(float)
        model = models[version]
        proba = model.predict_proba(inputs)[0]
        predictions.append({"at": at.isoformat(), "request_id": f"r{n}", "row": 0, "version": version,
                            "latency_ms": float(rng.gamma(2.0, 4.0 if version == 1 else 6.0)),
                            "input": {c: float(row[c]) for c in FEATURES},
                            "prediction": int(model.predict(inputs)[0]),
                            "proba": dict(zip(map(str, model.classes_), map(float, proba), strict=True))})  # fmt: skip
        if n % 10:  # every tenth prediction still waits for its outcome
            outcomes.append({"at": (at + pd.Timedelta(minutes=5)).isoformat(), "request_id": f"r{n}", "row": 0,
                             "outcome": int(row["target"]), "source": "feedback"})  # fmt: skip
    _jsonl(ws.root / "predictions" / "wine" / f"{T0:%Y%m%d}-4242.jsonl", predictions)
    _jsonl(ws.root / "outcomes" / "wine" / f"{T0:%Y%m%d}-4242.jsonl", outcomes)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, wine_frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """A running `jupyter lab` on a root whose workspace has the two models and their logs."""
    extension = require_browser()
    scratch = tmp_path_factory.mktemp("monitor")
    root = scratch / "root"
    root.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WORKBENCH_HOME", raising=False)
        patch.chdir(root)
        _served_workspace(root, wine_frame)
        with running_lab(root, scratch, extension) as running:
            yield running


def api(lab: dict[str, Any], path: str) -> tuple[int, Any]:
    """(status, JSON body) of a GET on the lab's Workbench API."""
    server = lab["url"].split("/lab?")[0]
    sep = "&" if "?" in path else "?"
    try:
        with urllib.request.urlopen(f"{server}/workbench/api/{path}{sep}token={TOKEN}", timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@contextmanager
def browser_lock() -> Iterator[None]:
    """One browser test at a time on this machine (shared with the other helpers' builds and tests)."""
    with open("/tmp/wb-ext.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def test_monitor_answer(lab: dict[str, Any]) -> None:
    status, state = api(lab, "models/wine/monitor?window=1h&since=7d")
    assert status == 200, state
    assert state["task"] == "classification" and state["window"] == "1h"
    assert {r["version"] for r in state["rows"]} == {1, 2}
    assert sum(r["requests"] for r in state["rows"]) == 400
    assert state["counts"]["matched"] == 360 and state["counts"]["pending"] == 40
    assert {"traffic", "latency_p95", "accuracy", "drift"} <= set(state["figures"])
    assert state["drift"]["live_rows"] == 400 and "error" not in state["drift"]
    results = state["ab"]["results"]
    assert state["ab"]["baseline"] == 1 and {(r["a"], r["b"]) for r in results} == {(1, 2)}
    accuracy = next(r for r in results if r["metric"] == "accuracy")
    assert accuracy["n_a"] + accuracy["n_b"] == 360 and accuracy["verdict"] in ("better", "worse", "not yet known")

    status, quiet = api(lab, "models/quiet/monitor")
    assert status == 200 and quiet["rows"] == [] and quiet["ab"] is None
    assert "No logged predictions" in quiet["drift"]["error"]

    status, refused = api(lab, "models/wine/monitor?window=5x")
    assert status == 400 and "window" in refused["error"] and refused["hint"], refused
    status, missing = api(lab, "models/nobody/monitor")
    assert status == 404 and "nobody" in missing["error"], missing


def _open_from_sidebar(page: Any, model: str) -> str:
    """Click the model's "Monitor" action in the Models section; the view's selector."""
    action = f'.wb-Model[data-model="{model}"] .wb-Model-monitor'
    page.wait_for_selector(action, timeout=20_000)
    sidebar = page.locator("#jp-left-stack").bounding_box()
    box = page.locator(action).bounding_box()
    assert box["x"] + box["width"] <= sidebar["x"] + sidebar["width"], (box, sidebar)  # in reach at 300 px
    page.click(action)
    return f'{VIEW}[data-model="{model}"]'


def _charts(page: Any, view: str) -> int:
    return page.eval_on_selector_all(f"{view} .wb-MonitorView-chart .main-svg", "svgs => svgs.length")


def test_monitor_view(lab: dict[str, Any]) -> None:
    from test_lab_experience import COLOUR_JS, same_colour
    from test_lab_extension_flows import browser_page

    with browser_lock(), browser_page(lab["url"]) as page:
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.click(SIDEBAR_TAB, timeout=20_000)
        set_sidebar_width(page, 300)
        wine = _open_from_sidebar(page, "wine")
        assert page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current").inner_text() == "Monitor: wine"

        # Charts: traffic, latency p95, accuracy, F1, log loss, prediction PSI, input drift.
        page.wait_for_function(f"document.querySelectorAll('{wine} .wb-MonitorView-chart .main-svg').length >= 7",
                               timeout=30_000)  # fmt: skip
        figures = page.eval_on_selector_all(f"{wine} .wb-MonitorView-chart", "els => els.map(e => e.dataset.figure)")
        assert {"traffic", "latency_p95", "accuracy", "psi", "drift"} <= set(figures), figures
        legend = page.eval_on_selector_all(f'{wine} [data-figure="traffic"] .legendtext',
                                           "ts => ts.map(t => t.textContent)")  # fmt: skip
        assert sorted(legend) == ["v1", "v2"], legend

        # The A/B verdict of v2 against v1, as a sentence with its numbers.
        line = page.inner_text(f'{wine} .wb-MonitorView-abLine[data-metric="accuracy"]')
        number = r"[+−]\d+\.\d"
        verdict = "(better|worse|not yet known)"
        pattern = rf"^v2 vs v1: accuracy {number} pts \[{number}, {number}\], p[=<][\d.]+ — {verdict}"
        assert re.match(pattern, line), line
        if "not yet known" in line:
            assert re.search(r"; ~[\d,]+ more outcomes per arm needed$", line), line
        status = page.inner_text(f"{wine} .wb-MonitorView-status")
        assert status.startswith("400 requests · 360 outcomes (40 pending)"), status
        page.screenshot(path=str(SHOTS / "monitor_light.png"))
        page.set_viewport_size({"width": 1400, "height": 2000})  # the whole view, drift included
        page.screenshot(path=str(SHOTS / "monitor_light_full.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})

        # Refreshed every ~10 s while shown: the status's clock moves on.
        page.wait_for_function(f"!document.querySelector('{wine} .wb-MonitorView-status').textContent.endsWith("
                               f"{json.dumps(status[-8:])})", timeout=20_000)  # fmt: skip

        # A mistake the server refuses lands in the message line, and the charts stay.
        page.eval_on_selector(
            f"{wine} .wb-MonitorView-window",
            """select => {
            select.add(new Option('5x', '5x')); select.value = '5x'; select.dispatchEvent(new Event('change')); }""",
        )
        message = page.wait_for_selector(f"{wine} .wb-MonitorView-message.wb-Error")
        assert "Invalid window '5x'" in message.inner_text() and "1h" in message.inner_text()
        assert _charts(page, wine) >= 7
        page.select_option(f"{wine} .wb-MonitorView-window", "1h")
        page.wait_for_selector(f"{wine} .wb-MonitorView-message.wb-Error", state="detached")

        # A model with no traffic: the empty state says what to do; no charts, no A/B.
        quiet = _open_from_sidebar(page, "quiet")
        empty = page.wait_for_selector(f"{quiet} .wb-MonitorView-empty:has-text('No predictions of quiet')")
        assert "workbench serve quiet@production" in empty.inner_text() and "/feedback" in empty.inner_text()
        assert _charts(page, quiet) == 0 and not page.query_selector(f"{quiet} .wb-MonitorView-abLine")
        page.screenshot(path=str(SHOTS / "monitor_empty.png"))
        # wine's tab is hidden now: it stops asking (its status stays as it was).
        hidden_status = page.inner_text(f"{wine} .wb-MonitorView-status")
        page.wait_for_timeout(11_000)
        assert page.inner_text(f"{wine} .wb-MonitorView-status") == hidden_status

        # Dark theme: the charts take the theme's background.
        page.click('.lm-DockPanel-tabBar .lm-TabBar-tab:has-text("Monitor: wine")')
        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_timeout(1000)
        page.evaluate(COLOUR_JS)
        paper, background = page.evaluate(f"""() => {{
            const chart = document.querySelector('{wine} .wb-MonitorView-chart');
            const theme = getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim();
            return [wbRGBA(chart._fullLayout.paper_bgcolor), wbRGBA(theme)]; }}""")
        assert same_colour(paper, background) and background[0] < 100, (paper, background)
        page.screenshot(path=str(SHOTS / "monitor_dark.png"))
