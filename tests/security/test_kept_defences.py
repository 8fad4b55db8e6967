"""Defences that already held when the attack suite was written, kept under test so they keep holding:
no HTML injection sinks in the extension, and a slow client cannot starve the model server."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from model_fixtures import train_run

import workbench as wb

EXTENSION_SRC = Path(__file__).resolve().parents[2] / "extension" / "src"
#: DOM APIs that parse a string as HTML: user text (run names, params, errors) must never reach one.
HTML_SINKS = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|dangerouslySetInnerHTML|document\.write)\b")


def test_the_extension_never_parses_strings_as_html():
    sources = sorted(EXTENSION_SRC.rglob("*.ts")) + sorted(EXTENSION_SRC.rglob("*.tsx"))
    assert sources, f"no extension sources under {EXTENSION_SRC}"
    found = [f"{path.name}:{number}: {line.strip()}" for path in sources
             for number, line in enumerate(path.read_text().splitlines(), 1) if HTML_SINKS.search(line)]  # fmt: skip
    assert not found, found


@pytest.mark.slow
def test_slow_clients_do_not_starve_the_model_server(ws, wine_frame):
    """Ten connections that trickle a request header byte by byte; /health and /predict still answer."""
    wb.snapshot("wine", wine_frame)
    wb.promote(train_run())
    record = wine_frame[["alcohol", "malic_acid", "color_intensity", "proline"]].head(1).to_dict(orient="records")
    with wb.serve("wine@production", log_predictions=False) as server:
        host, port = server.url.removeprefix("http://").split(":")
        slow = []
        for _ in range(10):
            conn = socket.create_connection((host, int(port)), timeout=5)
            conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n")
            slow.append(conn)
        try:
            with httpx.Client(base_url=server.url, timeout=10) as http:
                for _ in range(5):
                    for conn in slow:
                        conn.sendall(b"X")  # still trickling
                    started = time.monotonic()
                    assert http.get("/health").status_code == 200
                    assert http.post("/predict", json={"records": record}).status_code == 200
                    assert time.monotonic() - started < 2.0
        finally:
            for conn in slow:
                conn.close()
