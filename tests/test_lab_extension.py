"""The JupyterLab extension end to end: a real `jupyter lab` driven by headless Chromium.

The server runs from a temporary root folder holding a notebook with a `parameters` cell and a
workspace (`<root>/.workbench`, found from the server's root as in real use) with a snapshot and
a few runs recorded through the run lifecycle. The test opens the Workbench sidebar, checks that
every section shows that data, compares two runs and keeps a screenshot. The server itself is
started by `lab_server.running_lab`, as for `make screenshots` (docs/screenshots.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import write_notebook
from lab_server import CHROMIUM, CHROMIUM_ARGS, TOKEN, require_browser, running_lab

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "TOKEN", "lab"]  # imported by the other browser tests

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIDEBAR_TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'


def _make_workspace(root: Path) -> list[str]:
    """A snapshot and three finished runs, recorded the way real runs are."""
    import pandas as pd

    from workbench.runs.ingest import ingest_runs
    from workbench.runs.lifecycle import create_run
    from workbench.snapshots.store import register
    from workbench.workspace import init_workspace

    ws = init_workspace(root / ".workbench")
    register("points", pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, 2.5]}), description="demo", ws=ws)
    run_ids = []
    for lr, losses in ((0.1, [0.9, 0.5, 0.3]), (0.01, [0.9, 0.8, 0.7]), (1.0, [0.9, 1.2, 1.5])):
        rec = create_run(ws, experiment="browser", kind="notebook", notebook="train.ipynb", params={"lr": lr})
        for step, loss in enumerate(losses):
            rec.writer.emit("metric", key="loss", value=loss, step=step, at=None)
        rec.writer.emit("metric", key="accuracy", value=1 - losses[-1] / 2, step=None, at=None)
        rec.end("finished")
        ingest_runs(ws, [rec.run_id])
        run_ids.append(rec.run_id)
    return run_ids


@pytest.fixture()
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A running `jupyter lab` with the Workbench extension and its workspace; yields its URL."""
    extension = require_browser()
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root / "train.ipynb", "lr = 0.1  # learning rate\nepochs = 3", "print(lr * epochs)")
    run_ids = _make_workspace(root)
    with running_lab(root, tmp_path, extension) as lab:
        yield {**lab, "run_ids": run_ids}


def test_sidebar_and_compare(lab: dict[str, Any], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.goto(lab["url"])
            page.wait_for_selector("#jp-main-dock-panel", timeout=30_000)
            page.click(SIDEBAR_TAB, timeout=20_000)

            # Snapshots: the registered snapshot, and its schema on click.
            snapshot = page.wait_for_selector('.wb-Snapshot[data-ref="points@1"]', timeout=15_000)
            assert "3 rows" in snapshot.inner_text()
            page.click('.wb-Snapshot[data-ref="points@1"] .wb-Snapshot-line')
            schema = page.wait_for_selector(".wb-Schema", timeout=10_000)
            assert "id" in schema.inner_text() and "x" in schema.inner_text()

            # Runs: the three runs, one line each (status, id, key metric), the rest in their tooltips.
            page.wait_for_function("document.querySelectorAll('.wb-Run').length === 3", timeout=15_000)
            runs_text = page.inner_text(".wb-Runs")
            assert "finished" in runs_text and "accuracy" in runs_text, runs_text
            tooltip = page.get_attribute(f'.wb-Run[data-run-id="{lab["run_ids"][0]}"]', "title")
            assert "browser" in tooltip and "lr=0.1" in tooltip and "loss=" in tooltip, tooltip

            # Models: the registry's list (or its explicit absence) and the serving status.
            models = page.wait_for_selector(".wb-Section-models .wb-Section-body > *", timeout=10_000)
            assert models.inner_text().strip()

            # Compare two runs: a new main-area tab with a plotly chart and the diff table.
            first, second = lab["run_ids"][:2]
            page.check(f'.wb-Run[data-run-id="{first}"] .wb-Run-select')
            page.check(f'.wb-Run[data-run-id="{second}"] .wb-Run-select')
            page.click(".wb-Runs-compare")
            page.wait_for_selector(".wb-CompareView-diff tr.wb-mod-differs", timeout=15_000)
            assert "lr" in page.inner_text(".wb-CompareView-diff")
            page.wait_for_selector(".wb-CompareView-chart .main-svg", timeout=30_000)

            screenshot = tmp_path / "screenshot.png"
            page.screenshot(path=str(screenshot))
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()
    assert time.monotonic() - started < 90
