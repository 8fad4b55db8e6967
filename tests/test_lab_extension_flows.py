"""The JupyterLab extension's user flows end to end: a real `jupyter lab` driven by headless Chromium.

- Run as experiment: open a notebook with a `parameters` cell, press the toolbar button, change a
  parameter in the dialog and start the run; it appears in the Runs section, runs on a real kernel
  to "finished", and a click opens its executed notebook read-only.
- Register and Rollback: two finished interactive runs that logged a model (made beforehand with
  the Python API); "Register run…" on each from the Runs section (confirmation accepted) moves the
  alias to v1 then v2 in the Models section; Rollback moves it back to v1.

The server, its root folder (`train.ipynb`: `lr = 0.1`, `epochs = 3`, then `print(lr * epochs)`)
and its workspace come from the `lab` fixture of test_lab_extension.py.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import test_lab_extension as base

pytestmark = [pytest.mark.browser, pytest.mark.slow]

lab = base.lab  # the fixture: a running `jupyter lab` with the extension on a fresh workspace
DIALOG = ".jp-Dialog"
ACCEPT = ".jp-Dialog .jp-Dialog-footer .jp-mod-accept"


@contextmanager
def browser_page(url: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(base.CHROMIUM), args=base.CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(url)
            page.wait_for_selector("#jp-main-dock-panel", timeout=30_000)
            yield page
        finally:
            browser.close()


def api(lab: dict[str, Any], path: str) -> Any:
    server = lab["url"].split("/lab?")[0]
    sep = "&" if "?" in path else "?"
    with urllib.request.urlopen(f"{server}/workbench/api/{path}{sep}token={base.TOKEN}", timeout=10) as answer:
        return json.loads(answer.read())


def test_run_as_experiment_from_a_notebook(lab: dict[str, Any]) -> None:
    started = time.monotonic()
    url = lab["url"].replace("/lab?", "/lab/tree/train.ipynb?")
    with browser_page(url) as page:
        # The notebook's toolbar button opens the dialog prefilled from the parameters cell.
        page.click(".jp-NotebookPanel-toolbar .wb-RunButton", timeout=30_000)
        dialog = page.wait_for_selector(f"{DIALOG}:has(.wb-RunDialog)")
        lr = dialog.wait_for_selector('input[name="param-lr"]')
        assert lr.input_value() == "0.1"
        assert dialog.wait_for_selector('input[name="param-epochs"]').input_value() == "3"
        page.click(f'{DIALOG} .wb-RunDialog-tab[data-mode="run"]')  # the single-run tab (the default)
        assert page.locator(f"{DIALOG} .wb-RunDialog").get_attribute("data-mode") == "run"
        lr.fill("0.5")
        dialog.wait_for_selector('input[name="experiment"]').fill("flows")
        page.click(ACCEPT)
        page.wait_for_selector(DIALOG, state="detached")

        # The run shows up in the sidebar's Runs section (opened by the command) and finishes.
        deadline = time.monotonic() + 15
        while not (mine := api(lab, "runs?experiment=flows")):
            assert time.monotonic() < deadline, "POST runs did not record a run"
            time.sleep(0.25)
        run_id = mine[0]["run_id"]
        row = f'.wb-Run[data-run-id="{run_id}"]'
        page.wait_for_selector(row, timeout=15_000)
        try:
            page.wait_for_selector(f'{row}[data-status="finished"]', timeout=60_000)
        except Exception:
            raise AssertionError(f"run {run_id} did not finish: {api(lab, f'runs/{run_id}')}") from None
        row_text = page.inner_text(row) + "\n" + page.get_attribute(row, "title")  # one line, the rest in its tooltip
        assert "flows" in row_text and "lr=0.5" in row_text, row_text

        # A click on the finished run opens its executed notebook, read-only.
        page.click(f"{row} .wb-Run-id")
        view = f"#workbench-run-notebook-{run_id} .wb-NotebookView"
        banner = page.wait_for_selector(f"{view} .wb-NotebookView-banner", timeout=15_000)
        assert "read-only" in banner.inner_text()
        page.wait_for_selector(f"{view} .wb-NotebookView-outputs", timeout=15_000)
        assert "1.5" in page.inner_text(f"{view} .wb-NotebookView-outputs")  # print(lr * epochs) with lr = 0.5
        assert "lr = 0.5" in page.inner_text(view)  # the parameters the run used
        editable = f'{view} .cm-editor, {view} textarea, {view} input, {view} [contenteditable="true"]'
        assert page.locator(editable).count() == 0
    assert time.monotonic() - started < 75


def model_run(root: Path, accuracy: float) -> str:
    """A finished interactive run in this process that logged a scikit-learn model."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import workbench as wb
    from workbench.workspace import init_workspace, use_workspace

    use_workspace(init_workspace(root / ".workbench"))
    try:
        features = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
        model = LogisticRegression().fit(features, [0, 0, 1, 1])
        wb.log_metric("accuracy", accuracy)
        wb.log_model(model, "classifier", sample=features)
        run_id = wb.active_run_id()
        wb.end_run()
    finally:
        use_workspace(None)
    return run_id


def test_promote_and_rollback(lab: dict[str, Any]) -> None:
    started = time.monotonic()
    first, second = model_run(lab["root"], 0.8), model_run(lab["root"], 0.9)
    model = '.wb-Model[data-model="classifier"]'

    def alias(version: int) -> str:
        return f'{model} .wb-Model-line .wb-Alias:text-is("production → v{version}")'

    def accept(dialog_text: str) -> None:
        dialog = page.wait_for_selector(DIALOG)
        assert dialog_text in dialog.inner_text()
        page.fill(f"{DIALOG} .wb-Confirm-reason", "browser test")
        page.click(ACCEPT)
        page.wait_for_selector(DIALOG, state="detached")

    with browser_page(lab["url"]) as page:
        page.click(base.SIDEBAR_TAB)
        page.wait_for_selector(".wb-Section-models .wb-Empty:has-text('No models yet')")
        for run_id, version in ((first, 1), (second, 2)):
            page.click(f'.wb-Run[data-run-id="{run_id}"] .wb-Run-actions button:text-is("Register run…")')
            accept(run_id)
            page.wait_for_selector(alias(version))
        assert page.locator(f"{model} .wb-Model-line").inner_text().count("production") == 1

        # Rollback from the model's detail: the alias goes back to v1.
        page.click(f"{model} .wb-Model-line")
        page.wait_for_selector(f'{model} .wb-Versions tr[data-version="2"]')
        page.click(f'{model} .wb-Model-detail button:text-is("Rollback production")')
        accept("back at its previous version")
        page.wait_for_selector(alias(1))
    registry = api(lab, "models")
    assert [(m["name"], m["aliases"]) for m in registry] == [("classifier", {"production": 1})]
    assert time.monotonic() - started < 60
