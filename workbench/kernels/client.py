"""Finding, starting and talking to a fork server.

One server per (Python executable, preload set), shared by every runner process of the machine
through a Unix socket named after that key in a per-user temp folder, so `workbench run`
invocations, sweep workers and the JupyterLab server all reuse warm servers. Starting one is
race-free: concurrent starters each launch a server, the socket is replaced atomically, and the
losers exit when they see their socket replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workbench.kernels.protocol import read_message, send_message

START_TIMEOUT = 60.0


class ForkServerUnavailable(RuntimeError):
    """The fork server could not be reached or started; callers fall back to a normal kernel."""


def socket_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / f"workbench-forkserver-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def socket_path(modules: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([sys.executable, sorted(set(modules))]).encode()).hexdigest()[:16]
    return socket_dir() / f"{key}.sock"


def request(path: Path, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(path))
            send_message(conn, payload)
            reply = read_message(conn)
    except OSError as exc:
        raise ForkServerUnavailable(f"fork server at {path} unreachable: {exc}") from exc
    if reply is None:
        raise ForkServerUnavailable(f"fork server at {path} closed the connection")
    if "error" in reply:
        raise ForkServerUnavailable(reply["error"])
    return reply


def _server_env() -> dict[str, str]:
    """The server imports libraries with their default thread pools; kernels get limits after fork."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env.pop(var, None)
    for var in ("WORKBENCH_RUN_ID", "WORKBENCH_SNAPSHOT_PINS"):
        env.pop(var, None)
    return env


def ensure_server(modules: list[str]) -> Path:
    """The socket of a running server with `modules` preloaded, starting one if needed."""
    path = socket_path(modules)
    try:
        request(path, {"op": "ping"}, timeout=5)
        return path
    except ForkServerUnavailable:
        pass
    log = open(socket_dir() / f"{path.stem}.log", "ab")  # noqa: SIM115  (inherited by the server)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "workbench.kernels.forkserver", str(path), ",".join(modules)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=_server_env(),
            cwd=socket_dir(),
        )  # fmt: skip
    finally:
        log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            request(path, {"op": "ping"}, timeout=5)
            return path
        except ForkServerUnavailable:
            time.sleep(0.05)
    raise ForkServerUnavailable(f"fork server did not start within {START_TIMEOUT:.0f} s (see {path.stem}.log)")


def spawn(path: Path, argv: list[str], env: dict[str, str], cwd: str | None, log: str | None) -> int:
    """Fork a kernel; returns its pid."""
    reply = request(path, {"op": "spawn", "argv": argv, "env": env, "cwd": cwd, "log": log,
                           "parent_pid": os.getpid()})  # fmt: skip
    return int(reply["pid"])


def stop_server(modules: list[str]) -> None:
    """Make the server for `modules` exit (its socket disappears; it notices within seconds)."""
    path = socket_path(modules)
    try:
        pid = request(path, {"op": "ping"}, timeout=5)["pid"]
    except ForkServerUnavailable:
        return
    path.unlink(missing_ok=True)
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        pass
