"""Running the team server: `workbench server`.

The process holds the workspace's catalog open for its whole life (`catalog.hold`: per-thread
cursors, concurrent reads, serialised writes) and serves the app with uvicorn, in the foreground
until Ctrl+C or SIGTERM, then lets the catalog go. It binds 127.0.0.1 unless told otherwise; with
`certfile` and `keyfile` it speaks HTTPS itself, else put it behind a reverse proxy that does.
While it runs, other processes cannot open the catalog (DuckDB allows one process per file): they
are told at once that this server holds it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError
from workbench.workspace import Workspace

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8686
#: Seconds requests still running at shutdown (long-polls, event streams) get before they are cut.
SHUTDOWN_GRACE_S = 3


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

    return Server


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
        if on_ready:
            on_ready(config.url, protected)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit normally so the catalog is released.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        server.run()
    finally:
        release(ws)
