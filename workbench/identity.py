"""Who is acting: recorded as creator of snapshots, runs and promotions, and in the audit log."""

from __future__ import annotations

import getpass
import os


def current_user() -> str:
    """The acting user: `WORKBENCH_USER`, then the JupyterHub user, then the OS user."""
    for var in ("WORKBENCH_USER", "JUPYTERHUB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
