"""Attack: another local user reads (or writes) the workspace because its files followed the umask.

The workspace holds training data, every logged metric and the model server's prediction log
(request inputs). These tests build a workspace the way a user would, under the most permissive
umask (000), in a folder other users can reach, and then try to read it as `nobody`.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="needs root and setpriv to act as another user")  # fmt: skip

NOBODY = 65534
USERS_GID = 100

# Everything Workbench writes in ordinary use: a snapshot, an interactive run with metrics and an
# artifact, a model, a prediction log.
_WORKLOAD = r"""
import os, sys
os.umask(int(sys.argv[2], 8))
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
import workbench as wb
from workbench.serving.predlog import PredictionLogger

group = sys.argv[3] or None
ws = wb.init(sys.argv[1], group=group)
frame = pd.DataFrame({"x": np.arange(40.0), "y": [0, 1] * 20})
wb.snapshot("data", frame)
wb.load_snapshot("data")
wb.log_metric("secret_metric", 0.5)
wb.log_text("notes.txt", "confidential")
wb.log_model(LogisticRegression().fit(frame[["x"]], frame.y), "clf", sample=frame[["x"]].head())
wb.end_run()
logger = PredictionLogger(ws, "clf")
logger.log("req-1", 1, [{"x": 123.0}], [1], 1.0)
logger.flush()
"""


@pytest.fixture()
def reachable_folder():
    """A folder every local user can enter (unlike pytest's tmp_path, which is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="wb-perm-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _build(home: Path, umask: str = "000", group: str = "") -> None:
    subprocess.run([sys.executable, "-c", _WORKLOAD, str(home), umask, group], check=True,
                   env={k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")},
                   cwd=home.parent, timeout=120)  # fmt: skip


def _as_user(uid: int, gid: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def _every_path(root: Path) -> list[Path]:
    return [root, *root.rglob("*")]


def test_private_workspace_ignores_a_permissive_umask(reachable_folder: Path) -> None:
    home = reachable_folder / ".workbench"
    _build(home)

    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    exposed = [f"{p.relative_to(home)} {stat.S_IMODE(p.lstat().st_mode):04o}"
               for p in _every_path(home) if stat.S_IMODE(p.lstat().st_mode) & 0o077]  # fmt: skip
    assert not exposed, f"readable by group/others: {exposed}"
    predictions = next((home / "predictions" / "clf").glob("*.jsonl"))
    for target in (home / "catalog.duckdb", predictions, home / "runs"):
        attempt = _as_user(NOBODY, NOBODY, "cat" if target.is_file() else "ls", str(target))
        assert attempt.returncode != 0 and "Permission denied" in attempt.stderr, attempt
    # and the owner still works with it under their normal umask
    _build(home, umask="022")


def test_init_tightens_an_existing_world_readable_workspace(reachable_folder: Path) -> None:
    home = reachable_folder / ".workbench"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    _build(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert _as_user(NOBODY, NOBODY, "ls", str(home)).returncode != 0


def test_group_shared_workspace_lets_the_group_in_and_nobody_else(reachable_folder: Path) -> None:
    home = reachable_folder / ".workbench"
    _build(home, group="users")

    info = home.stat()
    assert info.st_gid == USERS_GID and stat.S_IMODE(info.st_mode) == 0o2770
    events = next((home / "runs").glob("*/events.jsonl"))
    assert stat.S_IMODE(events.stat().st_mode) == 0o660 and events.stat().st_gid == USERS_GID
    outsider = _as_user(NOBODY, NOBODY, "cat", str(home / "catalog.duckdb"))
    assert outsider.returncode != 0 and "Permission denied" in outsider.stderr
    teammate = _as_user(NOBODY, USERS_GID, "cat", str(events))
    assert teammate.returncode == 0 and "secret_metric" in teammate.stdout
    # the choice is remembered: initialising again keeps the group
    _build(home, umask="022")
    assert stat.S_IMODE(home.stat().st_mode) == 0o2770


def test_unknown_group_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([str(Path(sys.executable).parent / "workbench"), "init", str(tmp_path / "ws"),
                           "--group", "no-such-group-xyz"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "No group named 'no-such-group-xyz'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
