"""The Compare tab read at a glance, in a real `jupyter lab` driven by headless Chromium.

Six runs that differ in `lr` (and three of them in `optimizer`) are compared from the sidebar:
the diff table comes before the charts, scrolls sideways inside its own panel with the name
column kept in view, runs are named `lr=0.1, optimizer=…` (ids in tooltips and hover texts), the
default metric is the one with a step history (`loss`, not the alphabetically first `accuracy`),
and the metric-by-run chart's value axis does not start at 0. Screenshots in both themes go to
/tmp/compare_light.png and /tmp/compare_dark.png for a person to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_lab_extension as base
from test_lab_experience import COLOUR_JS
from test_lab_extension_flows import api, browser_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

lab = base.lab  # the fixture: a running `jupyter lab` with the extension and three runs (lr varies)
VIEW = ".wb-CompareView"
PANEL = f"{VIEW} .wb-CompareView-tablePanel"
SHOTS = Path("/tmp")



def add_runs(root: Path) -> list[str]:
    """Three more runs in the lab's workspace, with a second, long-valued param."""
    from workbench.runs.ingest import ingest_runs
    from workbench.runs.lifecycle import create_run
    from workbench.workspace import init_workspace

    ws = init_workspace(root / ".workbench")
    ids = []
    specs = [
        (0.1, "adam-with-warmup", [0.9, 0.4, 0.25]),
        (0.05, "sgd-nesterov-momentum", [0.9, 0.6, 0.45]),
        (0.3, "adam-with-warmup", [0.9, 0.7, 0.9]),
    ]
    for lr, optimizer, losses in specs:
        rec = create_run(ws, experiment="browser", kind="notebook", notebook="train.ipynb",
                         params={"lr": lr, "optimizer": optimizer})  # fmt: skip
        for step, loss in enumerate(losses):
            rec.writer.emit("metric", key="loss", value=loss, step=step, at=None)
        rec.writer.emit("metric", key="accuracy", value=0.98 + losses[-1] / 100, step=None, at=None)
        rec.end("finished")
        ingest_runs(ws, [rec.run_id])
        ids.append(rec.run_id)
    return ids


def open_compare(page: Any, run_ids: list[str]) -> None:
    page.click(base.SIDEBAR_TAB)
    page.wait_for_function(f"document.querySelectorAll('.wb-Run').length === {len(run_ids)}", timeout=15_000)
    for run_id in run_ids:
        page.check(f'.wb-Run[data-run-id="{run_id}"] .wb-Run-select')
    page.click(".wb-Runs-compare")
    page.wait_for_selector(f"{VIEW} .wb-CompareView-diff tr.wb-mod-differs", timeout=15_000)
    page.wait_for_function(
        f"document.querySelectorAll('{VIEW} .wb-CompareView-chart .main-svg').length >= 3", timeout=30_000
    )


def test_compare_reads_at_a_glance(lab: dict[str, Any]) -> None:
    run_ids = lab["run_ids"] + add_runs(lab["root"])
    with browser_page(lab["url"]) as page:
        page.set_viewport_size({"width": 1300, "height": 950})
        open_compare(page, run_ids)

        # The table first, the charts below it.
        table_box = page.locator(f"{VIEW} .wb-CompareView-diff").bounding_box()
        chart_box = page.locator(f"{VIEW} .wb-CompareView-chart").first.bounding_box()
        assert table_box["y"] + table_box["height"] <= chart_box["y"] + 1, (table_box, chart_box)

        # The name column is sticky: scrolled sideways, it stays at the panel's left edge.
        name_cell = f"{VIEW} .wb-CompareView-diff tbody tr.wb-mod-differs th.wb-CompareView-name"
        assert page.eval_on_selector(name_cell, "el => getComputedStyle(el).position") == "sticky"
        assert page.eval_on_selector(PANEL, "el => getComputedStyle(el).overflowX") == "auto"
        page.set_viewport_size({"width": 900, "height": 950})  # narrower than the six runs' columns
        page.wait_for_function(f"(p => p.scrollWidth > p.clientWidth)(document.querySelector('{PANEL}'))")
        scrolled = page.eval_on_selector(
            PANEL,
            """panel => {
              const wide = panel.scrollWidth > panel.clientWidth;
              panel.scrollLeft = panel.scrollWidth;
              const cell = panel.querySelector('tbody tr.wb-mod-differs th.wb-CompareView-name');
              return [wide, panel.scrollLeft, cell.getBoundingClientRect().left - panel.getBoundingClientRect().left];
            }""",
        )
        wide, left, offset = scrolled
        assert wide and left > 0, scrolled  # the panel scrolls on its own, not the page
        assert abs(offset) <= 2, scrolled
        page.eval_on_selector(PANEL, "panel => { panel.scrollLeft = 0; }")
        page.set_viewport_size({"width": 1300, "height": 950})

        # Runs are named by the params that differ; the id is the header's tooltip.
        headers = page.eval_on_selector_all(
            f"{VIEW} .wb-CompareView-diff thead th.wb-CompareView-run",
            "ths => ths.map(th => [th.textContent, th.title])",
        )
        assert sorted(title.split("\n")[0] for _, title in headers) == sorted(f"run {r}" for r in run_ids)
        texts = [text for text, _ in headers]
        assert all(text.startswith("lr=") for text in texts) and len(set(texts)) == len(texts), texts
        assert "lr=0.3, optimizer=adam-with-warmup" in texts and "lr=0.01, optimizer=(none)" in texts
        assert not any(r in text for r in run_ids for text in texts)

        # The default metric is the one with a step history, and the select says so.
        assert page.input_value(f"{VIEW} .wb-CompareView-metric") == "loss"
        figures = page.eval_on_selector_all(f"{VIEW} .wb-CompareView-chart", "els => els.map(e => e.dataset.figure)")
        assert figures[:2] == ["metric_bars", "step_curves"], figures

        # Charts: labels on the axis and in the legend, never run ids; the value axis is not from 0.
        ticks = page.eval_on_selector_all(
            f'{VIEW} .wb-CompareView-chart[data-figure="metric_bars"] .ytick text', "ts => ts.map(t => t.textContent)"
        )
        legend = page.eval_on_selector_all(
            f'{VIEW} .wb-CompareView-chart[data-figure="step_curves"] .legendtext', "ts => ts.map(t => t.textContent)"
        )
        for shown in (ticks, legend):
            assert sorted(shown) == sorted(texts), shown
        low = page.eval_on_selector(
            f'{VIEW} .wb-CompareView-chart[data-figure="metric_bars"]', "el => el._fullLayout.xaxis.range[0]"
        )
        assert 0 < low < 0.25, low  # loss 0.25 .. 1.5: the axis spans the values (a small margin), not 0 .. max

        page.screenshot(path=str(SHOTS / "compare_light.png"))
        # Every chart, for a person to look at: a tall window shows the whole view.
        count = len(api(lab, f"compare?run_ids={','.join(run_ids)}")["figures"])
        page.wait_for_function(f"document.querySelectorAll('{VIEW} .wb-CompareView-chart .main-svg').length >= {count}")
        page.set_viewport_size({"width": 1300, "height": 3200})
        page.screenshot(path=str(SHOTS / "compare_light_charts.png"))
        page.set_viewport_size({"width": 1300, "height": 950})
        page.click('.lm-MenuBar-itemLabel:text-is("Settings")')
        page.hover('.lm-Menu-itemLabel:text-is("Theme")')
        page.click('.lm-Menu-itemLabel:text-is("JupyterLab Dark")')
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_selector("#jupyterlab-splash", state="detached")
        page.evaluate(COLOUR_JS)
        page.wait_for_function(  # the charts took the dark theme's colours
            f"""() => {{
              const chart = document.querySelector('{VIEW} .wb-CompareView-chart');
              return wbRGBA(chart._fullLayout.paper_bgcolor)[0] < 100;
            }}"""
        )
        page.mouse.move(5, 5)
        page.screenshot(path=str(SHOTS / "compare_dark.png"))
        assert page.eval_on_selector(name_cell, "el => getComputedStyle(el).position") == "sticky"
