"""Running a model server: `workbench serve NAME[@alias|@version]` and `wb.serve(...)`.

Both build the server with `build_server` and differ only in where it listens:
`serve_forever` blocks in the foreground until interrupted (the CLI, `workbench guard`), while
`serve_in_background` (public as `wb.serve`) runs it in a thread of this process (a notebook)
through `serving_in_thread`. The names say which one blocks, so `wb.serve` is never confused
with the blocking call.

Binds to 127.0.0.1 unless told otherwise. While it runs, a status file in
`serving/<pid>.json` says what it serves where (the JupyterLab Models section shows it); start
and stop are audited. A token (`WORKBENCH_SERVE_TOKEN`, `--token-file`, or `--token`, which every
local user can read in the process list) protects every endpoint except /health and /metrics.

`shadow=V` (`--shadow V`) loads version V like a canary, but it answers nobody: it predicts a copy
of every request off the response path and its predictions go to the prediction log as shadow
lines, so the two versions can be compared on the same live inputs (`workbench.quality`).

The models come from a `sources.ModelSource` chosen once (`sources.model_source`): the local
workspace, or a team server when one is configured (`WORKBENCH_URL`, `workbench login`), whose
models are pulled and followed through its change feed and to which the prediction log is shipped.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from workbench.errors import ValidationError, WorkbenchError
from workbench.permissions import make_dir, protect
from workbench.serving.app import Canary, create_app
from workbench.serving.models import ModelSlot, Shadow
from workbench.serving.predlog import PredictionLogger
from workbench.serving.sources import Follower, LocalSource, ModelSource, model_source
from workbench.workspace import Workspace, current_workspace

log = logging.getLogger("workbench.serving")

ENV_TOKEN = "WORKBENCH_SERVE_TOKEN"
TOKEN_ARGUMENT_WARNING = (
    "Warning: --token is visible to every local user in the process list (ps). "
    f"Set {ENV_TOKEN} or use --token-file PATH (a file only you can read, mode 0600) instead."
)


def read_token_file(path: str | Path) -> str:
    """The token in `path`, refused (like ssh does a private key) unless only we can read it:
    a token others can read or replace protects nothing."""
    path = Path(path).expanduser()
    try:
        with path.open("rb") as file:  # one open file for the check and the read: no swap in between
            info = os.fstat(file.fileno())
            token = file.read(64 * 1024).decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValidationError(f"Cannot read the token file {path}: {reason}.") from exc
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ValidationError(f"The token file {path} is not owned by you.", f"Create your own, mode 0600: {path}.")
    if info.st_mode & 0o077:
        raise ValidationError(f"Permissions {info.st_mode & 0o777:04o} for the token file {path} are too open: "
                              "other users can read or change it.", f"Run: chmod 600 {path}")  # fmt: skip
    if not token:
        raise ValidationError(f"The token file {path} is empty.")
    return token


def resolve_token(token: str | None = None, token_file: str | Path | None = None) -> str | None:
    """The serving token: given, or from `token_file`, or from the environment (else none)."""
    if token and token_file:
        raise ValidationError("Give --token or --token-file, not both.")
    if token_file:
        return read_token_file(token_file)
    return token or os.environ.get(ENV_TOKEN) or None


def parse_canary(text: str | None) -> tuple[int, float] | None:
    """`3=0.1` -> (version 3, 10% of requests)."""
    if not text:
        return None
    version, sep, fraction = text.partition("=")
    try:
        result = int(version), float(fraction)
    except ValueError:
        result = None
    if not sep or result is None or not 0 < result[1] < 1:
        raise ValidationError(f"Invalid --canary {text!r}.", "Write VERSION=FRACTION, e.g. --canary 3=0.1.")
    return result


def parse_shadow(version: int | str | None) -> int | None:
    """`--shadow 3` -> 3 (a version number of the served model)."""
    if version is None or version == "":
        return None
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or isinstance(version, bool):
        raise ValidationError(f"Invalid --shadow {version!r}.", "Give a version number of the model, e.g. --shadow 3.")
    return number


def serving_dir(ws: Workspace) -> Path:
    return ws.root / "serving"


@dataclass
class Server:
    """A configured model server (app + its background helpers), not yet listening."""

    ws: Workspace
    ref: str
    host: str
    port: int
    slot: ModelSlot
    app: Any
    watcher: Follower
    logger: PredictionLogger | None
    canary: tuple[int, float] | None = None  # (version, share of requests), for the status file
    shipper: Follower | None = None  # sends the prediction log elsewhere (a team server)
    shadow: Shadow | None = None  # a version predicting copies of the requests, off the response path

    @property
    def source(self) -> ModelSource:
        return self.slot.source

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def build_server(
    ref: str, *, host: str = "127.0.0.1", port: int = 8000, canary: str | None = None, token: str | None = None,
    log_predictions: bool = True, docs: bool = False, ws: Workspace | None = None,
    source: ModelSource | None = None, shadow: int | str | None = None, log_proba: bool = True,
) -> Server:  # fmt: skip
    """Load the model (and canary, and shadow) and build the app; errors here are the user's (bad ref...).
    Without `token`, WORKBENCH_SERVE_TOKEN is used if set; `docs` serves /docs and /openapi.json.
    The models come from `source`, else the workspace `ws`, else `sources.model_source()`.
    `log_proba`: a classifier's logged predictions carry its probabilities (live log loss needs
    them), computed by the prediction log's writer, off the response path."""
    source = source or (LocalSource(ws) if ws is not None else model_source(current_workspace))
    shadow_version = parse_shadow(shadow)
    if shadow_version is not None and not log_predictions:
        raise ValidationError("--shadow needs the prediction log: its predictions are only written there.",
                              "Leave out --no-log (log_predictions=False).")  # fmt: skip
    slot = ModelSlot(source, ref)
    canary_spec = parse_canary(canary)
    canary_model = None
    if canary_spec:
        canary_model = Canary(source.load(f"{slot.parsed.name}@{canary_spec[0]}"), canary_spec[1])
    logger = PredictionLogger(source.workspace, slot.parsed.name) if log_predictions else None
    shadow_worker = None
    if logger is not None and shadow_version is not None:
        shadow_worker = Shadow(source.load(f"{slot.parsed.name}@{shadow_version}"), logger, log_proba)
    shipper = source.shipper(slot.parsed.name) if log_predictions else None
    app = create_app(slot, canary=canary_model, token=resolve_token(token), logger=logger, docs=docs,
                     shadow=shadow_worker, log_proba=log_proba)  # fmt: skip
    return Server(source.workspace, ref, host, port, slot, app, source.follower(slot), logger, canary_spec, shipper,
                  shadow_worker)  # fmt: skip


@contextmanager
def _lifecycle(server: Server) -> Iterator[None]:
    """Background helpers, status file and audit entries around the time the server listens."""
    _audit(server, "serving.started", required=True)  # no unaudited serving: before anything starts
    server.watcher.start()
    if server.logger:
        server.logger.start()
    if server.shadow:
        server.shadow.start()
    if server.shipper:
        server.shipper.start()
    folder = make_dir(serving_dir(server.ws))
    status = folder / f"{os.getpid()}-{server.port}.json"
    status.write_text(json.dumps(_status_info(server)))
    protect(status)
    try:
        yield
    finally:
        server.watcher.stop()
        if server.shadow:
            server.shadow.stop()  # before the logger's last flush: its last lines are written too
        if server.logger:
            server.logger.stop()
        if server.shipper:
            server.shipper.stop()  # after the logger's last flush: sends what is left
        status.unlink(missing_ok=True)
        _audit(server, "serving.stopped", required=False)


def _status_info(server: Server) -> dict[str, Any]:
    """The status file: what is served (model, alias, version, canary) where, by which process, since when."""
    slot = server.slot
    alias = slot.parsed.alias or ("latest" if slot.follows_alias else None)
    canary = {"version": server.canary[0], "fraction": server.canary[1]} if server.canary else None
    return {"ref": server.ref, "model": slot.parsed.name, "alias": alias, "version": slot.current.version.version,
            "canary": canary, "shadow": server.shadow.version if server.shadow else None, "url": server.url,
            "pid": os.getpid(), "host": socket.gethostname(),
            "started_at": datetime.now(timezone.utc).isoformat()}  # fmt: skip


def _served_version(ws: Workspace, info: dict[str, Any]) -> Any:
    """The version a server following an alias serves now: the one the registry's alias file names,
    which its watcher swaps in within a fraction of a second (the status file holds the first one)."""
    from workbench.models.registry import ALIAS_FILE, model_dir

    alias, model = info.get("alias"), info.get("model")
    if not alias or not model:
        return info.get("version")
    try:
        data = json.loads((model_dir(ws, model) / ALIAS_FILE).read_text())
    except (OSError, ValueError, WorkbenchError):  # no alias file yet, or a damaged status file
        return info.get("version")
    current = data.get("latest") if alias == "latest" else data.get("aliases", {}).get(alias)
    return current or info.get("version")


def _audit(server: Server, action: str, *, required: bool) -> None:
    """Every start and stop of a model server is in the audit log.

    A start that cannot be audited (a catalog that stays busy, a full disk) does not happen: the
    error says why. A stop that cannot be audited is reported on stderr, since the server is
    stopping anyway and the caller may be in the middle of shutting down.
    """
    try:
        server.source.record(action, f"model:{server.ref}", {"url": server.url, "pid": os.getpid()}, required)
    except WorkbenchError as exc:
        if required:
            raise WorkbenchError(f"Not serving {server.ref}: its audit entry could not be written ({exc.message})",
                                 exc.hint) from exc  # fmt: skip
        log.error("The audit entry %s of %s could not be written: %s", action, server.ref, exc.message)


class PortInUseError(WorkbenchError):
    """The address a server should listen on is taken: not a validation error, a busy port."""


def check_port_free(host: str, port: int) -> None:
    """Refuse to start (before auditing a start) when another process already listens there."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                "Another process uses that port: choose another with --port, or stop it (find it with 'lsof -i').",
            ) from exc


def serve_forever(server: Server) -> None:
    """Listen in the foreground until interrupted (blocking; SIGTERM ends it cleanly)."""
    import signal
    import sys

    import uvicorn

    check_port_free(server.host, server.port)
    config = uvicorn.Config(server.app, host=server.host, port=server.port, log_level="warning", access_log=False)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: exit normally so cleanup runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with _lifecycle(server):
        uvicorn.Server(config).run()


@contextmanager
def serving_in_thread(server: Server) -> Iterator[Server]:
    """Serve from a background thread of this process (notebooks, tests); stops on exit."""
    import time

    import uvicorn

    check_port_free(server.host, server.port)
    config = uvicorn.Config(server.app, host=server.host, port=server.port, log_level="warning", access_log=False)
    uv = uvicorn.Server(config)  # off the main thread uvicorn leaves signal handlers alone
    with _lifecycle(server):
        thread = threading.Thread(target=uv.run, name="workbench-serve", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not uv.started:
            raise WorkbenchError(f"The model server could not listen on {server.url}.", "See the messages above.")
        try:
            yield server
        finally:
            uv.should_exit = True
            thread.join(timeout=10)


class BackgroundServer:
    """A model server running in a thread of this process: `.url`, `.stop()`; also a context manager."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._context = serving_in_thread(server)
        self._context.__enter__()

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<model server {self.server.slot.current.version.ref} at {self.url}>"


def serve_in_background(ref: str, *, port: int = 0, **options: Any) -> BackgroundServer:
    """Start serving `ref` from this process (e.g. a notebook); port 0 picks a free port."""
    if port == 0:
        with socket.socket() as probe:
            probe.bind((options.get("host", "127.0.0.1"), 0))
            port = probe.getsockname()[1]
    return BackgroundServer(build_server(ref, port=port, **options))


def running_servers(ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Model servers of this workspace that are running on this host, with the version each serves now."""
    import psutil

    ws = ws or current_workspace()
    found = []
    for path in sorted(serving_dir(ws).glob("*.json")) if serving_dir(ws).is_dir() else []:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if info.get("host") == socket.gethostname() and not psutil.pid_exists(int(info.get("pid", 0))):
            path.unlink(missing_ok=True)  # a server that was killed
            continue
        found.append({**info, "version": _served_version(ws, info)})
    return found
