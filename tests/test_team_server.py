"""The team server (`workbench server`), as real processes on loopback: users and tokens made with the
CLI, roles enforced on every route (viewer, editor and maintainer each in a client process of their
own), the audit log naming who did what, revocation, tokens never stored in clear, TLS; and the
catalog's held mode (many reader threads and writers in one process) that the server runs on.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import VENV_BIN

import workbench as wb

pytestmark = pytest.mark.slow

ROLES = {"vera": "viewer", "ed": "editor", "max": "maintainer", "ada": "admin"}

# A client process: the requests on stdin as [method, path, body], the answers on stdout as [status, json].
CLIENT = r"""
import json, os, sys
import httpx

answers = []
with httpx.Client(base_url=os.environ["WB_URL"], timeout=60,
                  headers={"Authorization": "Bearer " + os.environ["WB_TOKEN"]}) as http:
    for method, path, body in json.load(sys.stdin):
        response = http.request(method, path, json=body)
        answers.append([response.status_code, response.json()])
print(json.dumps(answers))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def workbench_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(COLUMNS="200", NO_COLOR="1")
    return subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), *args], capture_output=True, text=True,
                          env=env, cwd=home.parent, timeout=timeout)  # fmt: skip


def add_user(home: Path, name: str, role: str) -> str:
    proc = workbench_cli(home, "server", "user", "add", name, "--role", role)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    assert token.startswith("wbt_") and len(token) > 40 and "\n" not in token, proc.stdout
    assert f"Added user {name} ({role})" in proc.stderr
    return token


@dataclass
class Server:
    home: Path
    url: str
    proc: subprocess.Popen
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)
    verify: bool | ssl.SSLContext = True

    def client(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, verify=self.verify)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def start_server(home: Path, *options: str, scheme: str = "http", verify: bool | ssl.SSLContext = True,
                 port: int | None = None) -> Server:  # fmt: skip
    """`workbench server` on `port` (a free one by default; the same again after a restart), once /health answers."""
    port = port or free_port()
    log = home.parent / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(VENV_BIN / "workbench"), "server", "--home", str(home), "--port", str(port),
                                 *options], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # fmt: skip
    server = Server(home, f"{scheme}://127.0.0.1:{port}", proc, log, verify=verify)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited {proc.returncode}:\n{log.read_text()}"
        try:
            with server.client() as http:
                if http.get("/health").status_code == 200:
                    return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError(f"the server did not answer /health within 60 s:\n{log.read_text()}")


def empty_team(home: Path, users: dict[str, str]) -> Server:
    """A new empty workspace at `home` (`workbench init`), `users` (name -> role) added, served by a
    started server whose `tokens` are the users' tokens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    subprocess.run([str(VENV_BIN / "workbench"), "--home", str(home), "init"], check=True, env=env,
                   capture_output=True)  # fmt: skip
    tokens = {name: add_user(home, name, role) for name, role in users.items()}
    server = start_server(home)
    server.tokens = tokens
    return server


def make_workspace(home: Path, wine_frame) -> dict[str, str]:
    """A workspace with the wine snapshot, two finished runs, and model wine: v1 (production) and v2 (staging)."""
    from model_fixtures import train_run

    from workbench.workspace import init_workspace, use_workspace

    use_workspace(init_workspace(home))
    try:
        wb.snapshot("wine", wine_frame)
        weak, strong = train_run(C=0.001), train_run(C=10.0)
        wb.promote(weak, "wine", alias="production")
        wb.promote(strong, "wine", alias="staging")
    finally:
        use_workspace(None)
    return {"weak": weak, "strong": strong}


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    home = tmp_path_factory.mktemp("team") / ".workbench"
    runs = make_workspace(home, wine_frame)
    tokens = {name: add_user(home, name, role) for name, role in ROLES.items()}
    server = start_server(home)
    server.tokens = tokens
    server.runs = runs  # type: ignore[attr-defined]
    yield server
    server.stop()


def as_processes(server: Server, scripts: dict[str, list[list]]) -> dict[str, list[list]]:
    """Each user's requests from a client process of their own, all at once; their answers by user."""
    procs = {}
    for user, requests in scripts.items():
        env = dict(os.environ, WB_URL=server.url, WB_TOKEN=server.tokens[user])
        procs[user] = subprocess.Popen([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        procs[user].stdin.write(json.dumps(requests))
        procs[user].stdin.close()
    answers = {}
    for user, proc in procs.items():
        out, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err
        answers[user] = json.loads(out)
    return answers


# ---------------------------------------------------------------------------------------------- tokens


def test_no_route_answers_without_a_token_but_health(team):
    with team.client("vera") as http:
        spec = http.get("/api/v1/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/snapshots", "/api/v1/snapshots/{ref}",
            "/api/v1/models", "/api/v1/models/{name}", "/api/v1/models/{name}/aliases/{alias}",
            "/api/v1/models/{name}/aliases/{alias}/rollback", "/api/v1/models/{name}/gates", "/api/v1/audit",
            "/api/v1/users", "/api/v1/users/{name}", "/api/v1/me", "/health"} <= set(paths)  # fmt: skip
    checked = 0
    with team.client() as anonymous:
        assert anonymous.get("/health").json() == {"status": "ok"}
        for path, methods in paths.items():
            if path == "/health":
                continue
            url = path.replace("{run_id}", team.runs["weak"]).replace("{ref}", "wine").replace("{name}", "wine")
            url = url.replace("{alias}", "staging")
            for method in methods:
                for headers in ({}, {"Authorization": "Bearer wbt_not-a-real-token"}, {"Authorization": "Basic eDp5"}):
                    response = anonymous.request(method.upper(), url, headers=headers, json={"version": 1})
                    assert response.status_code == 401, (method, url, headers, response.text)
                    assert response.headers["www-authenticate"] == "Bearer"
                    if method != "head":  # a HEAD answer has no body
                        assert response.json()["error"] and "Traceback" not in response.text
                    checked += 1
        for path in ("/api/v1/openapi.json", "/api/v1/docs"):
            assert anonymous.get(path).status_code == 401
    assert checked >= 3 * 14
    for path, methods in paths.items():  # the docs say which role each route needs
        if path != "/health":
            assert all("Needs role: **" in m["description"] for m in methods.values()), path


def test_roles_are_enforced_for_three_users_in_their_own_processes(team):
    run_id = team.runs["weak"]
    reads = [["GET", "/api/v1/runs", None], ["GET", f"/api/v1/runs/{run_id}", None],
             ["GET", "/api/v1/snapshots", None], ["GET", "/api/v1/snapshots/wine@1", None],
             ["GET", "/api/v1/models", None], ["GET", "/api/v1/models/wine", None],
             ["GET", "/api/v1/audit?limit=5", None], ["GET", "/api/v1/me", None]]  # fmt: skip
    staging = ["PUT", "/api/v1/models/wine/aliases/staging", {"version": 1, "reason": "try v1"}]
    production = ["PUT", "/api/v1/models/wine/aliases/production", {"version": 2, "reason": "v2 is better"}]
    rollback = ["POST", "/api/v1/models/wine/aliases/production/rollback", {"reason": "v2 misbehaves"}]
    gates = ["PUT", "/api/v1/models/wine/gates", {"gates": {"metrics": {"accuracy": {"min": 0.5}}}}]
    users = ["GET", "/api/v1/users", None]
    answers = as_processes(team, {
        "vera": [*reads, staging, production, rollback, gates, users],
        "ed": [staging, production, rollback, gates, users],
        "max": [production, rollback, gates, users],
    })  # fmt: skip

    viewer = answers["vera"]
    assert [status for status, _ in viewer[: len(reads)]] == [200] * len(reads), viewer
    listed, one_run, _, snapshot, models, model, _, me = (body for _, body in viewer[: len(reads)])
    assert {r["run_id"] for r in listed} == set(team.runs.values()) and all(r["status"] == "finished" for r in listed)
    assert one_run["run_id"] == run_id and one_run["metrics"]["accuracy"] > 0
    assert snapshot["ref"] == "wine@1" and snapshot["row_count"] == 178
    assert {c["name"] for c in snapshot["columns"]} >= {"alcohol", "target"} and "alcohol" in snapshot["profile"]
    assert models[0]["name"] == "wine" and len(model["versions"]) == 2
    assert me == {"name": "vera", "role": "viewer"}
    assert [(s, b["error"]) for s, b in viewer[len(reads):]] == [
        (403, "moving alias 'staging' needs role editor; you are viewer."),
        (403, "moving alias 'production' needs role maintainer; you are viewer."),
        (403, "rolling back needs role maintainer; you are viewer."),
        (403, "editing gates needs role maintainer; you are viewer."),
        (403, "managing users needs role admin; you are viewer."),
    ]  # fmt: skip

    editor = answers["ed"]
    assert editor[0][0] == 200 and editor[0][1]["version"] == 1 and editor[0][1]["alias"] == "staging"
    assert [(s, b["error"]) for s, b in editor[1:]] == [
        (403, "moving alias 'production' needs role maintainer; you are editor."),
        (403, "rolling back needs role maintainer; you are editor."),
        (403, "editing gates needs role maintainer; you are editor."),
        (403, "managing users needs role admin; you are editor."),
    ]  # fmt: skip
    assert all("role" in body["hint"] for _, body in editor[1:])

    maintainer = answers["max"]
    assert [s for s, _ in maintainer] == [200, 200, 200, 403], maintainer
    assert maintainer[0][1]["version"] == 2 and maintainer[1][1]["version"] == 1  # moved, then rolled back
    assert maintainer[2][1]["gates"] == {"metrics": {"accuracy": {"min": 0.5}}}

    with team.client("vera") as http:
        moves = http.get("/api/v1/audit", params={"target": "model:wine@production", "action": "alias.moved"}).json()
        staged = http.get("/api/v1/audit", params={"target": "model:wine@staging", "action": "alias.moved"}).json()
        gate_set = http.get("/api/v1/audit", params={"model": "wine", "action": "model.gates.set"}).json()
        history = http.get("/api/v1/models/wine").json()["alias_history"]
    assert [(e["actor"], e["details"]["version"], e["reason"]) for e in moves[-2:]] == [
        ("max", 2, "v2 is better"), ("max", 1, "v2 misbehaves")]  # fmt: skip
    assert moves[-1]["details"]["rollback"] is True
    assert [(e["actor"], e["details"]["version"]) for e in staged][-1] == ("ed", 1)
    assert gate_set[-1]["actor"] == "max"
    assert {h["actor"] for h in history} >= {"ed", "max"}
    # the same entries, read through the CLI once the server is stopped, are in test_tokens_are_stored_hashed


def test_revoked_token_is_refused_at_once_and_users_are_managed_by_admins(team):
    with team.client("ada") as admin:
        created = admin.post("/api/v1/users", json={"name": "temp", "role": "editor"})
        assert created.status_code == 201, created.text
        token = created.json()["token"]
        assert created.json()["created_by"] == "ada"
        with httpx.Client(base_url=team.url, headers={"Authorization": f"Bearer {token}"}) as temp:
            assert temp.get("/api/v1/me").json() == {"name": "temp", "role": "editor"}
            revoked = admin.delete("/api/v1/users/temp")
            assert revoked.status_code == 200 and revoked.json()["active"] is False
            refused = temp.get("/api/v1/me")
            assert refused.status_code == 401 and refused.json()["error"] == "The bearer token is unknown or revoked."
        listed = {u["name"]: u for u in admin.get("/api/v1/users").json()}
        assert set(listed) == {*ROLES, "temp"} and not listed["temp"]["active"]
        assert all("token" not in u and "token_hash" not in u for u in listed.values())
        assert admin.post("/api/v1/users", json={"name": "ada", "role": "viewer"}).json()["error"] == (
            "User 'ada' already exists.")  # fmt: skip
        assert admin.post("/api/v1/users", json={"name": "x y", "role": "viewer"}).json()["error"] == (
            "Invalid user name 'x y'.")  # fmt: skip
        assert admin.post("/api/v1/users", json={"name": "zed", "role": "root"}).json()["error"] == (
            "Unknown role 'root'.")  # fmt: skip
        assert admin.delete("/api/v1/users/nobody").status_code == 404
        audit = admin.get("/api/v1/audit", params={"target": "user:temp"}).json()
    assert [(e["action"], e["actor"]) for e in audit] == [("user.added", "ada"), ("user.revoked", "ada")]


# ---------------------------------------------------------------------------------------------- the API


def test_runs_query_takes_the_jupyter_parameters_and_messages(team):
    with team.client("vera") as http:
        best = http.get("/api/v1/runs", params={"order_by": "metrics.accuracy DESC", "limit": "1"}).json()
        assert len(best) == 1 and best[0]["run_id"] == team.runs["strong"]
        params = {"filter": "params.C < 1", "format": "columns"}
        columns = http.get("/api/v1/runs", params=params).json()
        assert columns["rows"] == 1 and "creator" in columns["columns"] and "metrics.accuracy" in columns["columns"]
        for params, message in [
            ({"limit": "x"}, "limit must be a whole number from 0 to 100,000, not 'x'."),
            ({"limit": "100001"}, "limit must be a whole number from 0 to 100,000, not 100001."),
            ({"format": "csv"}, "format must be 'records' or 'columns', not 'csv'."),
        ]:
            response = http.get("/api/v1/runs", params=params)
            assert (response.status_code, response.json()["error"]) == (400, message)
        bad_filter = http.get("/api/v1/runs", params={"filter": "metrics.accuracy >"})
        assert bad_filter.status_code == 400 and bad_filter.json()["error"]
        assert http.get("/api/v1/runs/not-a-run").status_code == 400
        assert http.get("/api/v1/audit", params={"since": "yesterday"}).json()["error"] == "Invalid since 'yesterday'."
        assert http.get("/api/v1/audit", params={"model": "wine", "target": "x"}).json()["error"] == (
            "Give model or target, not both.")  # fmt: skip


def test_errors_are_json_with_a_hint_never_a_traceback(team):
    with team.client("max") as http:
        for method, path, body, status, message in [
            ("GET", "/api/v1/models/nope", None, 404, "No model named 'nope'."),
            ("GET", "/api/v1/snapshots/wine@9", None, 404, "Snapshot wine@9 does not exist."),
            ("GET", "/api/v1/models/bad%20name", None, 400, "Invalid model name 'bad name'."),
            ("PUT", "/api/v1/models/wine/aliases/bad%20alias", {"version": 1}, 400, "Invalid alias 'bad alias'."),
            ("PUT", "/api/v1/models/wine/aliases/staging", {"version": 7}, 404, "Model 'wine' has no version 7."),
            ("PUT", "/api/v1/models/wine/aliases/staging", {"version": "1"}, 400, None),
            ("PUT", "/api/v1/models/wine/aliases/staging", {"version": 1, "extra": 1}, 400, None),
            ("PUT", "/api/v1/models/wine/gates", {"gates": {"speed": 1}}, 400, None),
        ]:
            response = http.request(method, path, json=body)
            assert response.status_code == status, (path, body, response.text)
            answer = response.json()
            assert set(answer) >= {"error", "hint"} and "Traceback" not in response.text
            if message:
                assert answer["error"] == message
        assert http.put("/api/v1/models/wine/aliases/staging", json={"version": 0}).json()["error"] == (
            "Invalid request: version: Input should be greater than or equal to 1.")  # fmt: skip
        json_type = {"content-type": "application/json"}
        huge = http.post("/api/v1/users", content=b"x" * (2 * 1024 * 1024), headers=json_type)
        assert huge.status_code == 413 and "larger than the limit" in huge.json()["error"]
        assert http.get("/api/v1/no-such-route").status_code == 404


# ---------------------------------------------------------------------------------------------- the CLI


def test_user_add_refuses_bad_names_and_roles_in_one_line(tmp_path):
    home = tmp_path / ".workbench"
    wb.init(home)
    wb.use(None)
    for args, message in [
        (("bad name", "--role", "viewer"), "Error: Invalid user name 'bad name'."),
        (("9lives", "--role", "viewer"), "Error: Invalid user name '9lives'."),
        (("ann", "--role", "root"), "Error: Unknown role 'root'."),
        (("ann", "--role", "Admin"), "Error: Unknown role 'Admin'."),
    ]:
        proc = workbench_cli(home, "server", "user", "add", *args)
        assert proc.returncode == 2 and proc.stdout == "", proc
        lines = proc.stderr.strip().splitlines()
        assert lines[0] == message and len(lines) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "Roles, least to most: viewer, editor, maintainer, admin." in proc.stderr
    add_user(home, "ann", "admin")
    again = workbench_cli(home, "server", "user", "add", "ann", "--role", "viewer")
    assert again.returncode == 2 and again.stderr.startswith("Error: User 'ann' already exists.")
    assert workbench_cli(home, "server", "user", "revoke", "nobody").stderr.startswith("Error: No user named 'nobody'.")
    tls = workbench_cli(home, "server", "--certfile", str(tmp_path / "cert.pem"))
    assert tls.returncode == 2 and "Give --certfile and --keyfile together" in tls.stderr


def test_tokens_are_stored_hashed_and_the_held_catalog_refuses_other_processes_at_once(tmp_path):
    home = tmp_path / ".workbench"
    wb.init(home)
    wb.use(None)
    token = add_user(home, "ann", "admin")
    server = start_server(home)
    server.tokens = {"ann": token}
    try:
        with server.client("ann") as http:
            second = http.post("/api/v1/users", json={"name": "bo", "role": "viewer"}).json()["token"]
        start = time.monotonic()
        busy = workbench_cli(home, "server", "user", "list")
        assert time.monotonic() - start < 30, "the CLI waited for the lock instead of being told who holds it"
        assert busy.returncode == 3 and "is held open by the workbench server at http://127.0.0.1:" in busy.stderr
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log.read_text()
    assert not (home / "catalog.duckdb.holder").exists()
    stored = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("catalog.duckdb"))
    for secret in (token, second):
        assert secret.encode() not in stored and secret[4:].encode() not in stored
    listed = workbench_cli(home, "server", "user", "list", "--json")
    assert listed.returncode == 0 and token not in listed.stdout
    assert {u["name"]: u["created_by"] for u in json.loads(listed.stdout)}["bo"] == "ann"
    import duckdb

    with duckdb.connect(str(home / "catalog.duckdb"), read_only=True) as con:
        hashes = dict(con.execute("SELECT name, token_hash FROM server_users").fetchall())
        columns = con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall()
        for table, column in columns:  # no cell of any table holds a token (the file may compress text)
            cell = f'CAST("{column}" AS VARCHAR)'
            query = f'SELECT count(*) FROM "{table}" WHERE contains({cell}, ?) OR contains({cell}, ?)'
            assert con.execute(query, [token[4:], second[4:]]).fetchone()[0] == 0, (table, column)
    assert hashes == {
        name: hashlib.sha256(secret.encode()).hexdigest() for name, secret in (("ann", token), ("bo", second))
    }
    newest = json.loads(workbench_cli(home, "audit", "--json", "--limit", "1").stdout)[0]
    assert (newest["actor"], newest["action"], newest["target"]) == ("ann", "user.added", "user:bo")


def test_tls_with_certfile_and_keyfile(tmp_path):
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    keyfile.chmod(0o600)
    home = tmp_path / ".workbench"
    wb.init(home)
    wb.use(None)
    token = add_user(home, "ann", "viewer")
    trusted = ssl.create_default_context(cafile=str(certfile))
    server = start_server(home, "--certfile", str(certfile), "--keyfile", str(keyfile), scheme="https", verify=trusted)
    server.tokens = {"ann": token}
    try:
        with server.client("ann") as http:
            assert http.get("/api/v1/me").json() == {"name": "ann", "role": "viewer"}
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url.replace("https", "http") + "/health", timeout=5)
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------- held mode


def test_held_catalog_serves_concurrent_readers_and_writers_without_errors(tmp_path, wine_frame):
    from workbench.catalog import connect, transaction
    from workbench.catalog.connection import hold, is_held, release, retry_conflicts
    from workbench.identity import acting_as
    from workbench.models.registry import get_model, list_models, set_alias
    from workbench.runs.query import runs
    from workbench.server.users import add_user as add
    from workbench.server.users import authenticate
    from workbench.workspace import Workspace

    home = tmp_path / ".workbench"
    make_workspace(home, wine_frame)
    ws = Workspace(home)
    hold(ws, "this test")
    errors: list[BaseException] = []
    reads = [0]
    stop = threading.Event()
    try:
        assert is_held(ws) and (home / "catalog.duckdb.holder").exists()
        _, token = add(f"w{0}", "editor", ws)

        def reader() -> None:
            try:
                while not stop.is_set():
                    assert len(runs(ws=ws)) == 2
                    assert list_models(ws)[0]["name"] == "wine"
                    assert authenticate(token, ws) is not None
                    reads[0] += 1
            except BaseException as exc:
                errors.append(exc)

        def writer(number: int) -> None:
            try:
                with acting_as(f"writer{number}"):
                    for index in range(15):
                        version = 1 + (index + number) % 2
                        retry_conflicts(lambda v=version: set_alias("wine", "staging", v, ws=ws))
                    add(f"user{number}", "viewer", ws)
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(12)]
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=120)
        stop.set()
        for thread in readers:
            thread.join(timeout=60)
        assert not errors, errors[:3]
        assert reads[0] >= 12
        moves = [h for h in get_model("wine", ws)["alias_history"] if h["alias"] == "staging"]
        assert {h["actor"] for h in moves} >= {"writer0", "writer1", "writer2"}

        # a reader never waits for a writer: a read finishes while a write transaction stays open
        in_transaction, done = threading.Event(), threading.Event()

        def slow_write() -> None:
            with transaction(ws) as con:
                con.execute("UPDATE models SET description = 'changing' WHERE name = 'wine'")
                in_transaction.set()
                done.wait(10)

        slow = threading.Thread(target=slow_write)
        slow.start()
        assert in_transaction.wait(10)
        started = time.monotonic()
        with connect(ws) as con:
            seen = con.execute("SELECT description FROM models WHERE name = 'wine'").fetchone()[0]
        waited = time.monotonic() - started
        done.set()
        slow.join(timeout=10)
        assert seen != "changing" and waited < 1.0  # the committed state, at once
    finally:
        stop.set()
        release(ws)
    assert not is_held(ws) and not (home / "catalog.duckdb.holder").exists()
    with connect(ws) as con:  # the embedded default again
        assert con.execute("SELECT description FROM models WHERE name = 'wine'").fetchone()[0] == "changing"


def test_retry_conflicts_retries_only_write_conflicts():
    from workbench.catalog.connection import retry_conflicts
    from workbench.errors import ValidationError, WriteConflictError

    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise WriteConflictError("conflict")
        return "done"

    assert retry_conflicts(flaky) == "done" and len(calls) == 3
    with pytest.raises(WriteConflictError):
        retry_conflicts(lambda: (_ for _ in ()).throw(WriteConflictError("always")), attempts=2)
    calls.clear()

    def invalid() -> None:
        calls.append(1)
        raise ValidationError("no")

    with pytest.raises(ValidationError):
        retry_conflicts(invalid)
    assert len(calls) == 1


def test_acting_as_overrides_the_user_for_its_context_only(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    from contextvars import copy_context

    from workbench.identity import acting_as, current_user

    monkeypatch.setenv("WORKBENCH_USER", "os-user")
    with acting_as("ann"):
        assert current_user() == "ann"
        context = copy_context()
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(context.run, current_user).result() == "ann"  # as the server's worker threads
            assert pool.submit(current_user).result() == "os-user"  # a thread without the request's context
    assert current_user() == "os-user"


def test_an_app_with_an_unguarded_route_is_refused(tmp_path, monkeypatch):
    from fastapi import APIRouter

    from workbench.server import app as server_app
    from workbench.workspace import Workspace

    leaky = APIRouter()

    @leaky.get("/secrets")
    def secrets() -> dict:
        return {}

    class Leaky:
        router = leaky

    monkeypatch.setattr(server_app, "ROUTERS", (*server_app.ROUTERS, Leaky))
    with pytest.raises(RuntimeError, match=r"/api/v1/secrets has no role dependency"):
        server_app.create_app(Workspace(tmp_path))
