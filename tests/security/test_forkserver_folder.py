"""Another local user must not get code execution or our secrets through the fork-server folder.

Each test performs the real attack as root against ourselves, with the "attacker" being uid
`nobody`: a folder planted with a `workbench` package, a folder of ours opened up to everyone, a
socket served by another uid, a symlinked server log. Every test points the temp dir at its own
folder (and unsets XDG_RUNTIME_DIR) so it never touches the machine's real fork-server folder.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import workbench as wb
from workbench.kernels import client
from workbench.kernels.preload import preload_list
from workbench.runs.params import read_notebook

NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not hasattr(socket, "SO_PEERCRED"),
    reason="needs root (to act as another user), setpriv and SO_PEERCRED",
)

NOTEBOOK_CELL = 'import workbench as wb\nwb.log_metric("ok", 1.0)'

#: the "attacker's" server: inherits a socket root bound in our private folder, calls listen() as
#: nobody (so SO_PEERCRED names nobody) and prints everything each client sends it
IMPOSTOR = """
import json, socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
listener.listen(8)
print("listening", flush=True)
while True:
    conn, _ = listener.accept()
    conn.settimeout(5)
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except OSError:
        pass
    conn.close()
    print(json.dumps(data.decode(errors="replace")), flush=True)
"""


@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A temp dir of our own for this test, in this process and in child processes.

    Short (under /tmp, not pytest's deep tmp_path): socket paths are limited to 107 bytes. Asks
    for tmp_path first so pytest does not create its base temp dir inside this one.
    """
    folder = Path(tempfile.mkdtemp(prefix="wbsec-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _chown_tree(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)


@pytest.mark.slow
def test_a_folder_planted_by_another_user_is_refused_and_its_package_never_imported(
    ws, cli, notebook, private_tmp, tmp_path
):
    folder = client.socket_dir()  # where the victim's fork server would live
    marker = tmp_path / "pwned"
    package = folder / "workbench"
    package.mkdir()
    (package / "__init__.py").write_text(f"import os\nopen({str(marker)!r}, 'w').write(str(os.getuid()))\n")
    _chown_tree(folder, NOBODY)
    folder.chmod(0o777)
    nb = notebook("victim", None, NOTEBOOK_CELL)

    started = time.monotonic()
    proc = cli("run", str(nb), "--fast")
    elapsed = time.monotonic() - started

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished" in proc.stdout
    assert not marker.exists(), f"the planted package ran as uid {marker.read_text()}"
    assert str(folder) in proc.stderr and f"owned by uid {NOBODY}" in proc.stderr, proc.stderr
    assert "starting a normal kernel" in proc.stderr
    assert elapsed < 45, f"the fallback took {elapsed:.0f} s"


def test_a_folder_of_ours_open_to_everyone_is_refused(private_tmp):
    folder = client.socket_dir()
    folder.chmod(0o777)
    with pytest.raises(client.ForkServerUnavailable, match=r"mode is 0777, not 0700") as refused:
        client.socket_dir()
    assert str(folder) in str(refused.value) and "XDG_RUNTIME_DIR" in str(refused.value)
    with pytest.raises(client.ForkServerUnavailable):
        client.ensure_server([])


@pytest.mark.slow
def test_a_refused_folder_still_runs_the_notebook_on_a_normal_kernel_with_a_warning(ws, notebook, private_tmp, caplog):
    client.socket_dir().chmod(0o777)
    nb = notebook("victim", None, NOTEBOOK_CELL)
    with caplog.at_level(logging.WARNING, logger="workbench.kernels"):
        run = wb.run(nb, fast=True)
    assert run.status == "finished", run.error
    assert "mode is 0777" in caplog.text and "starting a normal kernel" in caplog.text


def test_a_symlinked_folder_is_refused_not_followed(private_tmp, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (private_tmp / f"workbench-forkserver-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(client.ForkServerUnavailable, match="symlink"):
        client.socket_dir()


def test_a_private_runtime_dir_is_preferred_and_a_shared_one_ignored(private_tmp, tmp_path, monkeypatch):
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert client.socket_dir() == runtime / "workbench-forkserver"
    runtime.chmod(0o755)
    assert client.socket_dir() == private_tmp / f"workbench-forkserver-{os.getuid()}"


def test_the_folder_is_private_even_under_a_permissive_umask(private_tmp):
    old = os.umask(0o000)
    try:
        folder = client.socket_dir()
    finally:
        os.umask(old)
    mode = os.lstat(folder).st_mode
    assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700


def _start_impostor(path: Path) -> subprocess.Popen[str]:
    """A server run by nobody, listening at `path` inside our private folder."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # as root: nobody cannot enter our folder, but can listen() on this socket
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    try:
        child = subprocess.Popen([*SETPRIV, python, "-I", "-c", IMPOSTOR, str(listener.fileno())],
                                 pass_fds=[listener.fileno()], stdout=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        listener.close()
    ready, _, _ = select.select([child.stdout], [], [], 10)
    assert ready and child.stdout.readline().strip() == "listening"
    return child


def _received(child: subprocess.Popen[str]) -> list[str]:
    child.kill()
    out, _ = child.communicate(timeout=10)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.slow
def test_a_socket_served_by_another_user_gets_no_request_and_is_replaced(
    ws, notebook, private_tmp, monkeypatch, caplog
):
    monkeypatch.setenv("WORKBENCH_TEST_SECRET", "s3cret-token")
    nb = notebook("victim", None, NOTEBOOK_CELL)
    modules = preload_list(read_notebook(nb))
    path = client.socket_path(modules)
    impostor = _start_impostor(path)
    try:
        with pytest.raises(client.ForkServerImpostor, match=f"served by uid {NOBODY}"):
            client.spawn(path, ["-f", "x.json"], dict(os.environ), str(nb.parent), None)
        with caplog.at_level(logging.WARNING, logger="workbench.kernels"):
            run = wb.run(nb, fast=True)
        assert run.status == "finished", run.error
        assert f"served by uid {NOBODY}" in caplog.text and "replacing it" in caplog.text
        assert "starting a normal kernel" not in caplog.text  # our own server took the socket over
        ours = client.request(path, {"op": "ping"})["pid"]
        assert os.stat(f"/proc/{ours}").st_uid == os.getuid()
    finally:
        received = _received(impostor)
        client.stop_server(modules)
    assert received, "the client never even connected: the attack was not exercised"
    assert received == [""] * len(received), f"the impostor received requests: {received}"


def test_a_symlinked_server_log_is_not_followed(private_tmp, tmp_path):
    path = client.socket_path(["json"])
    target = tmp_path / "victims_file"
    path.with_suffix(".log").symlink_to(target)
    with pytest.raises(client.ForkServerUnavailable, match="symlink"):
        client.ensure_server(["json"])
    assert not target.exists()
    assert not path.exists()  # no server was started


@pytest.mark.slow
def test_a_fast_kernel_gets_the_cwd_and_sys_path_of_a_normal_kernel_and_nothing_of_the_server(
    ws, notebook, private_tmp, tmp_path
):
    nb = notebook("paths", None, 'import json, os, sys, workbench as wb\nwb.log_param("path", json.dumps(sys.path))\n'
                                 'wb.log_param("cwd", os.getcwd())')  # fmt: skip
    fast, normal = wb.run(nb, fast=True), wb.run(nb, fast=False)
    try:
        assert fast.status == normal.status == "finished"
        assert fast.params["cwd"] == normal.params["cwd"] == str(tmp_path)
        fast_path, normal_path = (json.loads(r.params["path"]) for r in (fast, normal))
        assert fast_path == normal_path and "" in fast_path  # the notebook's folder, as the cwd
        assert not any(entry.startswith(str(private_tmp)) or entry == "/" for entry in fast_path)
    finally:
        client.stop_server(preload_list(read_notebook(nb)))
