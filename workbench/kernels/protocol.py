"""The fork server's wire format: one JSON object per line over a Unix socket, each way."""

from __future__ import annotations

import json
import socket
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
