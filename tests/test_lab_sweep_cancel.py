"""Sweeps, cancelling and model servers from the lab: a real `jupyter lab` driven by headless Chromium.

- The Run dialog's Sweep tab: refused values (a value that is not a float, more runs at a time than
  allowed) are shown under their field within 2 s and start nothing; comma-separated values start
  one run per value, each with the full effective params, and they all finish.
- Cancel from the sidebar: a run sleeping in its kernel is cancelled with its row's Cancel button
  and ends "killed", in the REST API and in the row.
- The Models section's Serving line: a model server started on loopback shows `model@vN`, its alias
  and since when; it disappears once the server stops.

The server, its root folder (`train.ipynb`: `lr = 0.1`, `epochs = 3`, then `print(lr * epochs)`)
and its workspace come from the `lab` fixture of test_lab_extension.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import test_lab_extension as base
from conftest import write_notebook
from test_lab_experience import open_run_dialog, post, wait_for_run
from test_lab_extension_flows import ACCEPT, DIALOG, api, browser_page, model_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

lab = base.lab  # the fixture: a running `jupyter lab` with the extension on a fresh workspace
FIELD = f"{DIALOG} .wb-RunDialog-field"


def inline_error(page: Any, field: str) -> str:
    """Press Start and return the error shown under `field` (it must appear within 2 s)."""
    clicked = time.monotonic()
    page.click(ACCEPT)
    error = page.wait_for_selector(
        f'{FIELD}[data-field="{field}"].wb-mod-invalid .wb-RunDialog-fieldError', state="visible", timeout=10_000
    )
    took = time.monotonic() - clicked
    assert took < 2, f"the inline error under {field} took {took:.1f} s"
    assert page.locator(f"{DIALOG} .wb-RunDialog").is_visible(), "the dialog closed on a refusal"
    return error.inner_text()


def test_sweep_tab_refuses_inline_then_starts_one_run_per_value(lab: dict[str, Any]) -> None:
    started = time.monotonic()
    with browser_page(lab["url"]) as page:
        open_run_dialog(page, lab, "train.ipynb")
        page.click(f'{DIALOG} .wb-RunDialog-tab[data-mode="sweep"]')
        assert page.locator(f"{DIALOG} .wb-RunDialog").get_attribute("data-mode") == "sweep"
        parallel = page.locator(f'{DIALOG} input[name="parallel"]')
        assert parallel.is_visible(), "the Sweep tab shows the parallel runs field"
        page.fill(f'{DIALOG} input[name="experiment"]', "lab-sweep")
        page.fill(f'{DIALOG} input[name="param-lr"]', "0.01, 0.1")
        parallel.fill("2")
        page.screenshot(path="/tmp/sweep_tab.png")

        # Nothing to sweep (no comma anywhere): said in the dialog, nothing queued.
        page.fill(f'{DIALOG} input[name="param-lr"]', "0.01")
        page.click(ACCEPT)
        general = page.wait_for_selector(f"{DIALOG} .wb-RunDialog-error", state="visible", timeout=2_000)
        assert "comma-separated" in general.inner_text()

        # A value of the grid that is not a float: marked on its field, nothing queued.
        page.fill(f'{DIALOG} input[name="param-lr"]', "0.01, abc")
        text = inline_error(page, "params.lr")
        assert "abc" in text and "float" in text, text
        page.screenshot(path="/tmp/sweep_tab_error.png")

        # A fixed value (no comma) of the wrong type: the same, on its own field.
        page.fill(f'{DIALOG} input[name="param-lr"]', "0.01, 0.1")
        assert page.locator(f"{DIALOG} .wb-mod-invalid").count() == 0  # editing took the mark away
        page.fill(f'{DIALOG} input[name="param-epochs"]', "many")
        text = inline_error(page, "params.epochs")
        assert "int" in text, text

        # More runs at a time than the workspace allows: the parallel field says so.
        page.fill(f'{DIALOG} input[name="param-epochs"]', "3")
        parallel.fill("100000")
        text = inline_error(page, "parallel")
        assert "limit" in text, text

        # Not a whole number of at least 1 is refused too (not silently replaced by the default, and
        # not by a Start button that is silently disabled).
        for wrong in ("0", "2.5", "two"):
            parallel.fill(wrong)
            text = inline_error(page, "parallel")
            assert "at least 1" in text, (wrong, text)
        assert api(lab, "runs?experiment=lab-sweep") == [], "a refused sweep started runs"

        # Fixed: two values of lr, two at a time; the dialog closes and both runs finish.
        parallel.fill("2")
        page.click(ACCEPT)
        page.wait_for_selector(DIALOG, state="detached")
        clicked = time.monotonic()
        deadline = clicked + 90
        while True:
            rows = api(lab, "runs?experiment=lab-sweep")
            if len(rows) == 2 and all(r["status"] == "finished" for r in rows):
                break
            assert len(rows) <= 2, rows
            assert not [r for r in rows if r["status"] in ("failed", "killed")], rows
            assert time.monotonic() < deadline, f"the sweep's runs did not finish: {rows}"
            time.sleep(0.5)
        finished = time.monotonic() - clicked
        assert sorted(r["params.lr"] for r in rows) == [0.01, 0.1]
        assert [r["params.epochs"] for r in rows] == [3, 3], rows  # the full effective params
        assert {Path(r["notebook"]).name for r in rows} == {"train.ipynb"}
        # The Runs section lists them, finished.
        for row in rows:
            page.wait_for_selector(f'.wb-Run[data-run-id="{row["run_id"]}"][data-status="finished"]', timeout=15_000)
    print(f"sweep of 2 runs finished {finished:.1f} s after Start; test took {time.monotonic() - started:.1f} s")


def test_cancel_a_running_run_from_the_sidebar(lab: dict[str, Any]) -> None:
    started = time.monotonic()
    write_notebook(lab["root"] / "slow.ipynb", None, "import time\ntime.sleep(120)")
    post(lab, "runs", {"notebook": "slow.ipynb", "experiment": "slow"})
    run = wait_for_run(lab, "slow", {"running", "finished", "failed", "killed"}, timeout=60)
    assert run["status"] == "running", run
    row = f'.wb-Run[data-run-id="{run["run_id"]}"]'
    with browser_page(lab["url"]) as page:
        page.click(base.SIDEBAR_TAB)
        page.wait_for_selector(f'{row}[data-status="running"]')
        cancel = page.locator(f'{row} .wb-Run-actions button:text-is("Cancel")')
        assert cancel.is_visible(), "a live run's Cancel button is always shown"
        clicked = time.monotonic()
        cancel.click()
        ended = wait_for_run(lab, "slow", {"killed", "cancelled", "finished", "failed"}, timeout=60)
        assert ended["status"] in ("killed", "cancelled"), ended
        took = time.monotonic() - clicked
        page.wait_for_selector(f'{row}[data-status="{ended["status"]}"]', timeout=30_000)
        assert ended["status"] in page.inner_text(f"{row} .wb-Run-status")
        assert page.locator(f'{row} .wb-Run-actions button:text-is("Cancel")').count() == 0  # no longer live
    total = time.monotonic() - started
    print(f"cancelled run ended {ended['status']} {took:.1f} s after the click; test took {total:.1f} s")


def test_serving_line_follows_a_model_server(lab: dict[str, Any]) -> None:
    from workbench.models.registry import promote
    from workbench.serving.server import serve_in_background
    from workbench.workspace import init_workspace

    started = time.monotonic()
    ws = init_workspace(lab["root"] / ".workbench")
    promote(model_run(lab["root"], 0.9), ws=ws)  # classifier v1 = production
    serving = ".wb-Section-models .wb-Serving"
    with browser_page(lab["url"]) as page:
        page.click(base.SIDEBAR_TAB)
        page.wait_for_selector(f"{serving} .wb-Empty:has-text('No model servers running.')")

        server = serve_in_background("classifier@production", ws=ws, log_predictions=False)
        try:
            assert server.url.startswith("http://127.0.0.1:"), server.url
            line = page.wait_for_selector(f"{serving} .wb-Server:has-text('classifier@v1')", timeout=30_000)
            assert page.inner_text(f"{serving} .wb-Server .wb-Server-model") == "classifier@v1"
            assert page.inner_text(f"{serving} .wb-Server .wb-Alias") == "production"
            assert "since" in line.inner_text(), line.inner_text()
            assert server.url in page.inner_text(f"{serving} .wb-Server .wb-Server-where")
            page.screenshot(path="/tmp/serving_line.png")
        finally:
            server.stop()
        page.wait_for_selector(f"{serving} .wb-Server", state="detached", timeout=30_000)
        page.wait_for_selector(f"{serving} .wb-Empty:has-text('No model servers running.')")
    assert api(lab, "serving") == []
    print(f"serving test took {time.monotonic() - started:.1f} s")
