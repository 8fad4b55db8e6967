"""What every REST handler of the JupyterLab extension shares: JSON, the workspace, errors.

Every handler authenticates (`@tornado.web.authenticated`: no token, 403), parses its input,
calls one library function in a worker thread (DuckDB and file I/O block, and the Jupyter
server must keep serving kernels and other tabs meanwhile) and returns JSON. Errors a user can
act on (`WorkbenchError`) become `400 {"error", "hint"}` (`NotFoundError`: 404), plus `field` when
the error is about one input of the Run dialog and `gates` when a promotion was refused, so the UI
can show it where the user acted; anything else is a bug and keeps jupyter_server's usual 500 with
a traceback in the log.

Input is checked here, in one place, so no client mistake reaches a library call as a type or
size it cannot handle: a POST body is at most `MAX_BODY_BYTES` (else 413) and `MAX_JSON_DEPTH`
levels deep (else 400; parsing and everything that walks the data later recurse), and numeric
arguments are whole numbers within a stated range (`int_argument`, `int_field`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler

from workbench.errors import NotFoundError, ValidationError, WorkbenchError
from workbench.workspace import DEFAULT_DIRNAME, ENV_HOME, Workspace, init_workspace

API_PREFIX = "workbench/api"
#: Most rows the runs table asks for when the client gives no limit: keeps polling cheap.
DEFAULT_RUNS_LIMIT = 500
#: Most rows one runs request may ask for (a bigger `limit` is a 400, not a DuckDB overflow).
MAX_RUNS_LIMIT = 100_000
#: Largest POST body: requests carry a notebook path, parameters and a sweep grid (a few KiB).
MAX_BODY_BYTES = 1024 * 1024
#: Deepest nesting of arrays/objects in a POST body; parameters need a handful of levels.
MAX_JSON_DEPTH = 32
#: Largest integer a body or query argument may carry by default (fits every catalog integer column).
MAX_INT = 2**31 - 1


class BodyTooLargeError(ValidationError):
    """A request body over `MAX_BODY_BYTES` (answered 413)."""


# --------------------------------------------------------------------------------------------
# JSON


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from library results: NaN/NaT -> null, datetimes -> ISO text, numpy -> Python.

    Strict JSON (no `NaN` tokens) matters because browsers' `JSON.parse` rejects them.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_dict") and callable(value.to_dict) and not _is_pandas(value):
        return to_jsonable(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    try:
        import pandas as pd

        if isinstance(value, pd.DataFrame):
            return frame_records(value)
        if value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a hard dependency
        pass
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):  # numpy arrays
        return to_jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _is_pandas(value: Any) -> bool:
    return type(value).__module__.startswith("pandas")


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame as a list of row dicts with JSON-safe values (missing -> null)."""
    import pandas as pd

    records = frame.astype(object).to_dict(orient="records")
    out = []
    for row in records:
        clean = {}
        for key, cell in row.items():
            if not isinstance(cell, (list, dict, tuple)) and pd.isna(cell):
                clean[str(key)] = None
            else:
                clean[str(key)] = to_jsonable(cell)
        out.append(clean)
    return out


def json_depth(value: Any, stop_after: int = MAX_JSON_DEPTH) -> int:
    """How deeply arrays/objects nest in parsed JSON (a scalar is 0), counted without recursion.

    Stops counting once past `stop_after`: the caller only needs to know the limit is exceeded.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack and deepest <= stop_after:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object (empty: `{}`), refused if too big, too deep or not an object."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"The request body is {len(raw):,} bytes, more than the limit of {MAX_BODY_BYTES:,}.")
    too_deep = ValidationError(f"The request body is nested more than {MAX_JSON_DEPTH} levels deep.",
                               "Send a flat JSON object of plain values.")  # fmt: skip
    try:
        body = json.loads(raw or b"{}")
    except RecursionError as exc:  # the parser recurses: [[[[...]]]] thousands deep
        raise too_deep from exc
    except ValueError as exc:  # also bad UTF-8 and integers of more than 4,300 digits
        raise ValidationError(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise too_deep
    return body


def text_field(data: dict[str, Any], key: str, default: str | None = None) -> str | None:
    """`data[key]` if it is text; missing, null or "" gives `default`; any other type is a 400."""
    value = data.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ValidationError(f"{key} must be a string, not {type(value).__name__}.")
    return value


def check_int(name: str, value: Any, minimum: int, maximum: int) -> int:
    """`value` if it is a whole number in [minimum, maximum], else a 400 naming `name` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be a whole number from {minimum:,} to {maximum:,}, not {value!r}.")
    return value


def int_field(data: dict[str, Any], key: str, minimum: int = 0, maximum: int = MAX_INT) -> int | None:
    """`data[key]` as a checked whole number (None when missing or null)."""
    value = data.get(key)
    return None if value is None else check_int(key, value, minimum, maximum)


def error_body(exc: WorkbenchError) -> dict[str, Any]:
    """The JSON body of a refused request: message and hint, plus what lets the UI show it in place:
    the form field it is about (`field`) and every gate's verdict of a refused promotion (`gates`)."""
    body: dict[str, Any] = {"error": exc.message, "hint": exc.hint}
    field = getattr(exc, "field", None)
    if isinstance(field, str):
        body["field"] = field
    results = getattr(exc, "results", None)  # GateRefused (imported lazily by the model handlers)
    if results:
        body["gates"] = to_jsonable(results)
    return body


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
        text = self.get_query_argument(name, None)
        if text is None or not text.strip():
            return default
        text = text.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isascii() or not digits.isdigit() or len(digits) > len(str(maximum)) + 1:
            raise ValidationError(f"{name} must be a whole number from {minimum:,} to {maximum:,}, not {text[:40]!r}.")
        return check_int(name, int(text), minimum, maximum)

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
