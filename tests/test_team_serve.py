"""`workbench serve NAME@alias` against a team server, as real processes on loopback.

The team server owns a workspace with model wine (v1 production, v2 staging). Model servers run as
client processes that know only WORKBENCH_URL and WORKBENCH_TOKEN: an empty working folder, their
own HOME and XDG folders, no WORKBENCH_HOME. They pull the model (cached by sha256, verified),
follow `production` through the change feed (a move by a maintainer is served within seconds, no
request failing meanwhile), keep serving while the team server is down, and ship their prediction
log so the server has every prediction exactly once (`workbench monitor` there reads it). A viewer
token serves, but its log stays in the local spool with a warning naming the role needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import VENV_BIN
from test_team_logging import client_env, start_server
from test_team_server import add_user, free_port, make_workspace, workbench_cli

pytestmark = pytest.mark.slow

FEATURES = ["alcohol", "malic_acid", "color_intensity", "proline"]
USERS = {"vera": "viewer", "ed": "editor", "max": "maintainer"}


@dataclass
class Team:
    home: Path
    server: object  # test_team_server.Server, replaced when restarted
    tokens: dict
    rows: list
    expected: dict  # version -> predictions of `rows`
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[user]}"}, timeout=60)

    def move_production(self, version: int) -> None:
        with self.api("max") as http:
            moved = http.put("/api/v1/models/wine/aliases/production", json={"version": version, "reason": "test"})
        assert moved.status_code == 200, moved.text

    def received(self) -> list[dict]:
        """The prediction records the team server stored."""
        folder = self.home / "predictions" / "wine"
        return [json.loads(line) for path in sorted(folder.glob("remote-*.jsonl")) for line in
                path.read_text().splitlines()]  # fmt: skip


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    from workbench.models.registry import load
    from workbench.workspace import Workspace

    home = tmp_path_factory.mktemp("team-serve") / ".workbench"
    make_workspace(home, wine_frame)  # wine: v1 production, v2 staging
    rows = wine_frame[FEATURES].iloc[::9].to_dict(orient="records")
    expected = {}
    for version in (1, 2):  # before the server holds the catalog
        model, _ = load(f"wine@{version}", Workspace(home))
        expected[version] = [int(p) for p in model.predict(wine_frame[FEATURES].iloc[::9])]
    assert expected[1] != expected[2], "the two versions should answer differently"
    tokens = {name: add_user(home, name, role) for name, role in USERS.items()}
    port = free_port()
    team = Team(home, start_server(home, port), tokens, rows, expected, port)
    yield team
    team.server.stop()
    assert "Traceback" not in team.server.log.read_text(), team.server.log.read_text()


@dataclass
class ModelServer:
    proc: subprocess.Popen
    url: str
    log: Path
    client: Path  # the client machine's folder

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.log.read_text()


def start_serve(team: Team, client: Path, user: str, ref: str = "wine@production") -> ModelServer:
    """`workbench serve REF` on a client machine of `user`: its own empty folder and HOME, no workspace."""
    (client / "home").mkdir(parents=True, exist_ok=True)
    (client / "cwd").mkdir(exist_ok=True)
    env = client_env(client, team.url, team.tokens[user], HOME=str(client / "home"))
    assert "WORKBENCH_HOME" not in env
    port = free_port()
    log = client / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(VENV_BIN / "workbench"), "serve", ref, "--port", str(port)], cwd=client / "cwd",
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
    served = ModelServer(proc, f"http://127.0.0.1:{port}", log, client)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"workbench serve exited {proc.returncode}:\n{log.read_text()}"
        try:
            if httpx.get(f"{served.url}/health", timeout=5).status_code == 200:
                return served
        except httpx.TransportError:
            time.sleep(0.2)
    served.stop()
    raise AssertionError(f"workbench serve did not answer within 90 s:\n{log.read_text()}")


def predict(http: httpx.Client, team: Team) -> dict:
    answer = http.post("/predict", json={"records": team.rows})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == team.expected[body["version"]], body
    return body


def wait_for_version(http: httpx.Client, team: Team, version: int, within: float) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predict(http, team)["version"] == version:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"still not serving version {version} after {within} s")


def test_serve_pulls_follows_the_alias_without_a_failed_request_and_ships_predictions_once(team, tmp_path_factory):
    client = tmp_path_factory.mktemp("laptop-ed")
    team.client_ed = client  # type: ignore[attr-defined]
    served = start_serve(team, client, "ed")
    answers: list[tuple[int, int | None, str | None]] = []  # status, version, request id
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            while not stop.is_set():
                try:
                    response = http.post("/predict", json={"records": team.rows})
                except httpx.HTTPError as exc:
                    answers.append((0, None, repr(exc)))
                    continue
                body = response.json() if response.status_code == 200 else {}
                ok = response.status_code == 200 and body["predictions"] == team.expected[body["version"]]
                answers.append((response.status_code if ok else -1, body.get("version"), body.get("request_id")))

    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            assert predict(http, team)["version"] == 1
            first = predict(http, team)
            meta = http.get("/metadata").json()
            assert (meta["model"], meta["version"], meta["ref"]) == ("wine", 1, "wine@production")
            thread = threading.Thread(target=hammer)
            thread.start()
            time.sleep(0.5)
            moved_at = time.monotonic()
            team.move_production(2)
            swapped_at = wait_for_version(http, team, 2, within=15)
            assert swapped_at - moved_at < 5, swapped_at - moved_at
            time.sleep(0.5)
            stop.set()
            thread.join(timeout=30)
            last = predict(http, team)
            assert last["version"] == 2 and http.get("/metadata").json()["swaps"] == 1
    finally:
        stop.set()
        output = served.stop()
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    versions = [a[1] for a in answers]
    assert versions == sorted(versions) and {1, 2} <= set(versions), "a request got v1 after v2, or no swap seen"
    # the model came from the server, into the client's cache by hash, never from the server's folder
    cached = list((client / "cache" / "workbench" / "models").iterdir())
    assert len(cached) == 2 and all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in cached)
    assert not (team.home / "serving").exists() or not list((team.home / "serving").iterdir())
    assert "Traceback" not in output, output
    # every prediction made reached the server exactly once (stopping ships what is left)
    ids = [a[2] for a in answers] + [first["request_id"], last["request_id"]]
    received = team.received()
    per_request = len(team.rows)
    assert len(received) >= (len(ids) + 1) * per_request  # + the first probe
    by_id: dict[str, int] = {}
    for record in received:
        by_id[record["request_id"]] = by_id.get(record["request_id"], 0) + 1
    assert all(by_id.get(i) == per_request for i in ids), "a prediction is missing or doubled on the server"
    assert set(by_id.values()) == {per_request} and len(received) == len(by_id) * per_request
    spool = next((client / "cache" / "workbench" / "spool").iterdir()) / "predictions" / "wine"
    spooled = [json.loads(line) for p in spool.glob("*.jsonl") for line in p.read_text().splitlines()]
    key = lambda record: (record["request_id"], json.dumps(record["input"], sort_keys=True))  # noqa: E731
    assert sorted(map(key, spooled)) == sorted(map(key, received))  # the spool, all of it, once
    team.shipped = len(received)  # type: ignore[attr-defined]


def test_a_tampered_cached_model_is_refused_and_downloaded_again_and_a_restart_sends_nothing_twice(team):
    client = team.client_ed
    with team.api("vera") as http:
        sha = http.get("/api/v1/models/wine/aliases/production").json()["sha256"]
    cached = client / "cache" / "workbench" / "models" / sha
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")  # same size, other bytes
    served = start_serve(team, client, "ed")
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            assert predict(http, team)["version"] == 2  # served the real v2
    finally:
        output = served.stop()
    assert f"The cached file {cached} of model wine@2 does not match its sha256; downloading it again." in output
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    spool = next((client / "cache" / "workbench" / "spool").iterdir()) / "predictions" / "wine"
    sent = json.loads((spool / "sent.json").read_text())
    assert len(sent) == 2 and all(sent[p.name] == p.stat().st_size for p in spool.glob("*.jsonl"))
    assert len(team.received()) == team.shipped + len(team.rows)  # the earlier log was not sent again


def test_with_a_viewer_token_it_serves_and_the_log_stays_in_the_spool(team, tmp_path_factory):
    client = tmp_path_factory.mktemp("laptop-vera")
    before = len(team.received())
    served = start_serve(team, client, "vera")
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            predict(http, team)
            time.sleep(2.5)  # a shipping attempt
    finally:
        output = served.stop()
    assert "uploading prediction logs needs role editor; you are viewer." in output, output
    assert "its prediction log stays in" in output and output.count("needs role editor") == 1
    assert len(team.received()) == before
    spool = next((client / "cache" / "workbench" / "spool").iterdir()) / "predictions" / "wine"
    assert sum(p.read_text().count("\n") for p in spool.glob("*.jsonl")) == len(team.rows)


def test_an_unreachable_server_leaves_the_model_serving_and_the_alias_is_followed_when_it_is_back(team):
    served = start_serve(team, team.client_ed, "ed")
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            assert predict(http, team)["version"] == 2
            team.server.stop()
            for _ in range(10):  # the follower's poll fails meanwhile
                assert predict(http, team)["version"] == 2
                time.sleep(0.3)
            team.server = start_server(team.home, team.port)
            team.move_production(1)
            wait_for_version(http, team, 1, within=30)
    finally:
        output = served.stop()
    assert "Cannot follow wine@production" in output and "still serving wine@2" in output, output
    assert "Traceback" not in output, output


def test_monitor_on_the_server_reads_the_shipped_predictions(team):
    received = len(team.received())
    team.server.stop()
    proc = workbench_cli(team.home, "monitor", "wine", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["live_rows"] == received
    team.server = start_server(team.home, team.port)


def test_prediction_uploads_are_checked_and_idempotent_per_batch(team):
    line = json.dumps({"at": "2026-01-01T00:00:00+00:00", "request_id": "r1", "version": 1, "latency_ms": 1.0,
                       "input": team.rows[0], "prediction": 0}) + "\n"  # fmt: skip
    path = "/api/v1/models/wine/predictions"
    with team.api("ed") as http:
        first = http.post(path, json={"stream": "probe-1", "offset": 0, "lines": line})
        again = http.post(path, json={"stream": "probe-1", "offset": 0, "lines": line})
        assert first.status_code == again.status_code == 200 and first.json() == again.json() == {"size": len(line)}
        gap = http.post(path, json={"stream": "probe-1", "offset": 999, "lines": line})
        assert gap.status_code == 409 and gap.json()["size"] == len(line)
        for lines, message in [("{}\n", "needs the fields"), ("nope\n", "is not JSON"), (line[:-1], "newline")]:
            bad = http.post(path, json={"stream": "probe-2", "offset": 0, "lines": lines})
            assert bad.status_code == 400 and message in bad.json()["error"], bad.text
        assert http.post(path, json={"stream": "../x", "offset": 0, "lines": line}).status_code == 400
        assert http.post(path, json={"stream": "big", "offset": 0, "lines": line * 40_000}).status_code == 413
    with team.api("vera") as http:
        refused = http.post(path, json={"stream": "probe-3", "offset": 0, "lines": line})
        assert refused.status_code == 403 and "needs role editor" in refused.json()["error"]
        download = http.get("/api/v1/models/wine/versions/1/file")
        sha = download.headers["x-workbench-sha256"]
        assert hashlib.sha256(download.content).hexdigest() == sha and download.headers["etag"] == f'"{sha}"'
        version = http.get("/api/v1/models/wine/versions/1").json()
        assert version["sha256"] == sha and version["meta"]["schema"] and "wine" in version["card"]
    assert (team.home / "predictions" / "wine" / "remote-probe-1.jsonl").read_text() == line
