"""Running the team server: `workbench server`.

The process holds the workspace's catalog open for its whole life (`catalog.hold`: per-thread
cursors, concurrent reads, serialised writes) and serves the app with uvicorn, in the foreground
until Ctrl+C or SIGTERM, then lets the catalog go. It binds 127.0.0.1 unless told otherwise; with
`certfile` and `keyfile` it speaks HTTPS itself, else put it behind a reverse proxy that does.
While it runs, other processes cannot open the catalog (DuckDB allows one process per file): they
are told at once that this server holds it. Its reads never index runs: each chunk a client sends
is indexed before it is acknowledged, and a thread of the server indexes anything else pending
(`indexing_in_background`), so a GET /runs does not wait for the writers.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError
from workbench.workspace import Workspace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686
#: Seconds requests still running at shutdown (long-polls, event streams) get before they are cut.
SHUTDOWN_GRACE_S = 3
#: Seconds between the server's own passes over the workspace's pending runs (`indexing_in_background`).
INDEX_INTERVAL_S = 1.0
#: Threads that look up request tokens (the event loop's default executor); anyio's number for route handlers.
AUTH_THREADS = 40
#: How long a thread may keep the GIL while another waits for it (Python's default is 5 ms). A read
#: lets go of the GIL for each DuckDB call and each file `stat`, some twenty times for one GET /runs,
#: and each time waited for it behind the threads folding received chunks: up to 5 ms a time.
SWITCH_INTERVAL_S = 0.001

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerConfig:
    """Where and how the team server listens, checked (`check`) before anything starts."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    certfile: Path | None = None
    keyfile: Path | None = None
    protect: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def check(self) -> ServerConfig:
        if not 0 < self.port < 65536:
            raise ValidationError(f"--port must be from 1 to 65535, not {self.port}.")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValidationError("Give --certfile and --keyfile together (the certificate and its private key).")
        for option, path in (("--certfile", self.certfile), ("--keyfile", self.keyfile)):
            if path is not None and not path.is_file():
                raise ValidationError(f"{option} {path}: no such file.")
            if path is not None and not os.access(path, os.R_OK):
                raise ValidationError(f"{option} {path}: not readable by this user.")
        return self


def _uvicorn_server() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, which first ends the change feed's waiting requests when told to stop."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            from workbench.server.routes_changes import stop_waiting

            stop_waiting(self.config.app)
            super().handle_exit(sig, frame)

        async def serve(self, sockets: Any = None) -> None:
            import asyncio
            from concurrent.futures import ThreadPoolExecutor

            # Every request's token is looked up in a thread (`auth._user`, `asyncio.to_thread`): asyncio's
            # default of min(32, cores + 4) threads queued a reader's lookup behind those of every chunk
            # arriving at once. As many as anyio gives the route handlers themselves.
            asyncio.get_running_loop().set_default_executor(
                ThreadPoolExecutor(AUTH_THREADS, thread_name_prefix="workbench-auth")
            )
            await super().serve(sockets)

    return Server


def _index_pending(ws: Workspace, last_error: list[str]) -> None:
    """One pass over the pending runs; a failure is logged (once while it repeats) and the next pass tries again."""
    from workbench.errors import StoreBusyError
    from workbench.runs.ingest import ingest_pending

    try:
        ingest_pending(ws)
    except StoreBusyError:
        pass  # as `index_runs`: the runs stay pending for the next pass
    except Exception as exc:  # the thread must outlive one bad run folder; readers would have raised it
        if last_error[-1:] != [str(exc)]:
            log.exception("indexing pending runs failed (retried every %.0f s)", INDEX_INTERVAL_S)
        last_error[:] = [str(exc)]
    else:
        last_error.clear()


@contextmanager
def indexing_in_background(ws: Workspace, interval_s: float = INDEX_INTERVAL_S) -> Iterator[None]:
    """While the block runs, a thread indexes `ws`'s pending runs every `interval_s` (reaping dead ones),
    and this process's readers no longer index before each query (`ingest.BACKGROUND_INDEXED`).

    Why: a reader that indexes writes the catalog, so under many logging clients every GET /runs
    waited behind the chunks being indexed for the write lock (p99 200 ms with 32 writers). Runs
    from clients are indexed as their chunks arrive, each before it is acknowledged, so a client that
    has synced is seen by the next read as before; this pass catches only what did not come that way
    (a run written on the server's machine, a chunk whose indexing failed, markers a crash left, runs
    whose client went silent), at most `interval_s` late. The first pass runs before the block does.
    """
    from workbench.runs.ingest import BACKGROUND_INDEXED

    errors: list[str] = []
    _index_pending(ws, errors)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            _index_pending(ws, errors)

    key = str(ws.catalog_path)
    BACKGROUND_INDEXED.add(key)
    thread = threading.Thread(target=loop, name="workbench-indexer", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)  # before the catalog is let go: a pass may be mid-transaction
        BACKGROUND_INDEXED.discard(key)


def serve(ws: Workspace, config: ServerConfig, on_ready: Callable[[str, Sequence[str]], None] | None = None) -> None:
    """Serve `ws` until interrupted (blocking). `on_ready(url, protected_aliases)` is called once the
    catalog is held, just before listening."""
    import uvicorn

    from workbench.catalog.connection import hold, release
    from workbench.server.app import create_app
    from workbench.server.roles import protected_aliases
    from workbench.serving.server import check_port_free
    from workbench.workspace import use_workspace

    config.check()
    protected = protected_aliases(ws, config.protect)
    check_port_free(config.host, config.port)
    hold(ws, holder=f"the workbench server at {config.url}")
    try:
        use_workspace(ws)
        app = create_app(ws, protected)
        options = {"ssl_certfile": str(config.certfile), "ssl_keyfile": str(config.keyfile)} if config.tls else {}
        # Told to stop, the change feed ends its long-polls and streams; what still runs is cut after the grace.
        server = _uvicorn_server()(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning",
                                                   access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                                                   **options))  # fmt: skip
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit normally so the catalog is released.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        with indexing_in_background(ws):
            if on_ready:
                on_ready(config.url, protected)
            server.run()
    finally:
        release(ws)
