"""A real `jupyter lab` with the Workbench extension, for the browser tests and `make screenshots`.

One place knows how to start it in isolation: its own Jupyter data/config/settings folders (so
the developer's own lab setup never leaks in), the built extension symlinked in, the server
extension enabled, the "news" notification switched off, and optionally a theme chosen up front.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The browser .ci/run installs (or finds) on PATH, wherever that puts it; None when there is none.
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TOKEN = "workbench-browser-test"


def labextension_dir() -> Path | None:
    """The freshest built front end: the repo's build output, else what the wheel installed."""
    built = REPO / "workbench" / "labextension"
    if (built / "package.json").is_file():
        return built
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "workbench-jupyterlab"
    return installed if (installed / "package.json").is_file() else None


def require_browser() -> Path:
    """The built extension, once Chromium is known to be there: skip where they are missing, but
    fail in CI (CI must run the browser tests, not skip them)."""
    import pytest

    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("Chromium is not on PATH in CI (CI is set): .ci/run installs it with apt-get install chromium")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    extension = labextension_dir()
    if extension is None:
        pytest.skip("The front end is not built: run 'pip install -e .' (or 'jlpm build' in extension/)")
    return extension


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_theme(settings_root: Path, theme: str) -> None:
    """The lab's user setting for the theme (read when a page loads)."""
    folder = settings_root / "@jupyterlab" / "apputils-extension"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "themes.jupyterlab-settings").write_text(json.dumps({"theme": theme}))


def _isolated_env(scratch: Path, extension: Path) -> dict[str, str]:
    """Jupyter folders of our own: the extension (symlinked), the server extension, quiet settings."""
    data_dir = scratch / "jupyter-data"
    (data_dir / "labextensions").mkdir(parents=True, exist_ok=True)
    link = data_dir / "labextensions" / "workbench-jupyterlab"
    if not link.exists():
        link.symlink_to(extension, target_is_directory=True)
    config_dir = scratch / "jupyter-config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"workbench.jupyter": True}}})
    )
    settings = scratch / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = dict(
        os.environ,
        JUPYTER_PATH=str(data_dir),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTERLAB_SETTINGS_DIR=str(scratch / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(scratch / "lab-workspaces"),
    )
    env.pop("WORKBENCH_HOME", None)  # the workspace is found from the server's root, as in real use
    return env


@contextmanager
def running_lab(root: Path, scratch: Path, extension: Path, timeout: float = 30) -> Iterator[dict[str, Any]]:
    """Start `jupyter lab` on `root` (its workspace: `root/.workbench`); yields url, root, log, settings.

    The app object is exposed in the page (`window.jupyterapp`) so that scripts can run lab
    commands such as a theme change, as a user would from a menu.
    """
    env = _isolated_env(scratch, extension)
    port = free_port()
    log_path = scratch / "lab.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed after the server stops
    proc = subprocess.Popen(
        [str(VENV_BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip", "127.0.0.1",
         "--port", str(port), f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/workbench/api/status?token={TOKEN}", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("jupyter lab did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.25)
        yield {"url": f"{base}/lab?token={TOKEN}", "root": root, "log": log_path, "settings": scratch / "lab-settings"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def set_sidebar_width(page: Any, width: int) -> None:
    """Drag the handle between the left panel and the main area so the panel is `width` px wide."""
    box = page.locator("#jp-left-stack").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] + 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + width + 2, y, steps=5)
    page.mouse.up()
    page.wait_for_function(
        f"Math.abs(document.querySelector('#jp-left-stack').getBoundingClientRect().width - {width}) <= 4"
    )
