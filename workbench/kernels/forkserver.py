"""A fork server for Jupyter kernels: imports paid once, a fresh process per run.

`python -m workbench.kernels.forkserver SOCKET MODULES` imports ipykernel and the preload
modules (e.g. pandas, sklearn), then waits on a Unix socket. For each request it forks: the
child becomes a brand-new kernel process (own session, environment, working directory, stdout,
reseeded random state, BLAS/OpenMP thread budget) and runs `IPKernelApp` on the connection file
it was given, so runs share nothing but the already-imported, never-executed module code.

Fork safety: the server starts no threads and creates no zmq context before forking (checked:
a module whose import starts a thread is reported as unsafe and the server refuses to fork from
a threaded state); a module that fails to import is skipped with a debug log.

Lifetime: the server exits after `idle` seconds without a spawn (the client passes the configured
value, default `IDLE_SECONDS`), when its socket file disappears or is replaced, on an `exit`
request, or on SIGTERM. The last two are graceful: they are handled between requests, so a fork in
progress always completes and its reply is sent. Kernels already forked live on (they are in their
own sessions); only their exit codes are lost, since the server was the one reaping them.

Requests (one JSON object per connection, see `protocol`): `ping` (its status: pid, modules,
last use...; `touch` marks it used, as a client about to spawn does), `spawn`, `status` (how a
forked kernel ended) and `exit` (with `if_last_used`: only if nobody used it since the caller
looked, so a server chosen by another client a moment ago is not stopped under it).

Security: the client starts it from `/` with `-P`, so nothing from a folder someone else could
write is importable by it (see `client`); it only serves clients of its own uid (SO_PEERCRED),
and each kernel gets the notebook's folder as cwd and the sys.path of a normal kernel.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from workbench.kernels.private_api import run_exit_functions, stop_control_thread
from workbench.kernels.protocol import peer_uid, read_message, send_message

#: Default idle time before a server exits; the client passes the configured one (`servers.idle_seconds`).
IDLE_SECONDS = 600.0
#: What starting a kernel imports (measured: the debugger alone costs ~0.2 s per kernel otherwise).
KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "ipykernel.comm",
    "IPython.core.completer",
)
log = logging.getLogger("workbench.forkserver")

_exit_codes: dict[int, int] = {}
#: kernels forked and not reaped yet: their exit code is still to come
_running: set[int] = set()


def _reap(*_args: Any) -> None:
    """SIGCHLD: collect finished kernels so they never linger as zombies."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _exit_codes[pid] = os.waitstatus_to_exitcode(status)
        _running.discard(pid)
        if len(_exit_codes) > 1000:
            _exit_codes.pop(next(iter(_exit_codes)))


def preload(modules: list[str]) -> tuple[list[str], list[str]]:
    """Import what kernels will need; returns (loaded, skipped)."""
    loaded, skipped = [], []
    for name in [*KERNEL_MODULES, *modules]:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # any import error only costs speed, never correctness
            log.debug("cannot preload %s: %s", name, exc)
            skipped.append(name)
    return loaded, skipped


def _child(request: dict[str, Any]) -> None:
    """In the forked process: become a fresh kernel. Never returns."""
    code = 1
    try:
        os.setsid()
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        target = request.get("log") or os.devnull
        out = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        cwd = request.get("cwd") or os.getcwd()
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(request.get("env") or {})
        _kernel_sys_path()
        _fresh_random_state()
        _apply_thread_budget()
        _exit_with_parent(request.get("parent_pid"))
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize(list(request["argv"]))
        app.start()
        stop_control_thread(app)  # before ipykernel's exit-time close(): see private_api
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            run_exit_functions()  # os._exit skips atexit: e.g. workbench.tracking's final flush
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _kernel_sys_path() -> None:
    """Give the kernel a normal kernel's sys.path: nothing of the server's, and '' (the cwd) before site-packages.

    `python -m ipykernel_launcher` drops its own sys.path[0] and IPython then inserts '' before the
    first site-packages, but IPython skips that under `-P`, which the server runs with (the flag is
    inherited by the fork), so it is done here. Without `-P` (Python < 3.11) sys.path[0] is the
    server's cwd, `/`: dropped like the launcher drops it.
    """
    if not sys.flags.safe_path and sys.path:
        del sys.path[0]
    if "" in sys.path:
        return
    site = [i for i, entry in enumerate(sys.path) if os.path.basename(entry) in ("site-packages", "dist-packages")]
    sys.path.insert(site[0] if site else 0, "")


def _fresh_random_state() -> None:
    """Forked children would otherwise share the server's random state."""
    import random

    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))


def _apply_thread_budget() -> None:
    """Libraries read OMP_NUM_THREADS at import (in the server): set the limit at runtime."""
    threads = os.environ.get("OMP_NUM_THREADS")
    if not threads or not threads.isdigit():
        return
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=int(threads))
    except Exception as exc:  # threadpoolctl missing or a library it cannot control
        log.debug("thread budget not applied: %s", exc)


def _exit_with_parent(parent_pid: int | None) -> None:
    """The kernel's real parent is the runner, not this server: exit when the runner is gone."""
    if not parent_pid:
        return

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="workbench-parent-watch", daemon=True).start()


class _Server:
    """What the server knows about itself: reported by `ping`, used for its idle and exit decisions."""

    def __init__(self, modules: list[str], loaded: list[str], skipped: list[str], idle: float) -> None:
        self.modules = sorted(set(modules))
        self.loaded, self.skipped, self.idle = loaded, skipped, idle
        self.started = self.last_used = time.time()  # wall clock: compared across servers (LRU)
        self._used_at = time.monotonic()  # for its own idle time: immune to clock changes
        self.stopping = False

    def mark_used(self) -> None:
        self.last_used, self._used_at = time.time(), time.monotonic()

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "loaded": self.loaded, "skipped": self.skipped, "modules": self.modules,
                "executable": sys.executable, "started": self.started, "last_used": self.last_used,
                "idle_timeout": self.idle}  # fmt: skip

    def idle_expired(self) -> bool:
        return time.monotonic() - self._used_at > self.idle

    def request_stop(self, *_args: Any) -> None:
        """SIGTERM: only a flag, so a fork in progress completes; the loop exits within `_poll_interval`."""
        self.stopping = True


def _handle(conn: socket.socket, listener: socket.socket, server: _Server) -> None:
    client_uid = peer_uid(conn)
    if client_uid is not None and client_uid != os.getuid():
        log.warning("refusing a request from uid %s (the socket's folder should not let it in)", client_uid)
        return  # a spawn would run its code as us
    request = read_message(conn)
    if request is None:
        return
    op = request.get("op")
    if op == "ping":
        if request.get("touch"):
            server.mark_used()
        reply: dict[str, Any] = server.status()
    elif op == "status":
        pid = int(request["pid"])
        reply = {"exit_code": _exit_codes.get(pid), "running": pid in _running}
    elif op == "spawn":
        reply = _spawn(conn, listener, server, request)
    elif op == "exit":
        reply = _exit(server, request)
    else:
        reply = {"error": f"unknown op {op!r}"}
    send_message(conn, reply)


def _spawn(conn: socket.socket, listener: socket.socket, server: _Server, request: dict[str, Any]) -> dict[str, Any]:
    if threading.active_count() > 1:
        return {"error": "the fork server has threads; refusing to fork"}
    server.mark_used()
    pid = os.fork()
    if pid == 0:
        conn.close()
        listener.close()
        _child(request)
    _running.add(pid)
    if pid in _exit_codes:  # it ended (and was reaped) before we got here
        _running.discard(pid)
    return {"pid": pid}


def _exit(server: _Server, request: dict[str, Any]) -> dict[str, Any]:
    """Stop after this reply, unless used since the caller's look (`if_last_used`): it was chosen meanwhile."""
    expected = request.get("if_last_used")
    if expected is not None and expected != server.last_used:
        return {"stopping": False, "last_used": server.last_used}
    server.stopping = True
    return {"stopping": True}


def _still_ours(path: str, identity: int) -> bool:
    """False once the socket file was removed or replaced by a newer server's."""
    try:
        return os.stat(path).st_ino == identity
    except FileNotFoundError:
        return False


def _poll_interval(idle: float) -> float:
    """How often the loop looks at its socket, idle time and stop flag when no request comes."""
    return max(0.05, min(1.0, idle / 4))


def serve(path: str, modules: list[str], idle: float = IDLE_SECONDS) -> None:
    logging.basicConfig(level=logging.WARNING)
    loaded, skipped = preload(modules)
    # Python's advice for fork servers: freeze what is preloaded, so the kernels' garbage
    # collections skip it (IPython runs a full gc.collect() when a kernel exits: ~0.2 s per run
    # with pandas and scikit-learn preloaded, measured) and its pages stay shared.
    gc.collect()
    gc.freeze()
    if threading.active_count() > 1:
        log.warning("preloading started threads (%s); forking is unsafe, exiting", threading.enumerate())
        return
    server = _Server(modules, loaded, skipped, idle)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, server.request_stop)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    listener.bind(tmp)
    listener.listen(64)
    os.replace(tmp, path)  # atomically visible: clients never see a half-ready socket
    identity = os.stat(path).st_ino
    listener.settimeout(_poll_interval(idle))
    try:
        while not server.stopping and not server.idle_expired() and _still_ours(path, identity):
            try:
                conn, _ = listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            with conn:
                conn.settimeout(30)
                try:
                    _handle(conn, listener, server)
                except (OSError, ValueError) as exc:
                    log.debug("bad request: %s", exc)
    finally:
        if _still_ours(path, identity):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def main(argv: list[str]) -> None:
    """`SOCKET [MODULES [IDLE_SECONDS]]`: MODULES comma-separated."""
    modules = [m for m in argv[1].split(",") if m] if len(argv) > 1 else []
    serve(argv[0], modules, float(argv[2]) if len(argv) > 2 else IDLE_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1:])
