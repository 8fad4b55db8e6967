"""A JupyterLab pointed at a team server (issue 18), as real processes on loopback.

A `workbench server` with users alice (editor), bob (viewer) and carol (editor); alice records a
notebook run from a client process of her own (`workbench run`, `WORKBENCH_URL`/`WORKBENCH_TOKEN`).
A real `jupyter lab` whose environment names the server and bob's token (and has its own XDG
folders: no saved login, its own spool) is driven by headless Chromium: its sidebar says which
server and user it works as, its Runs list and Runs table show alice's run with her metric and as
hers, opening the run shows its executed notebook from the server, and starting a run, which a
viewer may not, shows the server's refusal in the Run dialog. No workspace folder appears in the
lab's root. A second lab, as carol, starts a run through its REST API: it is executed by the lab
and recorded on the server as carol's; its Cancel goes to the server too, not to a local folder.

Screenshots (300 px sidebar): /tmp/lab_team_light.png, /tmp/lab_team_dark.png, /tmp/lab_team_refused.png.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import VENV_BIN, write_notebook
from lab_server import CHROMIUM, CHROMIUM_ARGS, TOKEN, require_browser, running_lab, set_sidebar_width
from test_team_logging import client_env
from test_team_server import Server, empty_team

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

USERS = {"alice": "editor", "bob": "viewer", "carol": "editor"}
PARAMS = "lr = 0.1\nepochs = 2"
TRAIN = """
import workbench as wb
for step in range(epochs):
    wb.log_metric("loss", lr / (step + 1), step=step)
wb.log_metric("accuracy", 0.5 + lr)
print("trained")
"""
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
TABLE_HOOK = "document.querySelector('.wb-RunsTable').wbRunsTable"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server, its users, and alice's notebook run recorded from her own client process."""
    home = tmp_path_factory.mktemp("lab-team") / ".workbench"
    server = empty_team(home, USERS)
    try:
        laptop = home.parent / "alice-laptop"
        laptop.mkdir()
        nb = write_notebook(laptop / "train.ipynb", PARAMS, TRAIN)
        done = subprocess.run([str(VENV_BIN / "workbench"), "run", str(nb), "-p", "lr=0.4", "-e", "team-demo",
                               "--json"], cwd=laptop, env=client_env(laptop, server.url, server.tokens["alice"]),
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        server.alice_run = json.loads(done.stdout)["run_id"]  # type: ignore[attr-defined]
        yield server
    finally:
        server.stop()


@contextmanager
def team_lab(scratch: Path, server: Server, user: str) -> Iterator[dict[str, Any]]:
    """`jupyter lab` on a fresh root whose environment points at `server` as `user` (and nothing else:
    its own config and cache folders, so no saved login or spool of the test machine is used)."""
    extension = require_browser()
    root = scratch / "root"
    root.mkdir(parents=True)
    write_notebook(root / "train.ipynb", PARAMS, TRAIN)
    client = client_env(scratch, server.url, server.tokens[user])
    with ExitStack() as stack:
        patch = pytest.MonkeyPatch()
        try:  # `running_lab` copies this process's environment when it starts the lab
            for name in ("WORKBENCH_URL", "WORKBENCH_TOKEN", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
                patch.setenv(name, client[name])
            lab = stack.enter_context(running_lab(root, scratch, extension))
        finally:
            patch.undo()
        yield {**lab, "api": lab["url"].split("/lab?")[0] + "/workbench/api"}


def api(lab: dict[str, Any], path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """`(status, JSON)` of a GET (or, with `body`, a POST) to the lab's Workbench REST API."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{lab['api']}/{path}", data=data, method="GET" if body is None else "POST",
                                     headers={"Authorization": f"token {TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def bob_lab(team: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with team_lab(tmp_path_factory.mktemp("bob-lab"), team, "bob") as lab:
        yield lab


@contextmanager
def lab_page(lab: dict[str, Any]) -> Iterator[Any]:
    """A fresh page on the lab, its app ready for commands."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.set_default_timeout(20_000)
            page.goto(lab["url"].replace("/lab?", "/lab?reset&"))
            page.wait_for_selector("#jp-main-dock-panel", timeout=30_000)
            page.wait_for_function(
                "window.jupyterapp && window.jupyterapp.commands.hasCommand('workbench:open-runs-table')"
            )
            yield page
        finally:
            browser.close()


def test_status_names_the_server_and_user_and_no_workspace_is_made(team: Server, bob_lab: dict[str, Any]) -> None:
    status, answer = api(bob_lab, "status")
    assert status == 200, answer
    assert answer == {"server": {"url": team.url, "source": "WORKBENCH_URL", "user": "bob", "role": "viewer",
                                 "error": None}, "workspace": None}  # fmt: skip
    status, runs = api(bob_lab, "runs")
    assert status == 200, runs
    assert [r["run_id"] for r in runs] == [team.alice_run]
    status, refused = api(bob_lab, "models/promote", {"run_id": team.alice_run, "model": "demo"})
    assert status == 403, refused
    assert "needs role maintainer; you are viewer" in refused["error"] and team.url in refused["error"], refused
    status, serving = api(bob_lab, "serving")
    assert (status, serving) == (200, [])
    assert not (bob_lab["root"] / ".workbench").exists()


def test_a_viewer_sees_alices_run_and_the_servers_refusal(team: Server, bob_lab: dict[str, Any]) -> None:
    run_id = team.alice_run
    with lab_page(bob_lab) as page:
        page.click(SIDEBAR_TAB)
        set_sidebar_width(page, 300)

        # The sidebar's first line: the server and who the lab works as.
        line = page.wait_for_selector(".wb-Connection:not([hidden])")
        assert line.inner_text().split() == [team.url.split("//")[1], "bob", "·", "viewer"], line.inner_text()
        assert team.url in line.get_attribute("title")

        # Alice's run, with her metric, in the Runs list.
        row = page.wait_for_selector(f'.wb-Run[data-run-id="{run_id}"]', timeout=20_000)
        assert "finished" in row.inner_text() and "accuracy" in row.inner_text(), row.inner_text()
        tooltip = row.get_attribute("title")
        assert "team-demo" in tooltip and "lr=0.4" in tooltip and "accuracy=0.9" in tooltip, tooltip
        page.screenshot(path="/tmp/lab_team_light.png")

        # The Runs table: the run is alice's, with its metric.
        page.evaluate("window.jupyterapp.commands.execute('workbench:open-runs-table')")
        page.wait_for_function(f"{TABLE_HOOK} && document.querySelector('.wb-RunsTable').dataset.state === 'complete'")
        values = page.evaluate(f"""id => {{
            const t = {TABLE_HOOK};
            const row = t.store.row(id);
            return {{creator: t.store.value('creator', row), accuracy: t.store.value('metrics.accuracy', row),
                     lr: t.store.value('params.lr', row)}};
        }}""", run_id)  # fmt: skip
        assert values == {"creator": "alice", "accuracy": pytest.approx(0.9), "lr": 0.4}, values

        # Opening the run: its header and executed notebook, read from the server.
        page.click(f'.wb-Run[data-run-id="{run_id}"]')
        header = page.wait_for_selector(".wb-RunHeader-title")
        assert run_id in header.inner_text() and "finished" in header.inner_text(), header.inner_text()
        page.wait_for_selector(".wb-NotebookView-banner")
        page.wait_for_function("document.body.innerText.includes('trained')")

        # Starting a run, which a viewer may not: the server's message, in the dialog.
        page.evaluate(
            "() => { window.jupyterapp.commands.execute('workbench:run-as-experiment', {path: 'train.ipynb'}); }"
        )
        page.click(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        refusal = page.wait_for_selector(".jp-Dialog .wb-ErrorBox:visible")
        text = refusal.inner_text()
        assert "logging runs needs role editor; you are viewer" in text and team.url in text, text
        page.screenshot(path="/tmp/lab_team_refused.png")
        page.click(".jp-Dialog .jp-Dialog-button.jp-mod-reject")

        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.evaluate("window.jupyterapp.shell.activateById('workbench-sidebar')")
        time.sleep(0.5)  # the theme's stylesheet paints
        page.screenshot(path="/tmp/lab_team_dark.png")
    assert not (bob_lab["root"] / ".workbench").exists()


def test_a_run_started_in_the_lab_is_recorded_on_the_server(team: Server, tmp_path: Path) -> None:
    """An editor's Run dialog: the lab executes the notebook (relative to its root) and the server
    records the run as the editor's; the sidebar lists it once the server has it."""
    with team_lab(tmp_path, team, "carol") as lab, lab_page(lab) as page:
        page.evaluate(
            "() => { window.jupyterapp.commands.execute('workbench:run-as-experiment', {path: 'train.ipynb'}); }"
        )
        dialog = page.wait_for_selector(".jp-Dialog:has(.wb-RunDialog)")
        dialog.wait_for_selector('input[name="param-lr"]').fill("0.2")
        dialog.wait_for_selector('input[name="experiment"]').fill("from-the-lab")
        page.click(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        page.wait_for_selector(".jp-Dialog", state="detached")
        page.wait_for_function(f"document.body.innerText.includes('logged to the team server {team.url}')")

        deadline = time.monotonic() + 120
        while True:
            _, rows = api(lab, "runs?experiment=from-the-lab")
            if rows and rows[0]["status"] == "finished":
                break
            assert time.monotonic() < deadline, (rows, lab["log"].read_text()[-3000:])
            time.sleep(0.5)
        [row] = rows
        page.evaluate("window.jupyterapp.shell.activateById('workbench-sidebar')")  # a click could close it
        page.wait_for_selector(f'.wb-Run[data-run-id="{row["run_id"]}"][data-status="finished"]')
        status, run = api(lab, f"runs/{row['run_id']}")
        assert status == 200, run
        assert run["creator"] == "carol" and run["params"] == {"lr": 0.2, "epochs": 2}
        assert run["metrics"]["accuracy"] == pytest.approx(0.7)
        assert Path(run["notebook"]).resolve() == (lab["root"] / "train.ipynb").resolve()

        # Rerun: the same notebook content and parameters, recorded on the server as carol's.
        status, again = api(lab, f"runs/{row['run_id']}/rerun", {})
        assert status == 201, again
        deadline = time.monotonic() + 120
        while (rerun := api(lab, f"runs/{again['run_id']}")[1]).get("status") != "finished":
            assert time.monotonic() < deadline, (rerun, lab["log"].read_text()[-3000:])
            time.sleep(0.5)
        assert rerun["creator"] == "carol" and rerun["params"] == run["params"], rerun

        # Cancel goes to the server too (not to a local folder): the run has ended, nothing to cancel.
        status, answer = api(lab, f"runs/{row['run_id']}/cancel", {})
        assert status == 200 and answer == {"run_id": row["run_id"], "cancelled": False}, answer
        assert not (lab["root"] / ".workbench").exists()
    with team.client("carol") as http:
        assert http.get(f"/api/v1/runs/{row['run_id']}").json()["creator"] == "carol"


def test_the_servers_refusal_of_the_token_reaches_the_ui(team: Server, tmp_path: Path) -> None:
    """A token the server does not know: the status line says so, and a request answers 403 with the
    server's message (not a 500, not the lab's own login failing)."""
    revoked = Server(team.home, team.url, team.proc, team.log, tokens={"mallory": "wbt_" + "x" * 43})
    with team_lab(tmp_path, revoked, "mallory") as lab:
        status, answer = api(lab, "status")
        assert status == 200 and answer["server"]["user"] is None, answer
        assert "refused the token" in answer["server"]["error"], answer
        status, refused = api(lab, "runs", {"notebook": "train.ipynb"})
        assert status == 403 and "refused the token" in refused["error"], refused
