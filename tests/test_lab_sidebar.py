"""The Workbench sidebar at the width people give it (300 px), and a failed run's view.

A real `jupyter lab` (the `lab` fixture of test_lab_extension.py) on a workspace with 60 more runs
in two experiments with long names, long metric names and run names, and a registered model. At
300 px every visible run is one line with its short id (or name), status and key metric, nothing
scrolls sideways, the experiment picker and "Compare (N)" are not cut, and Models is in view (and
one click away after being collapsed). A failed run's view says the exception once, at the top.
Screenshots: /tmp/sidebar_light.png and /tmp/sidebar_dark.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import test_lab_extension as base
from conftest import write_notebook
from test_lab_experience import COLOUR_JS, contrast, post, set_sidebar_width, wait_for_run
from test_lab_extension_flows import browser_page, model_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

lab = base.lab  # the fixture: a running `jupyter lab` with the extension on a fresh workspace
SIDEBAR = "#workbench-sidebar"
LONG_EXPERIMENT = "image-classification-resnet50-hyperparameter-sweep-with-a-very-long-name"
LONG_METRIC = "validation_top1_accuracy_on_the_held_out_split"
EXTRA_RUNS = 60


def _many_runs(root: Path) -> list[str]:
    """60 finished runs, newest last: two experiments, several metrics, some with long names."""
    from workbench.runs.ingest import ingest_runs
    from workbench.runs.lifecycle import create_run
    from workbench.workspace import init_workspace

    ws = init_workspace(root / ".workbench")
    run_ids = []
    for i in range(EXTRA_RUNS):
        long_one = i % 2 == 0
        tags = {"name": f"resnet50-lr{i}-with-augmentation-and-a-long-run-name"} if i % 7 == 0 else None
        rec = create_run(ws, experiment=LONG_EXPERIMENT if long_one else "wine-sweep", kind="notebook",
                         notebook="train.ipynb", params={"lr": 0.001 * (i + 1), "depth": i % 5}, tags=tags)  # fmt: skip
        if long_one:
            for key, value in (("accuracy", 0.9 + i / 1000), ("loss", 0.3 - i / 1000), ("f1", 0.88), ("auc", 0.95)):
                rec.writer.emit("metric", key=key, value=value, step=None, at=None)
        else:
            rec.writer.emit("metric", key=LONG_METRIC, value=0.8 + i / 1000, step=None, at=None)
            rec.writer.emit("metric", key="rmse", value=12.345678, step=None, at=None)
        rec.end("finished")
        run_ids.append(rec.run_id)
    ingest_runs(ws, run_ids)
    return run_ids


# The rows of the Runs section inside its scrolling body's visible part, each with its texts and sizes.
VISIBLE_ROWS_JS = r"""sidebar => {
  const body = sidebar.querySelector('.wb-Section-runs .wb-Section-body');
  const view = body.getBoundingClientRect();
  return [...body.querySelectorAll('.wb-Run')].filter(row => {
    const box = row.getBoundingClientRect();
    return box.bottom > view.top + 1 && box.top < view.bottom - 1;
  }).map(row => ({
    id: row.dataset.runId,
    text: row.innerText.replace(/\s+/g, ' '),
    title: row.title,
    height: row.getBoundingClientRect().height,
    scrollWidth: row.scrollWidth,
    clientWidth: row.clientWidth,
    right: row.getBoundingClientRect().right,
    status: row.querySelector('.wb-Run-status')?.textContent,
    shortId: row.querySelector('.wb-Run-id')?.textContent,
    metric: (row.querySelector('.wb-Run-metric')?.innerText ?? '').replace(/\s+/g, ' ').trim(),
    ellipsised: [...row.querySelectorAll('span')].filter(s => s.scrollWidth > s.clientWidth).length,
  }));
}"""

# Every element of the sidebar that is wider than its box and shows a scrollbar for it.
H_OVERFLOW_JS = """sidebar => [sidebar, ...sidebar.querySelectorAll('*')].filter(node => {
  const style = getComputedStyle(node);
  const scrolls = node === sidebar || ['auto', 'scroll'].includes(style.overflowX);
  return scrolls && node.scrollWidth > node.clientWidth + 1;
}).map(node => node.className || node.tagName)"""

# A box inside another (1 px of rounding allowed).
INSIDE_JS = """([inner, outer]) => {
  const a = document.querySelector(inner).getBoundingClientRect();
  const b = document.querySelector(outer).getBoundingClientRect();
  return a.width > 0 && a.left >= b.left - 1 && a.right <= b.right + 1
    && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
}"""


def in_viewport(page: Any, selector: str) -> bool:
    """`selector` is drawn inside the sidebar's visible box and inside the window."""
    box = page.locator(selector).first.bounding_box()
    panel = page.locator(SIDEBAR).bounding_box()
    window = page.viewport_size
    return bool(box and box["height"] > 0 and box["y"] >= panel["y"] - 1
                and box["y"] + box["height"] <= min(panel["y"] + panel["height"], window["height"]) + 1)  # fmt: skip


def check_compact_rows(page: Any, expected: int) -> list[dict[str, Any]]:
    sidebar = page.locator(SIDEBAR)
    rows = sidebar.evaluate(VISIBLE_ROWS_JS)
    assert len(rows) >= 10, f"only {len(rows)} run rows are visible at 300 px"
    total = page.locator(f"{SIDEBAR} .wb-Run").count()
    assert total == expected, total
    for row in rows:
        assert row["height"] <= 26, row  # one line
        assert row["scrollWidth"] <= row["clientWidth"], row  # nothing pushed out sideways
        assert row["status"] and row["status"] in row["text"], row
        assert row["shortId"] and (row["shortId"] in row["id"] or row["shortId"].startswith("resnet50-")), row
        assert row["id"] in row["title"], row  # the full id (and more) in the tooltip
        assert re.fullmatch(r"\S+ \d[\d.e+-]*", row["metric"]), row  # `accuracy 0.973`
    assert sidebar.evaluate(H_OVERFLOW_JS) == []
    return rows


def test_compact_sidebar_at_300_px(lab: dict[str, Any], tmp_path: Path) -> None:
    from workbench.models.registry import promote
    from workbench.workspace import init_workspace

    root = lab["root"]
    newest = _many_runs(root)
    promote(model_run(root, 0.9), ws=init_workspace(root / ".workbench"))
    total_runs = EXTRA_RUNS + len(lab["run_ids"]) + 1  # and the model's interactive run
    with browser_page(lab["url"]) as page:
        page.click(base.SIDEBAR_TAB)
        set_sidebar_width(page, 300)
        page.wait_for_function(f"document.querySelectorAll('{SIDEBAR} .wb-Run').length === 50")
        page.wait_for_selector(f"{SIDEBAR} .wb-Model-line")
        page.wait_for_timeout(500)  # the section sizes settle once every list is in

        # Every visible run: one line with short id, status and key metric; nothing scrolls sideways.
        rows = check_compact_rows(page, 50)
        assert any(row["ellipsised"] for row in rows), "the long names should be ellipsised"
        texts = "\n".join(row["text"] for row in rows)
        assert "accuracy 0.9" in texts or "validation_top1" in texts, texts
        assert f"The 50 most recent of {total_runs} runs" in page.inner_text(f"{SIDEBAR} .wb-Section-runs")
        newest_row = page.locator(f'{SIDEBAR} .wb-Run[data-run-id="{newest[-1]}"]')
        assert newest_row.locator(".wb-Run-id").inner_text() == newest[-1].split("-")[-1]
        assert "rmse" in newest_row.get_attribute("title") and "lr=" in newest_row.get_attribute("title")

        # Models is in view as it is (no scrolling past runs), and one click away once collapsed.
        page.locator(f"{SIDEBAR} .wb-Section-runs .wb-Section-body").evaluate(
            "body => body.scrollTop = body.scrollHeight"
        )
        assert in_viewport(page, f"{SIDEBAR} .wb-Section-models .wb-Model-line")
        toggle = f"{SIDEBAR} .wb-Section-models .wb-Section-toggle"
        page.click(toggle)
        page.wait_for_selector(f"{SIDEBAR} .wb-Section-models .wb-Section-body", state="hidden")
        assert in_viewport(page, toggle)  # the header stays
        page.click(toggle)  # the one click
        page.wait_for_selector(f"{SIDEBAR} .wb-Section-models .wb-Model-line", state="visible")
        assert in_viewport(page, f"{SIDEBAR} .wb-Section-models .wb-Model-line")
        assert in_viewport(page, f"{SIDEBAR} .wb-Section-models .wb-Server, {SIDEBAR} .wb-Serving .wb-Empty")

        # The experiment picker shows the chosen name (ellipsised) and its whole count.
        page.select_option(f"{SIDEBAR} .wb-Runs-experiment", LONG_EXPERIMENT)
        page.wait_for_function(
            f"[...document.querySelectorAll('{SIDEBAR} .wb-Run')].every(r => r.title.includes('{LONG_EXPERIMENT}'))"
        )
        assert page.inner_text(f"{SIDEBAR} .wb-Picker-count") == f"({EXTRA_RUNS // 2})"
        assert page.evaluate(INSIDE_JS, [f"{SIDEBAR} .wb-Picker-count", f"{SIDEBAR} .wb-Picker"])
        assert LONG_EXPERIMENT in page.get_attribute(f"{SIDEBAR} .wb-Runs-experiment", "title")
        rows = check_compact_rows(page, EXTRA_RUNS // 2)
        assert all(row["metric"].startswith("accuracy 0.9") for row in rows), rows

        # Twelve runs picked: "Compare (12)" stays whole, inside the sidebar.
        for row in rows[:12]:
            page.check(f'{SIDEBAR} .wb-Run[data-run-id="{row["id"]}"] .wb-Run-select')
        compare = page.locator(f"{SIDEBAR} .wb-Runs-compare")
        assert compare.inner_text() == "Compare (12)"
        assert compare.evaluate("b => b.scrollWidth <= b.clientWidth")
        assert page.evaluate(INSIDE_JS, [f"{SIDEBAR} .wb-Runs-compare", SIDEBAR])

        # Back to all experiments: each row of "wine-sweep" shows its own key metric (the long one).
        page.select_option(f"{SIDEBAR} .wb-Runs-experiment", "")
        page.wait_for_function(f"document.querySelectorAll('{SIDEBAR} .wb-Run').length === 50")
        wine = page.locator(f'{SIDEBAR} .wb-Run[data-run-id="{newest[-1]}"] .wb-Run-metric')
        assert wine.get_attribute("data-metric") == LONG_METRIC
        check_compact_rows(page, 50)

        box = page.locator("#jp-left-stack").bounding_box()
        clip = {"x": 0, "y": 0, "width": box["x"] + box["width"] + 4, "height": page.viewport_size["height"]}
        # A finished run's actions show over the end of its line while the pointer is on it.
        register = page.locator(f'{SIDEBAR} .wb-Run[data-run-id="{newest[-1]}"] .wb-Run-actions button')
        assert register.inner_text() == "Register run…"
        page.hover(f'{SIDEBAR} .wb-Run[data-run-id="{newest[-1]}"] .wb-Run-id')
        page.wait_for_function("b => getComputedStyle(b.parentElement).opacity === '1'", arg=register.element_handle())
        assert page.evaluate(INSIDE_JS, [f'{SIDEBAR} .wb-Run[data-run-id="{newest[-1]}"] .wb-Run-actions', SIDEBAR])
        page.screenshot(path="/tmp/sidebar_hover.png", clip=clip)
        page.mouse.move(10, 10)
        page.wait_for_timeout(300)
        page.screenshot(path="/tmp/sidebar_light.png", clip=clip)

        # A snapshot's schema and a model's versions open in place, still without sideways scrolling.
        page.click(f"{SIDEBAR} .wb-Snapshot-line")
        page.wait_for_selector(f"{SIDEBAR} .wb-Schema")
        page.click(f"{SIDEBAR} .wb-Model-line")
        page.wait_for_selector(f'{SIDEBAR} .wb-Versions tr[data-version="1"]')
        assert page.locator(SIDEBAR).evaluate(H_OVERFLOW_JS) == []
        check_compact_rows(page, 50)
        page.mouse.move(10, 10)
        page.screenshot(path="/tmp/sidebar_light_details.png", clip=clip)

        # Dark theme: the same layout, readable.
        page.click('.lm-MenuBar-itemLabel:text-is("Settings")')
        page.hover('.lm-Menu-itemLabel:text-is("Theme")')
        page.click('.lm-Menu-itemLabel:text-is("JupyterLab Dark")')
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_timeout(500)
        page.evaluate(COLOUR_JS)
        for selector in (".wb-Run-id", ".wb-Run-metricValue", ".wb-Run .wb-Status-finished", ".wb-Picker-name",
                         ".wb-Section-label", ".wb-Model-line .wb-Alias"):  # fmt: skip
            assert contrast(page, f"{SIDEBAR} {selector}") >= 4.5, selector
        check_compact_rows(page, 50)
        page.mouse.move(10, 10)
        page.screenshot(path="/tmp/sidebar_dark_details.png", clip=clip)
        page.click(f"{SIDEBAR} .wb-Snapshot-line")
        page.click(f"{SIDEBAR} .wb-Model-line")
        page.wait_for_selector(f"{SIDEBAR} .wb-Model-detail", state="detached")
        page.mouse.move(10, 10)
        page.screenshot(path="/tmp/sidebar_dark.png", clip=clip)


def test_failed_run_shows_its_error_once_at_the_top(lab: dict[str, Any]) -> None:
    root = lab["root"]
    failing = 'def train():\n    raise ValueError("boom 42")\ntrain()'
    write_notebook(root / "fail.ipynb", None, 'print("a\\nb")', 'print("before the error")\n' + failing)
    post(lab, "runs", {"notebook": "fail.ipynb", "experiment": "failing"})
    failed = wait_for_run(lab, "failing", {"failed", "finished", "killed"})
    assert failed["status"] == "failed", failed
    with browser_page(lab["url"]) as page:
        page.click(base.SIDEBAR_TAB)
        set_sidebar_width(page, 300)
        page.click(f'{SIDEBAR} .wb-Run[data-run-id="{failed["run_id"]}"] .wb-Run-id')
        view = f"#workbench-run-notebook-{failed['run_id']} .wb-NotebookView"
        header = page.wait_for_selector(f"{view} .wb-RunHeader-error")
        cell = page.wait_for_selector(f"{view} .wb-NotebookView-cell.wb-mod-failed .wb-NotebookView-errorNote")
        text = page.inner_text(view)
        assert text.count("ValueError: boom 42") == 1, text  # once, in the header
        assert "ValueError: boom 42" in page.inner_text(f"{view} .wb-RunHeader-exception")
        assert "train()" in page.inner_text(f"{view} .wb-RunHeader-traceback")  # the traceback, at the top
        assert text.count("Traceback (most recent call last)") <= 1, text
        assert "in cell [" in header.inner_text() and 'print("before the error")' in header.inner_text()
        failed_cell = page.inner_text(f"{view} .wb-NotebookView-cell.wb-mod-failed")
        assert "before the error" in failed_cell and "Traceback" not in failed_cell  # its output kept, no traceback
        assert header.bounding_box()["y"] < cell.bounding_box()["y"]
        stream = page.wait_for_selector(f"{view} .wb-NotebookView-outputs .jp-RenderedText")
        assert stream.inner_text().strip() == "a\nb"  # lines joined as lines: no stray commas

        # The header's link scrolls to the failing cell; the cell's link back to the error.
        page.click(f"{view} .wb-RunHeader-where .wb-Link")
        page.wait_for_function(
            """sel => { const box = document.querySelector(sel).getBoundingClientRect();
                        return box.top >= 0 && box.bottom <= window.innerHeight; }""",
            arg=f"{view} .wb-NotebookView-cell.wb-mod-failed",
        )
        page.click(f"{view} .wb-NotebookView-errorNote .wb-Link")
        page.wait_for_function(
            "sel => document.querySelector(sel).getBoundingClientRect().top >= 0", arg=f"{view} .wb-RunHeader-error"
        )
        page.screenshot(path="/tmp/workbench-lab-failed-run-once.png")


def test_a_failing_serving_list_is_an_error_not_no_servers(lab: dict[str, Any]) -> None:
    """When the list of model servers cannot be read, Serving says so; it never claims none run."""
    with browser_page(lab["url"]) as page:
        page.route(
            "**/workbench/api/serving*",
            lambda route: route.fulfill(status=500, content_type="application/json",
                                        body='{"error": "status folder unreadable"}'),
        )  # fmt: skip
        page.click(base.SIDEBAR_TAB)
        error = page.wait_for_selector(".wb-Serving .wb-Error")
        assert "Cannot list the model servers" in error.inner_text(), error.inner_text()
        assert "status folder unreadable" in error.inner_text(), error.inner_text()
        assert "No model servers running" not in page.inner_text(".wb-Serving")
