"""Who is acting: recorded as creator of snapshots, runs and promotions, and in the audit log.

The team server serves many people from one process, so who acts there is per request, not per
process: its authentication sets it for the request with `acting_as(name)` (a context variable,
seen by the worker thread the request's library call runs in, and by nothing else).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_acting: ContextVar[str | None] = ContextVar("workbench_acting_user", default=None)


@contextmanager
def acting_as(name: str) -> Iterator[str]:
    """Within the block (and threads started from its context), `current_user()` is `name`."""
    token = _acting.set(name)
    try:
        yield name
    finally:
        _acting.reset(token)


def current_user() -> str:
    """The acting user: who a request of the team server authenticated as (`acting_as`), then
    `WORKBENCH_USER`, then the JupyterHub user, then the OS user."""
    acting = _acting.get()
    if acting:
        return acting
    for var in ("WORKBENCH_USER", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
