"""What every REST handler of the JupyterLab extension shares: JSON, the workspace, errors.

Every handler authenticates (`@tornado.web.authenticated`: no token, 403), parses its input,
calls one library function in a worker thread (DuckDB and file I/O block, and the Jupyter
server must keep serving kernels and other tabs meanwhile) and returns JSON. Errors a user can
act on (`WorkbenchError`) become `400 {"error", "hint"}` (`NotFoundError`: 404), plus `field` when
the error is about one input of the Run dialog and `gates` when a promotion was refused, so the UI
can show it where the user acted; anything else is a bug and keeps jupyter_server's usual 500 with
a traceback in the log.

A lab whose Jupyter server has a team server configured (`remote.config.resolve()`: `WORKBENCH_URL`
with `WORKBENCH_TOKEN`, or a saved `workbench login`) reads and writes through that server and
never touches, or creates, a workspace folder: `WorkbenchHandler.call` is the one place that
chooses, per call. Library functions marked `@remote_capable` answer from the server when called
without `ws`; a handler whose function has no remote implementation is refused with a 400 naming it
(never a silent answer from a local folder). The team server's own refusals keep their meaning: its
401/403 (a bad token, a role too low, e.g. "needs role editor") reach the UI as a 403 with its message,
an unreachable or failing server as a 502.

Input is checked in one place (`workbench.httpapi`, shared with the team server), so no client
mistake reaches a library call as a type or size it cannot handle: a POST body is at most
`MAX_BODY_BYTES` (else 413) and `MAX_JSON_DEPTH` levels deep (else 400; parsing and everything that
walks the data later recurse), and numeric arguments are whole numbers within a stated range
(`int_argument`, `int_field`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.base.handlers import APIHandler

from workbench.errors import NotFoundError, ValidationError, WorkbenchError
from workbench.httpapi import (  # noqa: F401  (shared with the team server; imported from here by the handlers)
    DEFAULT_RUNS_LIMIT,
    MAX_BODY_BYTES,
    MAX_INT,
    MAX_JSON_DEPTH,
    MAX_RUNS_LIMIT,
    BodyTooLargeError,
    check_int,
    error_body,
    frame_records,
    int_field,
    int_text,
    json_depth,
    parse_json_body,
    text_field,
    to_jsonable,
)
from workbench.httpapi import error_status as httpapi_error_status
from workbench.workspace import DEFAULT_DIRNAME, ENV_HOME, Workspace, init_workspace

if TYPE_CHECKING:
    from workbench.remote.config import Remote
    from workbench.remote.runs import RunPlace

API_PREFIX = "workbench/api"
F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------------
# Workspace


class WorkspaceHolder:
    """Resolves the server's workspace once, creating it on first use.

    `$WORKBENCH_HOME` wins (as everywhere in Workbench); otherwise the workspace is
    `<server root>/.workbench`, which is also what a kernel started in that tree finds by
    walking up from its notebook's folder.
    """

    def __init__(self, root_dir: Path) -> None:
        self.root_dir = root_dir
        self._ws: Workspace | None = None
        self._lock = threading.Lock()

    def home(self) -> Path:
        env = os.environ.get(ENV_HOME)
        return Path(env).expanduser().absolute() if env else self.root_dir / DEFAULT_DIRNAME

    def get(self) -> Workspace:
        home = self.home()
        with self._lock:
            if self._ws is None or self._ws.root != home or not self._ws.config_path.is_file():
                self._ws = init_workspace(home)
            return self._ws


# --------------------------------------------------------------------------------------------
# Team server


def team_server() -> Remote | None:
    """The team server this lab reads and writes through, or None for its workspace folder.

    Resolved per call, as the library's dispatch does (`remote.dispatch`), so both always agree. A lab
    that has used its workspace folder once has chosen it (`use_workspace`) and stays local."""
    from workbench.remote.config import resolve

    return resolve()


def through_server(*functions: Callable[..., Any]) -> Callable[[F], F]:
    """Mark a handler's own function of `ws` that passes `ws` only to `functions`: it can answer from a
    team server exactly when they all can (`@remote_capable`), and `call` refuses it otherwise. None
    listed: it passes `ws` only to library functions that pass it on to `@remote_capable` ones."""

    def mark(fn: F) -> F:
        fn.remote_parts = functions  # type: ignore[attr-defined]
        return fn

    return mark


def not_on_server(fn: Callable[..., Any]) -> str | None:
    """The name of the library function that keeps `fn` from answering through a team server, or None."""
    for part in getattr(fn, "remote_parts", (fn,)):
        if not callable(getattr(part, "local", None)):  # what `remote_capable` leaves on its functions
            return f"{part.__module__}.{part.__qualname__}"
    return None


def error_status(exc: WorkbenchError) -> int:
    """The HTTP status of a user-facing error: the team server's refusals keep theirs (403 for its 401
    too: the lab's own login is fine, the server refused the token it was given), an unreachable or
    failing server is a bad gateway; the rest as in the team server's API (`httpapi.error_status`)."""
    from workbench.remote.client import (
        AuthenticationError,
        PermissionDeniedError,
        ServerBusyError,
        ServerUnreachableError,
    )

    if isinstance(exc, (AuthenticationError, PermissionDeniedError)):
        return 403
    if isinstance(exc, (ServerUnreachableError, ServerBusyError)):
        return 502
    return httpapi_error_status(exc)


def lab_error_body(exc: WorkbenchError) -> dict[str, Any]:
    """`error_body`, plus the form field or gate verdicts of a refusal the team server answered."""
    body = error_body(exc)
    answered = getattr(exc, "body", None)  # a `RemoteError`: the server's own {"error", "hint", ...}
    if isinstance(answered, dict):
        body.update({key: answered[key] for key in ("field", "gates") if key in answered and key not in body})
    return body


#: Threads the lab runs work in after replying (sweeps, runs logged to a team server), kept so they are
#: not orphaned silently.
active_work: set[threading.Thread] = set()


def start_work(name: str, log: logging.Logger | logging.LoggerAdapter, fn: Callable[..., Any], *args: Any,
               **kwargs: Any) -> threading.Thread:  # fmt: skip
    """Run `fn` in a daemon thread after the reply; a refusal goes to the server log as a warning, a
    crash with its traceback (the UI follows the runs themselves through the runs list)."""

    def work() -> None:
        try:
            fn(*args, **kwargs)
        except WorkbenchError as exc:
            log.warning("Workbench %s failed: %s", name, exc)
        except Exception:  # a bug: keep the traceback in the server log
            log.exception("Workbench %s crashed", name)
        finally:
            active_work.discard(threading.current_thread())

    thread = threading.Thread(target=work, name=f"workbench-{name}", daemon=True)
    active_work.add(thread)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------
# Base handler


class WorkbenchHandler(APIHandler):
    """Common plumbing: workspace, threaded library calls, JSON replies, error mapping."""

    holder: WorkspaceHolder
    _json_body: dict[str, Any] | None = None

    def initialize(self, holder: WorkspaceHolder) -> None:
        self.holder = holder

    @property
    def server_root(self) -> Path:
        return self.holder.root_dir

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking library call in a worker thread, on the lab's workspace or its team server.

        With a team server configured `fn` gets `ws=None`, so its `@remote_capable` functions answer
        from the server (and no workspace folder is created); one that has no remote implementation
        is refused with a 400 naming it. Otherwise `fn` gets the workspace of the server root."""

        def work() -> Any:
            remote = team_server()
            if remote is not None:
                self.check_on_server(fn, remote)
                return fn(*args, ws=None, **kwargs)
            return fn(*args, ws=self.local_workspace(), **kwargs)

        return await asyncio.to_thread(work)

    def local_workspace(self) -> Workspace:
        """The workspace of the server root (created on first use), made this process's default."""
        from workbench.workspace import use_workspace

        ws = self.holder.get()
        use_workspace(ws)
        return ws

    async def launch_place(self) -> RunPlace:
        """Where a run or sweep started from the lab is recorded: the workspace of the server root, or
        the team server (asked first whether this user may log runs, so a viewer's refusal reaches the
        dialog before anything is started)."""
        from workbench.remote.runs import RunPlace, run_place

        def place() -> RunPlace:
            return RunPlace(self.local_workspace()) if team_server() is None else run_place()

        return await asyncio.to_thread(place)

    def check_on_server(self, fn: Callable[..., Any], remote: Remote) -> None:
        """Refuse `fn` when it cannot answer through `remote` (see `not_on_server`)."""
        missing = not_on_server(fn)
        if missing is not None:
            raise ValidationError(
                f"{self.request.method} {self.request.path} is not available with a team server yet: {missing} "
                f"has no team-server implementation, and this lab (connected to {remote.url} by {remote.source}) "
                "does not fall back to a local workspace.",
                "Use the 'workbench' CLI where the workspace folder is, or start the lab without a team server "
                "(no WORKBENCH_URL, 'workbench logout').",
            )

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(to_jsonable(data), allow_nan=False))

    def fail(self, status: int, message: str, hint: str | None = None) -> None:
        self.reply({"error": message, "hint": hint}, status)

    async def guard(self, coro: Any) -> None:
        """Await a handler body, turning user-facing errors into JSON 4xx replies."""
        try:
            await coro
        except WorkbenchError as exc:
            self.reply(lab_error_body(exc), error_status(exc))

    def json_body(self) -> dict[str, Any]:
        """The request body as a checked JSON object (parsed once), or a 4xx-worthy ValidationError."""
        if self._json_body is None:
            self._json_body = parse_json_body(self.request.body or b"")
        return self._json_body

    def int_argument(self, name: str, default: int, minimum: int = 0, maximum: int = MAX_INT) -> int:
        """A whole-number query argument in [minimum, maximum] (missing or empty: `default`), else a 400."""
        return int_text(name, self.get_query_argument(name, None), default, minimum, maximum)

    def relative(self, path: Path) -> str:
        """`path` (inside the server root) as the lab names it: relative to the root."""
        return str(path.relative_to(self.server_root.resolve()))

    def resolve_notebook(self, path: Any) -> Path:
        """A notebook path relative to the server root, refused if it is absolute or escapes it."""
        if not isinstance(path, str) or not path.strip():
            raise ValidationError("A notebook path is required.", "Pass the path relative to the Jupyter root.")
        relative = Path(path.strip())
        if relative.is_absolute():
            raise ValidationError(f"Notebook path {path!r} must be relative to the Jupyter root.")
        root = self.server_root.resolve()
        target = (root / relative).resolve()
        if target != root and root not in target.parents:
            raise ValidationError(f"Notebook path {path!r} is outside the Jupyter root.", "Pick a notebook in it.")
        if target.suffix != ".ipynb":
            raise ValidationError(f"{relative.name} is not a notebook (.ipynb).")
        if not target.is_file():
            raise NotFoundError(f"Notebook not found: {path}.", "Check the path relative to the Jupyter root.")
        return target


def guarded(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Decorate a handler method so a user's mistake (`WorkbenchError`) becomes a JSON 4xx reply.

    A POST body is parsed and checked first, even by handlers that ignore it, so every POST
    route refuses an oversized or absurdly nested body the same way.
    """

    @functools.wraps(method)
    async def wrapper(self: WorkbenchHandler, *args: Any, **kwargs: Any) -> None:
        async def checked() -> None:
            if self.request.method == "POST":
                self.json_body()
            await method(self, *args, **kwargs)

        await self.guard(checked())

    return wrapper
