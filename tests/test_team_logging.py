"""Logging runs to a team server from client processes (issue 18), as real processes on loopback.

A client script logs with `wb.log_*` as it would locally; its events go to a spool on the client
and a background sender ships them to the server (`workbench.remote`), which appends them exactly
once (`workbench.runs.receive`). Checked: every point arrives once, the creator is the authenticated
user, chunks sent again are not appended again, viewers and forged or malformed chunks are refused,
a server killed (-9) mid-run loses nothing once restarted, and `workbench login` / `whoami`.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import test_team_server
from conftest import VENV_BIN
from test_team_server import Server, add_user

pytestmark = pytest.mark.slow

URL_ENV = "WORKBENCH_URL"

# A client: logs a param, STEPS step metrics (pausing PAUSE s between them) and a text artifact, then
# ends the run; writes the run id to argv[1] as soon as the run exists.
LOGGER = r"""
import os, sys, time
import workbench as wb

steps, pause = int(os.environ["STEPS"]), float(os.environ["PAUSE"])
if os.environ.get("CONNECT_URL"):
    print(wb.connect(os.environ["CONNECT_URL"], token=os.environ["CONNECT_TOKEN"]), file=sys.stderr)
wb.log_param("lr", 0.1)
open(sys.argv[1], "w").write(wb.tracking.active_run_id())
for step in range(steps):
    wb.log_metric("loss", 1.0 / (step + 1), step=step)
    if pause:
        time.sleep(pause)
wb.log_text("hello from the laptop", "notes.txt")
wb.end_run()
print(wb.sync_state(wb.tracking.active_run_id() or open(sys.argv[1]).read())["state"])
"""


def start_server(home: Path, port: int | None = None) -> Server:
    """`workbench server` on `port` (a free one by default), once /health answers."""
    return test_team_server.start_server(home, port=port)


def client_env(tmp: Path, url: str | None = None, token: str | None = None, **extra: str) -> dict[str, str]:
    """A client machine: its own config and cache folders (credentials, spool), no workspace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(XDG_CONFIG_HOME=str(tmp / "config"), XDG_CACHE_HOME=str(tmp / "cache"), PYTHONUNBUFFERED="1", **extra)
    if url:
        env[URL_ENV] = url
    if token:
        env["WORKBENCH_TOKEN"] = token
    return env


def run_logger(tmp: Path, env: dict[str, str], steps: int = 1000, pause: float = 0.0,
               wait: bool = True) -> tuple[subprocess.Popen, Path]:  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    script, id_file = tmp / "train.py", tmp / "run_id"
    script.write_text(LOGGER)
    proc = subprocess.Popen([sys.executable, str(script), str(id_file)], cwd=tmp, text=True,
                            env={**env, "STEPS": str(steps), "PAUSE": str(pause)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    if wait:
        proc.wait(timeout=180)
    return proc, id_file


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    home = tmp_path_factory.mktemp("team-logging") / ".workbench"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), "init"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    tokens = {name: add_user(home, name, role) for name, role in
              {"ed": "editor", "eve": "editor", "vera": "viewer", "max": "maintainer"}.items()}  # fmt: skip
    server = start_server(home)
    server.tokens = tokens
    yield server
    server.stop()


def spool_events(tmp: Path, run_id: str) -> Path:
    [path] = (tmp / "cache" / "workbench" / "spool").glob(f"*/runs/{run_id}/events.jsonl")
    return path


def offset(server: Server, user: str, run_id: str) -> int:
    with server.client(user) as http:
        response = http.get(f"/api/v1/runs/{run_id}/events/offset")
    assert response.status_code == 200, response.text
    return response.json()["size"]


def test_an_editors_run_arrives_exactly_once_as_theirs(team, tmp_path):
    """1,000 step metrics, a param and a text artifact from a client process: all on the server once,
    created by the authenticated user whatever the client claims; sending a chunk again changes nothing."""
    env = client_env(tmp_path, team.url, team.tokens["ed"], WORKBENCH_USER="mallory")
    proc, id_file = run_logger(tmp_path, env)
    assert proc.returncode == 0, proc.stderr.read()
    assert proc.stdout.read().strip() == "synced"
    run_id = id_file.read_text()
    with team.client("vera") as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        listed = http.get("/api/v1/runs", params={"filter": f"run_id = '{run_id}'"}).json()
    assert run["creator"] == "ed" and run["status"] == "finished" and run["params"] == {"lr": 0.1}
    assert run["metrics"] == {"loss": pytest.approx(1 / 1000)}
    assert [(a["name"], a["kind"]) for a in run["artifacts"]] == [("notes.txt", "text")]
    assert [r["run_id"] for r in listed] == [run_id]

    # the client's file, byte for byte, but for the creator the server wrote into the start line
    local = spool_events(tmp_path, run_id).read_bytes()
    served = (team.home / "runs" / run_id / "events.jsonl").read_bytes()
    assert served.split(b"\n", 1)[1] == local.split(b"\n", 1)[1]
    assert json.loads(served.split(b"\n", 1)[0])["creator"] == "ed"
    assert offset(team, "ed", run_id) == len(local)

    # a chunk the server has already: acknowledged with its size, not appended again
    first = local[: local.index(b"\n", 5000) + 1].decode()
    with team.client("ed") as http:
        again = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": 0, "lines": first})
        whole = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": 0, "lines": local.decode()})
        gap = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": len(local) + 10, "lines": "{}\n"})
    assert again.status_code == whole.status_code == 200 and again.json() == {"size": len(local)}
    assert gap.status_code == 409 and gap.json()["size"] == len(local), gap.text
    assert (team.home / "runs" / run_id / "events.jsonl").read_bytes() == served

    # another editor may not log to ed's run; a maintainer may, now that it has ended
    tag = '{"t": "tag", "key": "reviewed", "value": "yes"}\n'
    with team.client("eve") as http:
        refused = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": len(local), "lines": tag})
    assert refused.status_code == 403 and "created by ed; you are eve" in refused.json()["error"]
    with team.client("max") as http:
        added = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": len(local), "lines": tag})
    assert added.status_code == 200 and added.json() == {"size": len(local) + len(tag)}

    # every point once, in the catalog itself (the server stopped, the workspace opened directly)
    team.stop()
    try:
        check = subprocess.run(
            [sys.executable, "-c", "import sys, workbench as wb; wb.use(sys.argv[1]); "
             "h = wb.metric_history(sys.argv[2], 'loss'); r = wb.get_run(sys.argv[2]); "
             "print(len(h), h.step.nunique(), h.step.min(), h.step.max(), r.creator, r.tags, "
             "wb.load_artifact(r, 'notes.txt'))", str(team.home), run_id],
            capture_output=True, text=True, env=client_env(tmp_path), timeout=120,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        assert check.stdout.split() == ["1000", "1000", "0", "999", "ed", "{'reviewed':", "'yes'}", "hello", "from",
                                        "the", "laptop"]  # fmt: skip
    finally:
        restarted = start_server(team.home, int(team.url.rsplit(":", 1)[1]))
        team.proc = restarted.proc


def test_a_viewer_cannot_log(team, tmp_path):
    """A viewer's first log call fails with one clear line; nothing is written, here or there."""
    with team.client("vera") as http:
        before = http.get("/api/v1/runs", params={"limit": "0"}).json()
    proc, _ = run_logger(tmp_path, client_env(tmp_path, team.url, team.tokens["vera"]), steps=3)
    stderr = proc.stderr.read()
    assert proc.returncode != 0
    assert f"The server {team.url} refused: logging runs needs role editor; you are viewer." in stderr, stderr
    assert not list((tmp_path / "cache").glob("workbench/spool/*/runs/*")), "nothing spooled"
    with team.client("vera") as http:
        assert http.get("/api/v1/runs", params={"limit": "0"}).json() == before


def test_forged_and_malformed_chunks_are_refused(team):
    """Run ids that are not run ids (path traversal) and lines that are not well-formed events: 400,
    and nothing written."""
    run_id = "20261201-120000-0badc0de"
    fields = {"t": "start", "run_id": run_id, "experiment": "e", "kind": "interactive", "status": "queued",
              "created_at": "2026-12-01T12:00:00+00:00"}  # fmt: skip
    start = json.dumps(fields) + "\n"
    with team.client("ed") as http:
        for path in ("/api/v1/runs/%2E%2E/events", "/api/v1/runs/x..y/events", "/api/v1/runs/..%2Fx/events"):
            answer = http.post(httpx.URL(team.url + path), json={"offset": 0, "lines": start})
            assert answer.status_code in (400, 404), (path, answer.text)
            assert answer.status_code == 400 or path.endswith("..%2Fx/events")
        bad = {
            "not JSON": "not json\n",
            "an array": "[1, 2]\n",
            "an unknown kind": '{"t": "bogus"}\n',
            "no newline": start.rstrip("\n"),
            "another run's start": start.replace(run_id, "../x"),
            "no start event first": '{"t": "metric", "key": "a", "value": 1.0, "step": 0}\n',
            "a metric value that is text": start + '{"t": "metric", "key": "a", "value": "1", "step": 0}\n',
            "a time that is not one": start + '{"t": "metric", "key": "a", "value": 1.0, "step": 0, "at": "soon"}\n',
            "a start without its time": json.dumps({**fields, "created_at": None}) + "\n",
            "a pid too large for the catalog": json.dumps({**fields, "pid": 2**40}) + "\n",
            "a second start": start + start,
            "an artifact the server lacks": start + json.dumps({"t": "artifact", "name": "a.txt", "kind": "text",
                                                                "blob": "ab" * 32 + ".txt", "size": 1}) + "\n",
            "a bad artifact name": start + json.dumps({"t": "artifact", "name": "../../etc/passwd", "kind": "text",
                                                       "blob": "ab" * 32, "size": 1}) + "\n",
        }  # fmt: skip
        for what, lines in bad.items():
            answer = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": 0, "lines": lines})
            assert answer.status_code == 400, (what, answer.text)
            assert set(answer.json()) == {"error", "hint"} and "\n" not in answer.json()["error"], what
        assert http.post(f"/api/v1/runs/{run_id}/events", json={"offset": -1, "lines": start}).status_code == 400
        assert http.get(f"/api/v1/runs/{run_id}/events/offset").json() == {"size": 0}
    assert not (team.home / "runs" / run_id).exists()


def test_blobs_travel_by_content_hash(team):
    """HEAD says whether the server has a blob; PUT stores it only if its bytes have that hash."""
    data = os.urandom(3000)
    blob = hashlib.sha256(data).hexdigest() + ".bin"
    with team.client("ed") as http:
        assert http.head(f"/api/v1/blobs/{blob}").status_code == 404
        wrong = http.put(f"/api/v1/blobs/{blob}", content=data + b"x")
        assert wrong.status_code == 400 and "do not match" in wrong.json()["error"]
        assert http.head(f"/api/v1/blobs/{blob}").status_code == 404
        stored = http.put(f"/api/v1/blobs/{blob}", content=data)
        assert stored.status_code == 200 and stored.json() == {"blob": blob, "size": 3000, "stored": True}
        assert http.head(f"/api/v1/blobs/{blob}").status_code == 200
        assert http.put(f"/api/v1/blobs/{blob}", content=data).json()["stored"] is False
        assert http.put("/api/v1/blobs/..%2F..%2Fx", content=data).status_code in (400, 404)
        assert http.put("/api/v1/blobs/abc", content=data).status_code == 400
    with team.client("vera") as http:
        assert http.put(f"/api/v1/blobs/{blob}", content=data).status_code == 403
    stored_at = team.home / "blobs" / blob[:2] / blob
    assert stored_at.read_bytes() == data


def test_server_killed_mid_run_loses_nothing(tmp_path):
    """kill -9 of the server while a client logs: the client keeps its events in the spool, the
    sender retries, and once the server is back every point arrives, once."""
    home = tmp_path / "server" / ".workbench"
    home.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), "init"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    token = add_user(home, "ed", "editor")
    server = start_server(home)
    server.tokens = {"ed": token}
    port = int(server.url.rsplit(":", 1)[1])
    client = tmp_path / "client"
    env = client_env(client, WORKBENCH_SYNC_TIMEOUT="120", CONNECT_URL=server.url, CONNECT_TOKEN=token)
    proc, id_file = run_logger(client, env, steps=1000, pause=0.004, wait=False)  # wb.connect in the script
    try:
        deadline = time.monotonic() + 60
        while not (id_file.exists() and id_file.read_text() and offset(server, "ed", id_file.read_text()) > 0):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.05)
        run_id = id_file.read_text()
        before = offset(server, "ed", run_id)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        time.sleep(2.0)  # the client logs on meanwhile, into its spool
        assert proc.poll() is None, "the client is still running"
        server = start_server(home, port)
        server.tokens = {"ed": token}
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert out.strip() == "synced", (out, err)
        with server.client("ed") as http:
            run = http.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "finished" and run["creator"] == "ed"
        assert offset(server, "ed", run_id) == spool_events(client, run_id).stat().st_size > before
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    check = subprocess.run(
        [sys.executable, "-c", "import sys, workbench as wb; wb.use(sys.argv[1]); "
         "h = wb.metric_history(sys.argv[2], 'loss'); print(len(h), h.step.nunique())", str(home), run_id],
        capture_output=True, text=True, env=client_env(tmp_path), timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["1000", "1000"]


def test_a_run_logged_while_the_server_is_down_is_sent_later(team, tmp_path):
    """The server unreachable for a whole run: the run ends locally ("syncing", kept in the spool);
    `workbench sync` (or the next process logging to that server) sends it once the server is back."""
    port = int(team.url.rsplit(":", 1)[1])
    team.stop()
    try:
        proc, id_file = run_logger(tmp_path, client_env(tmp_path, team.url, team.tokens["ed"],
                                                        WORKBENCH_SYNC_TIMEOUT="1"), steps=200)  # fmt: skip
        stderr = proc.stderr.read()
        assert proc.returncode == 0, stderr
        assert proc.stdout.read().strip() == "syncing"
        run_id = id_file.read_text()
        assert f"run {run_id} is still syncing to {team.url}" in stderr and "workbench sync" in stderr
    finally:
        team.proc = start_server(team.home, port).proc
    env = client_env(tmp_path, team.url, team.tokens["ed"])
    sync = subprocess.run([str(VENV_BIN / "workbench"), "sync", "--json"], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)  # fmt: skip
    assert sync.returncode == 0, sync.stderr
    [state] = [s for s in json.loads(sync.stdout) if s["run_id"] == run_id]
    assert state["state"] == "synced" and state["sent_bytes"] == state["bytes"] > 0
    assert offset(team, "ed", run_id) == state["bytes"]
    with team.client("ed") as http:
        run = http.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "finished" and run["metrics"] == {"loss": pytest.approx(1 / 200)}


def test_login_whoami_logout(team, tmp_path):
    """A token the server refuses is not saved; a good one is, readable by its owner only."""
    env = client_env(tmp_path)
    workbench = str(VENV_BIN / "workbench")

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([workbench, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60,
                              cwd=tmp_path)  # fmt: skip

    credentials = tmp_path / "config" / "workbench" / "credentials.json"
    bad = cli("login", team.url, "--token-stdin", stdin="wbt_not-a-real-token\n")
    assert bad.returncode == 2
    assert f"The server {team.url} refused the token" in bad.stderr and "workbench login" in bad.stderr
    assert not credentials.exists()
    nobody = cli("whoami")
    assert nobody.returncode == 2 and "Not connected to a team server" in nobody.stderr

    good = cli("login", team.url + "/", "--token-stdin", stdin=team.tokens["ed"] + "\n")
    assert good.returncode == 0, good.stderr
    assert f"Logged in to {team.url} as ed (editor)" in good.stdout
    assert oct(credentials.stat().st_mode & 0o777) == "0o600"
    assert oct(credentials.parent.stat().st_mode & 0o777) == "0o700"
    saved = json.loads(credentials.read_text())
    assert saved["default"] == team.url and saved["servers"][team.url]["token"] == team.tokens["ed"]
    assert not list(credentials.parent.glob("*.tmp"))

    who = cli("whoami")
    assert who.returncode == 0 and who.stdout.strip() == f"ed (editor) on {team.url} (from workbench login)"
    as_json = json.loads(cli("whoami", "--json").stdout)
    assert as_json == {"name": "ed", "role": "editor", "server": team.url, "source": "workbench login"}

    # the saved login is the server scripts log to, with no environment variables
    proc, id_file = run_logger(tmp_path / "script", env, steps=5)
    assert proc.returncode == 0, proc.stderr.read()
    with team.client("ed") as http:
        assert http.get(f"/api/v1/runs/{id_file.read_text()}").json()["creator"] == "ed"

    out = cli("logout")
    assert out.returncode == 0 and f"Logged out of {team.url}" in out.stdout
    assert json.loads(credentials.read_text()) == {"default": None, "servers": {}}
    assert cli("whoami").returncode == 2


def test_which_server_a_process_uses(tmp_path, monkeypatch):
    """The order of `remote.config.resolve`, and the TLS option."""
    from workbench.errors import ValidationError
    from workbench.remote import config
    from workbench.workspace import Workspace, use_workspace

    for name in [k for k in os.environ if k.startswith("WORKBENCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert config.resolve() is None  # nothing configured: the local folder, as ever
    monkeypatch.setenv("WORKBENCH_URL", "http://localhost:1/")
    with pytest.raises(ValidationError, match="no token"):
        config.resolve()
    config.remember("http://localhost:1", "wbt_saved", "ed", "editor")
    assert (config.resolve().url, config.resolve().token) == ("http://localhost:1", "wbt_saved")
    monkeypatch.setenv("WORKBENCH_TOKEN", "wbt_env")
    assert config.resolve().token == "wbt_env" and "wbt_env" not in repr(config.resolve())
    use_workspace(Workspace(tmp_path / "ws"))
    try:
        assert config.resolve() is None  # wb.use / wb.init in this process: that folder
        config.use_remote(config.remote_for("https://example.org:8443", "wbt_x"))
        assert config.resolve().url == "https://example.org:8443"  # wb.connect beats everything
        assert config.resolve().host == "example.org_8443"
    finally:
        config.use_remote(None)
        use_workspace(None)
    monkeypatch.delenv("WORKBENCH_URL")
    assert config.resolve().source == "workbench login"
    assert config.forget() == "http://localhost:1" and config.resolve() is None
    with pytest.raises(ValidationError, match="Invalid server URL"):
        config.normalize_url("localhost:8686")
    monkeypatch.setenv("WORKBENCH_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="CA bundle"):
        config.verify_option()
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("WORKBENCH_CA_BUNDLE", str(tmp_path / "ca.pem"))
    assert config.verify_option() == str(tmp_path / "ca.pem") and config.verify_option(False) is False


def test_a_maintainer_may_not_add_to_a_run_still_being_logged(team):
    """Until its owner's run has ended, nobody else appends to it (its client counts the bytes as its own)."""
    run_id = "20261201-120000-5ee0ab1e"
    start = json.dumps({"t": "start", "run_id": run_id, "experiment": "e", "kind": "interactive", "status": "queued",
                        "created_at": "2026-12-01T12:00:00+00:00", "creator": "somebody"}) + "\n"  # fmt: skip
    tag = '{"t": "tag", "key": "k", "value": "v"}\n'
    with team.client("ed") as http:
        assert http.post(f"/api/v1/runs/{run_id}/events", json={"offset": 0, "lines": start}).status_code == 200
    with team.client("max") as http:
        refused = http.post(f"/api/v1/runs/{run_id}/events", json={"offset": len(start), "lines": tag})
    assert refused.status_code == 403 and "still being logged by its creator ed" in refused.json()["error"]
