"""Regenerate the screenshots of the README and docs (`make screenshots`).

The pictures show what a user sees after `make demo`: the demo's notebooks run on a fresh
workspace (a snapshot, training runs, a sweep, a promoted model served on loopback), then a real
`jupyter lab` with the built extension is driven by headless Chromium in the light and the dark
theme. Each view is written to `docs/images/<view>-<theme>.png`; the README and
docs/extension.md show them. Run it after changing a view, look at the pictures, commit them.

Usage: .venv/bin/python docs/screenshots.py [--out docs/images] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the lab launcher the browser tests use

from lab_server import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    labextension_dir,
    running_lab,
    set_sidebar_width,
    use_theme,
)

THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
VIEWS = ("sidebar", "runs-table", "compare", "models")
SIDEBAR_TAB = '.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="workbench-sidebar"]'
SIDEBAR_WIDTH = 300
WINDOW = {"width": 1400, "height": 860}


def image_names() -> list[str]:
    """Every picture the script writes (the README and docs must show each of them)."""
    return [f"{view}-{theme}.png" for view in VIEWS for theme in THEMES]


def build_workspace(root: Path, port: int) -> subprocess.Popen[bytes]:
    """Run the demo into `root/.workbench` (unless it is there) and serve its model on `port`."""
    env = {**os.environ, "WORKBENCH_HOME": str(root / ".workbench")}
    if not (root / ".workbench").is_dir():
        subprocess.run([sys.executable, "-m", "workbench.cli", "demo", str(root / ".workbench"), "--no-serve"],
                       cwd=root, env=env, check=True)  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "wine-classifier@production", "--port", str(port)],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def run_command(page: Any, command: str, args: dict[str, Any] | None = None) -> None:
    page.evaluate("([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}])


def settle(page: Any, seconds: float = 1.5) -> None:
    """Let polling views and plotly finish drawing before the picture is taken."""
    page.wait_for_load_state("networkidle")
    time.sleep(seconds)


def sweep_run_ids(page: Any) -> list[str]:
    return page.evaluate(
        """async () => {
          const xsrf = document.cookie.match(/_xsrf=([^;]+)/)?.[1] ?? '';
          const answer = await fetch('/workbench/api/runs?experiment=wine-sweep&limit=6',
                                     { headers: { 'X-XSRFToken': xsrf } });
          return (await answer.json()).map(r => r.run_id);
        }"""
    )


def shoot_theme(page: Any, url: str, out: Path, theme: str) -> list[Path]:
    """The four views in one theme; returns the files written."""
    written: list[Path] = []

    def shot(view: str, clip_sidebar: bool = False, height: float | None = None) -> None:
        path = out / f"{view}-{theme}.png"
        if clip_sidebar:
            box = page.locator("#jp-left-stack").bounding_box()
            tall = min(height or WINDOW["height"], WINDOW["height"])
            page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": box["x"] + box["width"] + 4, "height": tall})
        else:
            page.screenshot(path=str(path))
        written.append(path)

    page.goto(url.replace("/lab?", "/lab?reset&"))
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    page.click(SIDEBAR_TAB, timeout=30_000)
    page.wait_for_selector(".wb-Run", timeout=30_000)
    set_sidebar_width(page, SIDEBAR_WIDTH)
    settle(page)
    shot("sidebar", clip_sidebar=True)

    # Models: fold Runs (one click, as a user would) so the registry and the serving line have room.
    page.click(".wb-Section-runs .wb-Section-toggle")
    page.wait_for_selector(".wb-Server", timeout=60_000)  # the demo's model server, once it is polled
    page.click(".wb-Model-line")  # its versions, aliases and actions
    page.wait_for_selector(".wb-Model-detail", timeout=30_000)
    settle(page)
    models = page.locator(".wb-Section-models").bounding_box()
    shot("models", clip_sidebar=True, height=models["y"] + models["height"] + 24)
    page.click(".wb-Section-runs .wb-Section-toggle")

    run_command(page, "workbench:open-runs-table")
    page.wait_for_selector(".wb-RunsTable", timeout=30_000)
    settle(page)
    shot("runs-table")

    run_command(page, "workbench:compare-runs", {"runIds": sweep_run_ids(page), "metric": None})
    page.wait_for_selector(".wb-CompareView-chart .main-svg", timeout=60_000)
    settle(page, 3)
    shot("compare")
    return written


def take_screenshots(root: Path, scratch: Path, out: Path, log: Callable[[str], None] = print) -> list[Path]:
    from playwright.sync_api import sync_playwright

    extension = labextension_dir()
    if CHROMIUM is None or extension is None:
        raise SystemExit("Needs chromium on PATH (apt-get install -y chromium) and a built extension (make setup).")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for theme, theme_name in THEMES.items():
        use_theme(scratch / "lab-settings", theme_name)
        with running_lab(root, scratch, extension, timeout=60) as lab, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport=WINDOW)
                page.set_default_timeout(30_000)
                written += shoot_theme(page, lab["url"], out, theme)
            finally:
                browser.close()
        log(f"{theme}: {', '.join(p.name for p in written[-len(VIEWS):])}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the pictures go")
    parser.add_argument("--workspace", type=Path, help="a root folder for the demo's .workbench (reused if there)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="workbench-shots-") as tmp:
        scratch = Path(tmp)
        root = args.workspace or scratch / "root"
        root.mkdir(parents=True, exist_ok=True)
        server = build_workspace(root, free_port())
        try:
            written = take_screenshots(root, scratch, args.out)
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(f"Wrote {len(written)} screenshots to {args.out}")


if __name__ == "__main__":
    main()
