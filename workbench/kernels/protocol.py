"""The fork server's wire format: one JSON object per line over a Unix socket, each way."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any


def send_message(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def read_message(conn: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the other side closed the connection before sending one."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data) if data else None


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket; None where unknowable.

    For a server socket this is who called listen(), so a socket file sitting in a private folder
    still reveals a listener run by someone else. SO_PEERCRED is Linux's; elsewhere only the
    private socket folder protects the connection.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)
