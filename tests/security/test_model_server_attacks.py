"""Attacks on the model server, each sent for real to a `workbench serve` process on loopback.

A client must not be able to stall the server (bodies whose checking was quadratic, /health
blocked while a large body is checked), exhaust its memory (a gigabyte body, streamed or
announced), or make it fail with a 500 (numbers no float holds, deeply nested JSON); the API
docs are served only when asked for and then behind the token, and the token itself must not
have to appear in the process list.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import VENV_BIN
from model_fixtures import train_run

import workbench as wb

pytestmark = pytest.mark.slow

ROW = {"alcohol": 13.0, "malic_acid": 2.0, "color_intensity": 5.0, "proline": 700.0}
TOKEN = "attack-test-token"
MAX_BODY_BYTES = 8 * 1024 * 1024
WARNING = "visible to every local user in the process list"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, wine_frame) -> Iterator[Path]:
    """One workspace with `wine@production` for every server of this module."""
    from workbench.workspace import init_workspace, use_workspace

    root = tmp_path_factory.mktemp("attacks") / ".workbench"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_HOME", str(root))
        patch.chdir(root.parent)
        use_workspace(init_workspace(root))
        try:
            wb.snapshot("wine", wine_frame)
            wb.promote(train_run(C=1.0), "wine")
            yield root
        finally:
            use_workspace(None)


def _start(home: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """A `workbench serve wine@production` process, once /health answers."""
    port = _free_port()
    environment = dict(os.environ, WORKBENCH_HOME=str(home), OMP_NUM_THREADS="1")
    environment.pop("WORKBENCH_SERVE_TOKEN", None)
    command = [str(VENV_BIN / "workbench"), "serve", "wine@production", "--port", str(port), *options]
    proc = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the server did not start: {proc.communicate()[1]}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """The default server: no token, no docs, predictions logged."""
    proc, url = _start(home)
    try:
        yield proc, url
    finally:
        _stop(proc)


@pytest.fixture()
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[1], timeout=30) as client:
        yield client


def _input_errors(http: httpx.Client) -> float:
    found = re.search(r'^workbench_errors_total\{kind="input"\} (\S+)$', http.get("/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def _post_timed(http: httpx.Client, body: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    answer = http.post("/predict", content=body, headers={"content-type": "application/json"})
    return answer, time.perf_counter() - started


# ------------------------------------------------------------------------------------------
# stalling: work that grew with keys x rows, and /health while a large body is checked


def test_many_distinct_keys_are_refused_in_linear_time(http):
    """Each body took seconds to minutes when every key became a column of every row."""
    over_rows = json.dumps([{f"k{i}": 1} for i in range(22_000)]).encode()  # 250 KB, more rows than the limit
    one_key_each = json.dumps([{f"k{i}": 1} for i in range(10_000)]).encode()
    extra_keys = json.dumps([{**ROW, **{f"k{i}_{j}": 1 for j in range(3)}} for i in range(2_500)]).encode()
    for body, status in ((over_rows, 413), (one_key_each, 422), (extra_keys, 422)):
        assert 100_000 < len(body) < 400_000
        answer, seconds = _post_timed(http, body)
        assert answer.status_code == status and seconds < 2, (answer.status_code, seconds, answer.text[:200])
        assert len(answer.content) < 2_000  # the unexpected keys are listed, but only a few
    error = answer.json()["error"]
    assert "unexpected columns: k0_0, k0_1, k0_2, k1_0" in error and "and more" in error and "missing" not in error


def test_csv_with_a_huge_header_is_refused_before_it_is_parsed(http):
    header = ",".join([*ROW, *(f"k{i}" for i in range(100_000))])
    body = (header + "\n" + ",".join(["1"] * (100_000 + len(ROW))) + "\n").encode()
    started = time.perf_counter()
    answer = http.post("/predict", content=body, headers={"content-type": "text/csv"})
    assert answer.status_code == 422 and time.perf_counter() - started < 2  # pandas alone took 5 s
    assert "unexpected columns: k0, k1" in answer.json()["error"] and len(answer.content) < 2_000


def test_health_answers_while_8_mb_bodies_are_checked(http, server):
    note = "x" * 700
    big = json.dumps([{**ROW, f"note_{i}": note} for i in range(10_000)]).encode()  # 10,000 unknown keys
    assert 7_000_000 < len(big) < MAX_BODY_BYTES
    valid = json.dumps({"records": [ROW] * 10_000}).encode()
    answers: list[tuple[int, float]] = []

    def client() -> None:
        with httpx.Client(base_url=server[1], timeout=120) as own:
            for body in (big, valid, big):
                answer, seconds = _post_timed(own, body)
                answers.append((answer.status_code, seconds))

    clients = [threading.Thread(target=client) for _ in range(2)]
    for thread in clients:
        thread.start()
    waits = []
    with httpx.Client(base_url=server[1], timeout=10) as probe:
        while any(thread.is_alive() for thread in clients) or len(waits) < 20:
            started = time.perf_counter()
            try:
                assert probe.get("/health").status_code == 200
            except httpx.TimeoutException:
                pass
            waits.append(time.perf_counter() - started)
            time.sleep(0.02)
    for thread in clients:
        thread.join()
    assert max(waits) < 0.5, f"/health took up to {max(waits):.2f} s while large bodies were checked"
    assert sorted(status for status, _ in answers) == [200, 200, 422, 422, 422, 422]
    assert max(seconds for _, seconds in answers) < 10, answers


# ------------------------------------------------------------------------------------------
# exhausting memory: a gigabyte body


def _gigabyte() -> Iterator[bytes]:
    chunk = b" " * (1 << 20)
    for _ in range(1024):
        yield chunk


@pytest.mark.parametrize("announced", [False, True], ids=["chunked", "content-length"])
def test_gigabyte_body_is_refused_without_reading_it(http, server, announced):
    process = psutil.Process(server[0].pid)
    before = process.memory_info().rss
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    headers = {"content-type": "application/json"}
    if announced:
        headers["content-length"] = str(1 << 30)
    try:
        with httpx.Client(base_url=server[1], timeout=60) as own:
            answer = own.post("/predict", content=_gigabyte(), headers=headers)
    finally:
        done.set()
        sampler.join()
    assert answer.status_code == 413 and "limit" in answer.json()["error"]
    assert max(peak) - before < 100 * 1024 * 1024, f"RSS grew by {(max(peak) - before) >> 20} MB"
    assert http.post("/predict", json={"records": [ROW]}).status_code == 200  # still serving


# ------------------------------------------------------------------------------------------
# crashing: values no float holds, deep nesting


def test_numbers_no_float_holds_are_a_4xx_naming_the_column_and_counted(http):
    before = _input_errors(http)
    bodies = [
        b'{"records": [{"alcohol": 1' + b"0" * 400 + b', "malic_acid": 2, "color_intensity": 5, "proline": 700}]}',
        b'{"records": [{"alcohol": 1e400, "malic_acid": 2, "color_intensity": 5, "proline": 700}]}',
        b'{"records": [{"alcohol": NaN, "malic_acid": 2, "color_intensity": 5, "proline": 700}]}',
        b'{"records": [{"alcohol": -Infinity, "malic_acid": 2, "color_intensity": 5, "proline": 700}]}',
        json.dumps({"records": [{**ROW, "alcohol": "9" * 1_000_000}]}).encode(),
        json.dumps({"columns": {**{k: [v] for k, v in ROW.items()}, "alcohol": [10**400]}}).encode(),
    ]
    for body in bodies:
        answer, _ = _post_timed(http, body)
        assert answer.status_code == 422, (body[:80], answer.status_code, answer.text[:200])
        assert "'alcohol'" in answer.json()["error"] and len(answer.content) < 2_000
    assert _input_errors(http) == before + len(bodies)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"records": [{"alcohol": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
    b'{"records": [{"alcohol": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}]}",
], ids=["arrays", "in a value", "objects in a value"])  # fmt: skip
def test_deeply_nested_json_is_a_400(http, body):
    answer, _ = _post_timed(http, body)
    assert answer.status_code == 400 and "nested too deeply" in answer.json()["error"]


# ------------------------------------------------------------------------------------------
# API docs and the token


def test_docs_are_not_served_unless_asked_for(http):
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert http.get(path).status_code == 404, path


def test_docs_need_the_token_and_a_private_token_file_is_accepted(home, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    proc, url = _start(home, "--docs", "--token-file", str(token_file), "--no-log")
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, timeout=30) as http:
            for path in ("/docs", "/openapi.json"):
                assert http.get(path).status_code == 401, path
                assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
                assert http.get(path, headers=auth).status_code == 200, path
            assert "/predict" in http.get("/openapi.json", headers=auth).json()["paths"]
            assert http.post("/predict", json={"records": [ROW]}).status_code == 401
            assert http.post("/predict", json={"records": [ROW]}, headers=auth).status_code == 200
            assert http.get("/health").status_code == 200  # for load balancers
            assert http.get("/metrics").status_code == 200  # documented as open, like /health
    finally:
        _stop(proc)
    assert WARNING not in proc.stderr.read()


@pytest.mark.parametrize("command", ["serve", "guard"])
def test_token_file_others_can_read_is_refused(cli, tmp_path, command):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    refused = cli(command, "wine@production", "--token-file", str(token_file), "--port", str(_free_port()))
    assert refused.returncode != 0
    output = " ".join((refused.stdout + refused.stderr).split())
    assert "0644" in output and "too open" in output and "chmod 600" in output, output


def test_token_on_the_command_line_is_accepted_with_a_warning(cli):
    answer = cli("serve", "no-such-model@production", "--token", TOKEN)  # fails after the token is read
    assert answer.returncode != 0
    stderr = " ".join(answer.stderr.split())
    assert WARNING in stderr and "WORKBENCH_SERVE_TOKEN" in stderr and "--token-file" in stderr, stderr


# ------------------------------------------------------------------------------------------
# the same limits in-process, for paths the wine model does not reach (no schema, other dtypes)


def test_limits_without_a_schema_and_ranges_of_other_dtypes():
    from workbench.serving.inputs import MAX_CELLS, MAX_COLUMNS, InputError, conform, parse_body

    sparse = json.dumps([{f"k{i}": 1} for i in range(2_000)]).encode()  # 2,000 x 2,000 cells if padded
    wide = json.dumps({"columns": {f"k{i}": [1] for i in range(MAX_COLUMNS + 1)}}).encode()
    for body in (sparse, wide):
        with pytest.raises(InputError) as refused:
            parse_body(body, "application/json", None)
        assert refused.value.status == 413
    assert MAX_CELLS < 2_000 * 2_000
    assert parse_body(b'[{"a": 1}, {"b": 2}]', "application/json", None) == {"a": [1, None], "b": [None, 2]}

    cases = [("int64", 2**63), ("int32", -(2**31) - 1), ("uint8", -1), ("float32", 1e39)]
    for dtype, value in cases:
        with pytest.raises(InputError, match="out of range") as refused:
            conform({"x": [value]}, [{"name": "x", "dtype": dtype}])
        assert refused.value.status == 422
    assert conform({"x": [2**63 - 1024]}, [{"name": "x", "dtype": "int64"}]).columns["x"][0] == 2**63 - 1024
    with pytest.raises(InputError, match="single value") as refused:
        conform({"x": [["a"]]}, [{"name": "x", "dtype": "object"}])
    assert refused.value.status == 422
