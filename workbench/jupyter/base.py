"""What every REST handler of the JupyterLab extension shares: JSON, the workspace, errors.

Every handler authenticates (`@tornado.web.authenticated`: no token, 403), parses its input,
calls one library function in a worker thread (DuckDB and file I/O block, and the Jupyter
server must keep serving kernels and other tabs meanwhile) and returns JSON. Errors a user can
act on (`WorkbenchError`) become `400 {"error", "hint"}` (`NotFoundError`: 404), plus `field` when
the error is about one input of the Run dialog and `gates` when a promotion was refused, so the UI
can show it where the user acted; anything else is a bug and keeps jupyter_server's usual 500 with
a traceback in the log.

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
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

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
from workbench.workspace import DEFAULT_DIRNAME, ENV_HOME, Workspace, init_workspace

API_PREFIX = "workbench/api"


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
        """Run a blocking library call in a worker thread; `fn` gets the server's workspace as `ws`."""

        def work() -> Any:
            ws = self.holder.get()
            from workbench.workspace import use_workspace

            use_workspace(ws)
            return fn(*args, ws=ws, **kwargs)

        return await asyncio.to_thread(work)

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
        except NotFoundError as exc:
            self.reply(error_body(exc), 404)
        except BodyTooLargeError as exc:
            self.reply(error_body(exc), 413)
        except WorkbenchError as exc:
            self.reply(error_body(exc), 400)

    def json_body(self) -> dict[str, Any]:
        """The request body as a checked JSON object (parsed once), or a 4xx-worthy ValidationError."""
        if self._json_body is None:
            self._json_body = parse_json_body(self.request.body or b"")
        return self._json_body

    def int_argument(self, name: str, default: int, minimum: int = 0, maximum: int = MAX_INT) -> int:
        """A whole-number query argument in [minimum, maximum] (missing or empty: `default`), else a 400."""
        return int_text(name, self.get_query_argument(name, None), default, minimum, maximum)

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
