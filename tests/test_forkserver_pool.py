"""Idle fork servers do not pile up: bounded (LRU), shared by subsets, idle time configurable,
listed and stopped by `workbench doctor`; forked kernels outlive their server and report real exit codes.

Real server processes, each test in its own private socket folder (TMPDIR pointed at a fresh
folder, XDG_RUNTIME_DIR unset) so neither the user's nor other tests' servers are touched. Preloads
are small stdlib modules: a server starts in about a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from workbench.kernels import client, servers
from workbench.kernels.provisioner import ForkedKernel
from workbench.kernels.readiness import ReadyKernelClient
from workbench.runs.runner import kernel_manager_with_env


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A socket folder of this test's own, in this process and in child processes (the CLI).

    Short (under /tmp, not pytest's deep tmp_path): socket paths are limited to 107 bytes.
    """
    folder = Path(tempfile.mkdtemp(prefix="wbpool-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv(servers.ENV_MAX, "2")
    monkeypatch.delenv(servers.ENV_IDLE, raising=False)
    yield folder
    servers.stop_all()
    shutil.rmtree(folder, ignore_errors=True)


def _pid(modules: list[str]) -> int:
    return int(client.request(client.ensure_server(modules), {"op": "ping"})["pid"])


def _alive(pid: int) -> bool:
    """A zombie is not alive: it is a stopped server its starter (this process) has not reaped yet."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_dead(pid: int, timeout: float) -> float:
    """Seconds until `pid` is gone; fails after `timeout`."""
    started = time.monotonic()
    while _alive(pid):
        assert time.monotonic() - started < timeout, f"process {pid} still alive after {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def _running_modules() -> set[tuple[str, ...] | None]:
    return {s.modules for s in servers.list_servers()}


def test_at_most_max_servers_run_and_the_least_recently_used_stops_first():
    first, second = _pid(["json"]), _pid(["decimal"])
    assert _pid(["json"]) == first  # used again: "decimal" is now the least recently used
    third = _pid(["fractions"])
    _wait_dead(second, timeout=5)
    assert _alive(first) and _alive(third)
    assert _running_modules() == {("json",), ("fractions",)}


def test_a_server_used_since_the_listing_is_not_stopped_under_its_user():
    first, second = _pid(["json"]), _pid(["decimal"])
    listing = servers.list_servers()
    client.ensure_server(["json"])  # another client picks it (and is about to spawn) after the listing
    stopped = servers.make_room(listing, keep=0)
    assert [s.pid for s in stopped] == [second]
    _wait_dead(second, timeout=5)
    assert _alive(first)


def test_sigterm_stops_a_server_gracefully():
    path = client.ensure_server(["json"])
    pid = _pid(["json"])
    os.kill(pid, signal.SIGTERM)
    assert _wait_dead(pid, timeout=5) < 3  # noticed between requests, within a second
    assert not path.exists()  # it cleaned up after itself: it was not killed


def test_a_subset_preload_reuses_the_superset_server():
    superset = client.ensure_server(["decimal", "json"])
    pid = _pid(["decimal", "json"])
    assert client.ensure_server(["json"]) == superset
    assert _pid(["json"]) == pid
    assert [s.pid for s in servers.list_servers()] == [pid]  # no new server
    assert not client.socket_path(["json"]).exists()


def test_a_superset_request_starts_its_own_server():
    small = _pid(["json"])
    big = _pid(["decimal", "json"])
    assert big != small and _alive(small)


def test_the_idle_setting_makes_a_server_exit_by_itself(monkeypatch):
    monkeypatch.setenv(servers.ENV_IDLE, "1.5")
    path = client.ensure_server(["json"])
    status = client.request(path, {"op": "ping"})
    assert status["idle_timeout"] == 1.5
    for _ in range(3):  # listing it (doctor) does not count as use
        assert [s.pid for s in servers.list_servers()] == [status["pid"]]
        time.sleep(0.3)
    assert _wait_dead(status["pid"], timeout=8) < 8
    assert not path.exists()


def test_settings_come_from_the_environment_then_the_workspace(ws, monkeypatch):
    assert servers.idle_seconds() == 600 and servers.max_servers() == 2
    ws.set_setting("fork_server_idle", 30)
    ws.set_setting("fork_server_max", 5)
    monkeypatch.delenv(servers.ENV_MAX)
    assert servers.idle_seconds() == 30 and servers.max_servers() == 5
    monkeypatch.setenv(servers.ENV_MAX, "3")
    assert servers.max_servers() == 3
    monkeypatch.setenv(servers.ENV_IDLE, "soon")
    with pytest.raises(servers.ForkServerSettingError, match=r"\$WORKBENCH_FORKSERVER_IDLE must be") as bad:
        servers.idle_seconds()
    assert bad.value.hint and "default of 600" in bad.value.hint
    with pytest.raises(client.ForkServerUnavailable):  # so runs fall back to a normal kernel, with the warning
        client.ensure_server(["json"])


async def _execute(kernel: ReadyKernelClient, code: str) -> str:
    outputs: list[str] = []

    def keep(msg) -> None:
        if msg["msg_type"] == "stream":
            outputs.append(msg["content"]["text"])

    reply = await kernel.execute_interactive(code, output_hook=keep, timeout=60)
    assert reply["content"]["status"] == "ok"
    return "".join(outputs)


async def _with_forked_kernel(tmp_path: Path, body) -> ForkedKernel:
    """Start a fork-server kernel as runs do, run `body(manager, client)`, shut it down; returns its process."""
    manager = kernel_manager_with_env({}, tmp_path / "kernel.log", ["json"])(kernel_name="python3")
    await manager.start_kernel()
    process = manager.provisioner.process
    assert isinstance(process, ForkedKernel)
    kernel = manager.client()
    kernel.start_channels()
    try:
        await kernel.wait_for_ready(timeout=60)
        await body(manager, kernel)
    finally:
        kernel.stop_channels()
        await manager.shutdown_kernel(now=True)
    return process


def test_a_forked_kernel_survives_its_servers_stop_and_still_runs_code(tmp_path):
    async def body(manager, kernel) -> None:
        server_pid = _pid(["json"])
        assert await _execute(kernel, "print(6 * 7)") == "42\n"
        client.stop_server(["json"])
        _wait_dead(server_pid, timeout=5)
        assert await manager.is_alive()
        assert await _execute(kernel, "import os; print(os.getpid() > 0, 6 * 7)") == "True 42\n"

    process = asyncio.run(_with_forked_kernel(tmp_path, body))
    assert process.returncode == 0  # its server, which reaped it, is gone: unknown reads 0


@pytest.mark.parametrize(
    ("code", "expected"), [("import os; os._exit(3)", 3), ("import os; os.kill(os.getpid(), 9)", -9)]
)
def test_a_forked_kernel_reports_its_real_exit_code(tmp_path, code, expected):
    async def body(manager, kernel) -> None:
        kernel.execute(code)
        deadline = time.monotonic() + 10
        while await manager.is_alive():
            assert time.monotonic() < deadline, "the kernel did not exit"
            await asyncio.sleep(0.02)

    process = asyncio.run(_with_forked_kernel(tmp_path, body))
    assert process.returncode == expected


@pytest.mark.slow
def test_doctor_lists_the_fork_servers_and_stops_them(cli):
    pids = {_pid(["json"]), _pid(["decimal"])}

    report = cli("doctor")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "fork servers: 2 running" in report.stdout and "(at most 2; each exits after 10 min unused)" in report.stdout
    assert all(str(pid) in report.stdout for pid in pids) and "decimal" in report.stdout and " MB" in report.stdout

    entry = json.loads(cli("doctor", "--json").stdout)[-1]
    assert entry["check"] == "fork servers" and entry["severity"] == "ok"
    assert {s["pid"] for s in entry["servers"]} == pids
    assert all(s["rss"] > 0 and 0 <= s["idle_for"] < 120 for s in entry["servers"])

    stopped = cli("doctor", "--stop-fork-servers")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert all(f"stopped fork server {pid}" in stopped.stdout for pid in pids)
    for pid in pids:
        _wait_dead(pid, timeout=5)
    assert servers.list_servers() == []
