"""The public functions of the remote client: `wb.connect` and `wb.sync_state`."""

from __future__ import annotations

from typing import Any

from workbench.remote.sender import sync_state


def connect(url: str, token: str | None = None, verify: bool | str | None = None) -> dict[str, Any]:
    """Log this process's interactive runs to the team server at `url` from now on.

    The token: `token`, else `$WORKBENCH_TOKEN`, else the one `workbench login URL` saved. `verify`: a
    CA bundle file for a private certificate authority (default `$WORKBENCH_CA_BUNDLE`; False turns
    TLS verification off). The server is asked who the token belongs to before anything changes;
    returns `{"name", "role", "server"}`."""
    from workbench.remote import config
    from workbench.remote.client import Client

    remote = config.remote_for(url, token, verify)
    with Client(remote) as client:
        me = client.me()
    config.use_remote(remote)
    return {"name": me["name"], "role": me["role"], "server": remote.url}


__all__ = ["connect", "sync_state"]
