"""One interface, two implementations: the library's workspace functions, answered by a team server.

Every public function that reads or changes a workspace (`wb.runs`, `wb.get_run`, `wb.load_snapshot`,
`wb.models`, `wb.promote`, ...) is written once, for a workspace folder, and takes `ws=`. Marked
`@remote_capable`, it is also the interface of the remote workspace: when no `ws` is passed and
this process talks to a team server (`config.resolve()`: `wb.connect`, `WORKBENCH_URL`, a saved
`workbench login`), the call goes to the method of the same name of `RemoteStore`
(`remote.store`), which takes the same arguments minus `ws` and returns the same types. Callers
(the Python API, the CLI, widgets, the lab's REST handlers, code inside a notebook run) never
choose; the choice is made here, in one place, per call from the resolved configuration (which
`wb.connect`/`wb.use` change), and the `RemoteStore` (with its HTTP connection pool) is kept per
server.

A run's kernel reads from where its run is recorded: a run executing against a workspace folder
has `WORKBENCH_RUN_HOME` and `WORKBENCH_HOME` set by its runner, and reads that folder even when a
`workbench login` is saved (`config.resolve`); a run recorded on a server gets the server's URL
and token from its runner and reads from it.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from workbench.remote.config import Remote
    from workbench.remote.store import RemoteStore

F = TypeVar("F", bound=Callable[..., Any])

_stores: dict[tuple[str, str, str], RemoteStore] = {}
_lock = threading.Lock()


def store_for(remote: Remote) -> RemoteStore:
    """The `RemoteStore` of `remote` (one per server, token and TLS setting in this process)."""
    from workbench.remote.store import RemoteStore

    key = (remote.url, remote.token, str(remote.verify))
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = RemoteStore(remote)
        return store


def remote_store() -> RemoteStore | None:
    """The team server this process reads from and writes to, or None for a workspace folder."""
    from workbench.remote.config import resolve

    remote = resolve()
    return None if remote is None else store_for(remote)


def remote_capable(method: str) -> Callable[[F], F]:
    """Answer calls without `ws` from the team server when one is configured (see the module doc).

    `RemoteStore.<method>` takes the function's arguments minus `ws` and returns what it returns.
    `ws` given (by keyword or position) always means that workspace folder."""

    def decorate(function: F) -> F:
        position = list(inspect.signature(function).parameters).index("ws")

        @functools.wraps(function)
        def dispatch(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ws") is None and (len(args) <= position or args[position] is None):
                store = remote_store()
                if store is not None:
                    kwargs.pop("ws", None)
                    return getattr(store, method)(*args[:position], *args[position + 1 :], **kwargs)
            return function(*args, **kwargs)

        dispatch.local = function  # type: ignore[attr-defined]  (the workspace-folder implementation)
        return dispatch  # type: ignore[return-value]

    return decorate
