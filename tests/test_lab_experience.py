"""The JupyterLab experience as a person meets it: errors where they acted, valid defaults, runs that
explain themselves, the models a server serves, and a dark theme that stays readable.

The first tests check the library side (names, the Run dialog's defaults and field checks, the
REST error body, what `running_servers` reports) in-process. The browser tests drive a real
`jupyter lab` in headless Chromium (the `lab` fixture of test_lab_extension.py) and keep
screenshots in /tmp/workbench-lab-*.png for a person to look at.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import test_lab_extension as base
from conftest import write_notebook
from lab_server import set_sidebar_width, use_theme
from test_lab_extension_flows import ACCEPT, DIALOG, api, browser_page, model_run

lab = base.lab  # the fixture: a running `jupyter lab` with the extension on a fresh workspace
SHOTS = Path("/tmp")
TOAST = ".Toastify__toast"

# In the page: a CSS colour as [r, g, b, alpha] (a 1-pixel canvas parses any syntax, color-mix too),
# and the WCAG contrast of an element's text against the background it is drawn on.
COLOUR_JS = """
window.wbRGBA = css => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.fillStyle = css;
  ctx.fillRect(0, 0, 1, 1);
  const d = ctx.getImageData(0, 0, 1, 1).data;
  return [d[0], d[1], d[2], d[3] / 255];
};
window.wbContrast = el => {
  const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const layers = [];
  for (let node = el; node; node = node.parentElement) {
    const colour = wbRGBA(getComputedStyle(node).backgroundColor);
    if (colour[3] > 0) {
      layers.push(colour);
      if (colour[3] >= 1) break;
    }
  }
  let bg = [255, 255, 255, 1];
  for (const layer of layers.reverse()) bg = over(layer, bg);
  const fg = over(wbRGBA(getComputedStyle(el).color), bg);
  const lum = c => c.slice(0, 3).map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  }).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  return (hi + 0.05) / (lo + 0.05);
};
true;  // the script's value: a function here would be called by page.evaluate
"""


# --------------------------------------------------------------------------------------------
# Library side (fast)


@pytest.mark.parametrize(
    ("text", "name"),
    [("02_train", "nb-02_train"), ("train", "train"), ("my notebook (v2)", "my-notebook-v2"), ("a..b", "a.b"),
     ("__x__", "x"), ("...", "default"), ("é", "default"), ("9" * 300, "nb-" + "9" * 125)],
)  # fmt: skip
def test_derive_name_makes_legal_names(text: str, name: str) -> None:
    from workbench.names import derive_name, validate_name

    assert derive_name(text) == name
    assert validate_name(derive_name(text)) == name


def test_run_form_proposes_the_notebooks_own_experiment(tmp_path: Path) -> None:
    from workbench.jupyter.forms import run_form

    cell = "%matplotlib inline\nimport workbench as wb\n# wb.set_experiment('old')\nwb.set_experiment('wine-cls')"
    own = write_notebook(tmp_path / "02_train.ipynb", "lr = 0.1", cell)
    assert run_form(own) == {
        "parameters": {"lr": {"default": 0.1, "type": "float", "help": ""}},
        "default_experiment": "wine-cls",
    }
    cell = "from workbench import set_experiment\nset_experiment('1x')"
    illegal = write_notebook(tmp_path / "01 data.ipynb", None, cell)
    assert run_form(illegal)["default_experiment"] == "nb-01-data"  # its own is illegal: derived from the name
    broken = write_notebook(tmp_path / "03.ipynb", None, "def (:", "wb.set_experiment(name='three')")
    assert run_form(broken)["default_experiment"] == "three"


def test_run_form_checks_name_the_field(tmp_path: Path, ws: Any) -> None:
    from workbench.jupyter.base import error_body
    from workbench.jupyter.forms import FieldError, check_run_form, check_sweep_form

    nb = write_notebook(tmp_path / "train.ipynb", "lr = 0.1\nepochs = 3", "print(lr)")
    check_run_form(nb, {"lr": "0.5"}, "flows")
    cases = [
        (lambda: check_run_form(nb, {"lr": "abc"}, None), "params.lr", "float"),
        (lambda: check_run_form(nb, {}, "02_train"), "experiment", "start with a letter"),
        (lambda: check_run_form(nb, {"lx": "1"}, None), "params.lx", "Unknown parameter"),
        (lambda: check_sweep_form(nb, {"epochs": ["1", "x"]}, {}, None, 1, ws), "params.epochs", "int"),
        (lambda: check_sweep_form(nb, {"lr": ["0.1"]}, {}, None, 10**6, ws), "parallel", "parallel"),
    ]
    for check, field, words in cases:
        with pytest.raises(FieldError) as caught:
            check()
        body = error_body(caught.value)
        assert body["field"] == field and words.lower() in (body["error"] + str(body["hint"])).lower(), body


def test_error_body_carries_gate_verdicts() -> None:
    from workbench.jupyter.base import error_body
    from workbench.models.gates import GateRefused, GateResult

    refused = GateRefused("refused", "improve it", [GateResult("accuracy >= 0.95", False, "accuracy = 0.8")])
    assert error_body(refused) == {
        "error": "refused", "hint": "improve it",
        "gates": [{"gate": "accuracy >= 0.95", "passed": False, "detail": "accuracy = 0.8"}],
    }  # fmt: skip


def test_running_servers_report_the_version_served_now(ws: Any) -> None:
    from workbench.serving.server import running_servers, serving_dir

    folder = serving_dir(ws)
    folder.mkdir()
    status = {"ref": "wine@production", "model": "wine", "alias": "production", "version": 1, "canary": None,
              "url": "http://127.0.0.1:9", "pid": os.getpid(), "host": socket.gethostname(),
              "started_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    (folder / "1-9.json").write_text(json.dumps(status))
    assert running_servers(ws)[0]["version"] == 1  # no alias file: what the server loaded
    (ws.root / "models" / "wine").mkdir(parents=True)
    (ws.root / "models" / "wine" / "aliases.json").write_text(json.dumps({"aliases": {"production": 3}, "latest": 4}))
    assert running_servers(ws)[0]["version"] == 3  # the alias moved: the watcher serves v3 now


def test_status_file_says_what_is_served() -> None:
    from types import SimpleNamespace

    from workbench.serving.server import _status_info

    slot = SimpleNamespace(parsed=SimpleNamespace(name="wine", alias="production"), follows_alias=True,
                           current=SimpleNamespace(version=SimpleNamespace(version=2)))  # fmt: skip
    server = SimpleNamespace(slot=slot, ref="wine@production", url="http://127.0.0.1:8000", canary=(3, 0.1),
                             shadow=SimpleNamespace(version=4))  # fmt: skip
    info = _status_info(server)  # type: ignore[arg-type]
    assert {k: info[k] for k in ("model", "alias", "version", "canary", "shadow", "ref")} == {
        "model": "wine", "alias": "production", "version": 2, "canary": {"version": 3, "fraction": 0.1},
        "shadow": 4, "ref": "wine@production",
    }  # fmt: skip
    assert info["pid"] == os.getpid() and info["started_at"]


# --------------------------------------------------------------------------------------------
# Browser helpers


def post(lab: dict[str, Any], path: str, body: dict[str, Any]) -> Any:
    server = lab["url"].split("/lab?")[0]
    request = urllib.request.Request(
        f"{server}/workbench/api/{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"token {base.TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=20) as answer:
        return json.loads(answer.read())


def wait_for_run(lab: dict[str, Any], experiment: str, statuses: set[str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = api(lab, f"runs?experiment={experiment}")
        if rows and rows[0]["status"] in statuses:
            return rows[0]
        assert time.monotonic() < deadline, f"no run of {experiment} reached {statuses}: {rows}"
        time.sleep(0.5)


RUN_BUTTON = ".jp-NotebookPanel-toolbar .wb-RunButton:visible"


def open_notebook(page: Any, lab: dict[str, Any], notebook: str) -> None:
    """Load the lab with only `notebook` open (`reset`: no tabs restored from the last page) and press
    its "Run as experiment" button."""
    page.goto(lab["url"].replace("/lab?", f"/lab/tree/{notebook}?reset&"))
    page.wait_for_selector(f'.lm-DockPanel .lm-TabBar-tab.lm-mod-current:has-text("{notebook}")', timeout=30_000)
    page.click(RUN_BUTTON, timeout=30_000)


def open_run_dialog(page: Any, lab: dict[str, Any], notebook: str) -> Any:
    open_notebook(page, lab, notebook)
    dialog = page.wait_for_selector(f"{DIALOG}:has(.wb-RunDialog)")
    assert notebook in dialog.inner_text()
    return dialog


def visible_toasts(page: Any) -> list[str]:
    return [t.inner_text() for t in page.query_selector_all(TOAST) if t.is_visible()]


def contrast(page: Any, selector: str) -> float:
    """The contrast of the first `selector` (waited for: the sidebar re-renders its sections as it polls)."""
    page.evaluate(COLOUR_JS)
    found = "sel => { const el = document.querySelector(sel); return el ? wbContrast(el) : false; }"
    return page.wait_for_function(found, arg=selector).json_value()


def chart_background(page: Any) -> tuple[list[float], list[float]]:
    """(plotly's paper_bgcolor of the first chart, the theme's --jp-layout-color0), both as RGBA."""
    page.evaluate(COLOUR_JS)
    return page.evaluate(
        """() => {
          const chart = document.querySelector('.wb-CompareView-chart');
          const theme = getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim();
          return [wbRGBA(chart._fullLayout.paper_bgcolor), wbRGBA(theme)];
        }"""
    )


def same_colour(a: list[float], b: list[float]) -> bool:
    return all(abs(x - y) <= 1 for x, y in zip(a[:3], b[:3], strict=True))


# --------------------------------------------------------------------------------------------
# Browser tests


@pytest.mark.browser
@pytest.mark.slow
def test_run_dialog_defaults_and_inline_errors(lab: dict[str, Any]) -> None:
    root = lab["root"]
    write_notebook(root / "02_train.ipynb", "lr = 0.1  # learning rate\nepochs = 3", "print(lr * epochs)")
    with browser_page(lab["url"]) as page:
        # Start with the defaults on "02_train": the proposed experiment is legal and the run starts.
        dialog = open_run_dialog(page, lab, "02_train.ipynb")
        assert dialog.wait_for_selector('input[name="experiment"]').input_value() == "nb-02_train"
        page.click(ACCEPT)
        page.wait_for_selector(DIALOG, state="detached")
        run = wait_for_run(lab, "nb-02_train", {"queued", "running", "finished"})
        assert not [t for t in visible_toasts(page) if "rror" in t or "annot" in t]

        # A value that is not a float: the dialog stays open, the field is marked, the reason under it.
        dialog = open_run_dialog(page, lab, "train.ipynb")
        dialog.wait_for_selector('input[name="param-lr"]').fill("abc")
        clicked = time.monotonic()
        page.click(ACCEPT)
        error = page.wait_for_selector(
            f'{DIALOG} .wb-RunDialog-field[data-field="params.lr"].wb-mod-invalid .wb-RunDialog-fieldError',
            state="visible", timeout=10_000,
        )  # fmt: skip
        assert time.monotonic() - clicked < 2, "the inline error took more than 2 s"
        assert "lr" in error.inner_text() and "float" in error.inner_text()
        assert page.locator(f"{DIALOG} .wb-RunDialog").is_visible()
        page.screenshot(path=str(SHOTS / "workbench-lab-inline-error.png"))

        # An illegal experiment name is marked on its own field; fixing both starts the run.
        page.fill(f'{DIALOG} input[name="param-lr"]', "0.2")
        assert page.locator(f"{DIALOG} .wb-mod-invalid").count() == 0  # editing took the mark away
        page.fill(f'{DIALOG} input[name="experiment"]', "9lives")
        page.click(ACCEPT)
        page.wait_for_selector(f'{DIALOG} .wb-RunDialog-field[data-field="experiment"].wb-mod-invalid')
        assert "start with a letter" in page.inner_text(f"{DIALOG} .wb-RunDialog-field[data-field='experiment']")
        page.fill(f'{DIALOG} input[name="experiment"]', "fixed")
        page.click(ACCEPT)
        page.wait_for_selector(DIALOG, state="detached")
        assert wait_for_run(lab, "fixed", {"queued", "running", "finished"})["params.lr"] == 0.2

        # An error with no dialog to show it in (a broken parameters cell) is a toast that stays.
        write_notebook(root / "broken.ipynb", "lr = (", "print(1)")
        open_notebook(page, lab, "broken.ipynb")
        toast = page.wait_for_selector(f"{TOAST}:has-text('syntax error')", state="visible")
        page.wait_for_timeout(6_000)  # longer than a notification that closes by itself stays
        assert toast.is_visible(), "the error toast closed by itself"
        page.screenshot(path=str(SHOTS / "workbench-lab-error-toast.png"))
    assert run["experiment"] == "nb-02_train"
    assert api(lab, "notebooks/parameters?path=02_train.ipynb")["default_experiment"] == "nb-02_train"


@pytest.mark.browser
@pytest.mark.slow
def test_refused_promotion_and_the_served_version(lab: dict[str, Any]) -> None:
    from workbench.models.registry import promote, set_gates
    from workbench.serving.server import serve_in_background
    from workbench.workspace import init_workspace

    root = lab["root"]
    ws = init_workspace(root / ".workbench")
    first, weak, strong = model_run(root, 0.9), model_run(root, 0.8), model_run(root, 0.92)
    promote(first, ws=ws)  # v1 = production
    set_gates("classifier", {"metrics": {"accuracy": {"min": 0.85}}}, ws=ws)
    promote(strong, alias=None, ws=ws)  # v2, registered without moving an alias
    server = serve_in_background("classifier@production", ws=ws, log_predictions=False)
    try:
        with browser_page(lab["url"]) as page:
            page.click(base.SIDEBAR_TAB)
            set_sidebar_width(page, 300)
            model = '.wb-Model[data-model="classifier"]'
            # The serving line says what is served: model@version, alias, since when, where.
            served = page.wait_for_selector(".wb-Server:has-text('classifier@v1')")
            assert "production" in served.inner_text() and "since" in served.inner_text()

            # "Register run…" on a run below the gate: the dialog stays and names the gate.
            page.click(f'.wb-Run[data-run-id="{weak}"] .wb-Run-actions button:text-is("Register run…")')
            page.wait_for_selector(f"{DIALOG}:has-text('{weak}')")
            page.fill(f"{DIALOG} .wb-Confirm-reason", "browser test")
            page.click(ACCEPT)
            gate = page.wait_for_selector(f"{DIALOG} .wb-ErrorBox .wb-Gate.wb-mod-failed", state="visible")
            assert "accuracy >= 0.85" in gate.inner_text() and "0.8" in gate.inner_text()
            page.screenshot(path=str(SHOTS / "workbench-lab-gate-refused.png"))
            page.click(f"{DIALOG} .jp-Dialog-footer .jp-mod-reject")
            page.wait_for_selector(DIALOG, state="detached")

            # "Set production → v2" moves the alias (no gates); the server follows, and says so.
            page.click(f"{model} .wb-Model-line")
            page.click(f'{model} .wb-Versions tr[data-version="2"] button:text-is("Set production → v2")')
            page.wait_for_selector(f"{DIALOG}:has-text('v2')")
            page.click(ACCEPT)
            page.wait_for_selector(DIALOG, state="detached")
            page.wait_for_selector(f'{model} .wb-Model-line .wb-Alias:text-is("production → v2")')
            page.wait_for_selector(".wb-Server:has-text('classifier@v2')", timeout=30_000)
            page.wait_for_selector(f'{model} .wb-Versions tr[data-version="1"] button:text-is("Set production → v1")')
            page.screenshot(path=str(SHOTS / "workbench-lab-models-light.png"))
    finally:
        server.stop()
    assert [m["aliases"] for m in api(lab, "models")] == [{"production": 2}]


@pytest.mark.browser
@pytest.mark.slow
def test_executed_run_views_explain_the_run(lab: dict[str, Any]) -> None:
    root = lab["root"]
    failing = 'def train():\n    raise ValueError("boom 42")\ntrain()'
    write_notebook(root / "fail.ipynb", None, 'print("a\\nb")', failing)
    post(lab, "runs", {"notebook": "fail.ipynb", "experiment": "failing"})
    failed = wait_for_run(lab, "failing", {"failed", "finished", "killed"})
    assert failed["status"] == "failed", failed
    finished = lab["run_ids"][0]  # lr = 0.1, loss and accuracy logged, no executed notebook kept
    with browser_page(lab["url"]) as page:
        page.click(base.SIDEBAR_TAB)
        page.click(f'.wb-Run[data-run-id="{failed["run_id"]}"] .wb-Run-id')
        view = f"#workbench-run-notebook-{failed['run_id']} .wb-NotebookView"
        header = page.wait_for_selector(f"{view} .wb-RunHeader-error")
        assert "ValueError: boom 42" in header.inner_text()
        assert "Traceback" in header.inner_text() and "train()" in page.inner_text(f"{view} .wb-RunHeader-traceback")
        page.wait_for_selector(f"{view} .wb-NotebookView-cell.wb-mod-failed")
        stream = page.wait_for_selector(f"{view} .wb-NotebookView-outputs .jp-RenderedText")
        assert stream.inner_text().strip() == "a\nb"  # lines joined as lines: no stray commas
        # Code is highlighted by the lab's own language registry.
        source = page.wait_for_selector(f"{view} .wb-NotebookView-source:has(span)")
        coloured = """pre => {
          const plain = getComputedStyle(pre).color;
          return [...pre.querySelectorAll('span')].some(span => getComputedStyle(span).color !== plain);
        }"""
        assert source.evaluate(coloured), source.inner_html()
        page.screenshot(path=str(SHOTS / "workbench-lab-failed-run.png"))

        page.click(f'.wb-Run[data-run-id="{finished}"] .wb-Run-id')
        view = f"#workbench-run-notebook-{finished} .wb-NotebookView"
        title = page.wait_for_selector(f"{view} .wb-RunHeader-title")
        assert "finished" in title.inner_text()
        assert "lr = 0.1" in page.inner_text(f"{view} .wb-RunHeader-params")
        assert "accuracy" in page.inner_text(f"{view} .wb-RunHeader-metrics")
        page.screenshot(path=str(SHOTS / "workbench-lab-finished-run.png"))


@pytest.mark.browser
@pytest.mark.slow
def test_dark_theme_charts_and_contrast(lab: dict[str, Any], tmp_path: Path) -> None:
    from workbench.models.registry import promote
    from workbench.workspace import init_workspace

    use_theme(tmp_path / "lab-settings", "JupyterLab Dark")
    promote(model_run(lab["root"], 0.9), ws=init_workspace(lab["root"] / ".workbench"))
    first, second = lab["run_ids"][:2]
    with browser_page(lab["url"]) as page:
        # The inline error of the Run dialog stays readable in the dark theme.
        open_run_dialog(page, lab, "train.ipynb")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.fill(f'{DIALOG} input[name="param-lr"]', "abc")
        page.click(ACCEPT)
        page.wait_for_selector(f"{DIALOG} .wb-mod-invalid .wb-RunDialog-fieldError", state="visible")
        assert contrast(page, f"{DIALOG} .wb-mod-invalid .wb-RunDialog-fieldError") >= 4.5
        page.screenshot(path=str(SHOTS / "workbench-lab-inline-error-dark.png"))
        page.click(f"{DIALOG} .jp-Dialog-footer .jp-mod-reject")

        page.click(base.SIDEBAR_TAB)
        set_sidebar_width(page, 300)
        page.wait_for_selector(".wb-Model-line .wb-Alias")
        page.wait_for_selector(".wb-Run .wb-Status-finished")
        for selector in (".wb-Model-line .wb-Alias", ".wb-Run .wb-Status-finished"):
            assert contrast(page, selector) >= 4.5, selector
        page.screenshot(path=str(SHOTS / "workbench-lab-sidebar-dark.png"))

        page.check(f'.wb-Run[data-run-id="{first}"] .wb-Run-select')
        page.check(f'.wb-Run[data-run-id="{second}"] .wb-Run-select')
        page.click(".wb-Runs-compare")
        page.wait_for_selector(".wb-CompareView-chart .main-svg", timeout=30_000)
        page.wait_for_selector(".wb-CompareView-diff tr.wb-mod-differs")
        paper, theme = chart_background(page)
        assert same_colour(paper, theme), (paper, theme)
        assert contrast(page, ".wb-CompareView-diff tr.wb-mod-differs td") >= 4.5
        page.screenshot(path=str(SHOTS / "workbench-lab-compare-dark.png"))
        page.locator(".wb-CompareView-diff").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "workbench-lab-diff-dark.png"))

        # Switching the theme live re-colours the drawn charts.
        page.click('.lm-MenuBar-itemLabel:text-is("Settings")')
        page.hover('.lm-Menu-itemLabel:text-is("Theme")')
        page.click('.lm-Menu-itemLabel:text-is("JupyterLab Light")')
        page.wait_for_function("document.body.dataset.jpThemeLight === 'true'")
        page.wait_for_function(
            """() => {
              const chart = document.querySelector('.wb-CompareView-chart');
              return wbRGBA(chart._fullLayout.paper_bgcolor)[0] > 200;
            }"""
        )
        paper, theme = chart_background(page)
        assert same_colour(paper, theme), (paper, theme)
        for selector in (".wb-CompareView-diff tr.wb-mod-differs td", ".wb-Model-line .wb-Alias"):
            assert contrast(page, selector) >= 4.5, selector
        page.screenshot(path=str(SHOTS / "workbench-lab-compare-light.png"))
