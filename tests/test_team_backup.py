"""Online backup of a team server's workspace (`workbench server backup`, `POST /api/v1/backup`), as real
processes on loopback: an admin backs up while an editor keeps writing through the API, and the backup is a
clean workspace at one point in time that another server serves; non-admins and bad destinations are
refused with nothing written; the same code backs up a stopped server's folder (`--home`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import duckdb
import pytest
from conftest import VENV_BIN
from test_team_server import add_user, make_workspace, start_server, workbench_cli

pytestmark = pytest.mark.slow

USERS = {"ada": "admin", "ed": "editor", "vera": "viewer"}


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    home = tmp_path_factory.mktemp("backup") / ".workbench"
    make_workspace(home, wine_frame)
    tokens = {name: add_user(home, name, role) for name, role in USERS.items()}
    server = start_server(home)
    server.tokens = tokens
    yield server
    server.stop()


def backup_cli(server, user: str, *args: str, timeout: float = 300):
    """`workbench server backup ARGS` as `user`, against `server` (WORKBENCH_URL + WORKBENCH_TOKEN)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKBENCH_")}
    env.update(COLUMNS="200", NO_COLOR="1", WORKBENCH_URL=server.url, WORKBENCH_TOKEN=server.tokens[user])
    return subprocess.run([str(VENV_BIN / "workbench"), "server", "backup", *args], capture_output=True, text=True,
                          env=env, cwd=server.home.parent, timeout=timeout)  # fmt: skip


def backups_root(server) -> Path:
    return server.home.parent / ".workbench-backups"


def doctor(home: Path) -> list[dict]:
    proc = workbench_cli(home, "doctor", "--json")
    findings = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [f for f in findings if f["check"] != "fork servers"]


class Writer(threading.Thread):
    """An editor writing through the API in a loop: a new snapshot version, then an alias move."""

    def __init__(self, server) -> None:
        super().__init__(daemon=True)
        self.server, self.stop, self.errors = server, threading.Event(), []
        self.snapshots = self.moves = 0

    def run(self) -> None:
        with self.server.client("ed") as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                answer = http.post("/api/v1/snapshots/loop?format=csv", content=f"a,b\n{i},{i * 2}\n{i + 1},x\n")
                if answer.status_code != 201:
                    self.errors.append((answer.status_code, answer.text))
                else:
                    self.snapshots += 1
                answer = http.put("/api/v1/models/wine/aliases/staging", json={"version": 1 + i % 2})
                if answer.status_code != 200:
                    self.errors.append((answer.status_code, answer.text))
                else:
                    self.moves += 1


def test_backup_while_an_editor_writes(team, tmp_path):
    writer = Writer(team)
    writer.start()
    try:
        while writer.snapshots < 3:  # writes are under way before the backup starts
            threading.Event().wait(0.05)
        proc = backup_cli(team, "ada", "nightly", "--json")
        after_backup = writer.snapshots
        while writer.snapshots < after_backup + 2:  # and go on after it
            threading.Event().wait(0.05)
    finally:
        writer.stop.set()
        writer.join(60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not writer.errors, writer.errors[:3]
    result = json.loads(proc.stdout)
    dest = backups_root(team) / "nightly"
    assert result["path"] == str(dest) and result["damaged"] == []
    assert not [p for p in backups_root(team).iterdir() if p.name != "nightly"]  # no staging folder left

    # Clean, and at one point in time: what the audit log up to the backup's last entry says happened.
    findings = doctor(dest)
    assert all(f["severity"] == "ok" for f in findings), findings
    con = duckdb.connect(str(dest / "catalog.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT max(id) FROM audit").fetchone()[0] == result["audit_id"]
        registered = con.execute("SELECT count(*) FROM audit WHERE action = 'snapshot.registered' "
                                 "AND target LIKE 'loop@%'").fetchone()[0]  # fmt: skip
        versions = con.execute("SELECT count(*), max(version) FROM snapshots WHERE name = 'loop'").fetchone()
        assert registered == versions[0] == versions[1] >= 3
        assert versions[0] < writer.snapshots  # the writes after the point in time are not in it
        last_move = con.execute("SELECT details FROM audit WHERE action = 'alias.moved' AND target = "
                                "'model:wine@staging' ORDER BY id DESC LIMIT 1").fetchone()[0]  # fmt: skip
        staging = con.execute("SELECT version FROM model_aliases WHERE name = 'wine' AND alias = 'staging'").fetchone()
        assert json.loads(last_move)["version"] == staging[0]
        wanted = con.execute("SELECT blob, file_sha256 FROM snapshots UNION ALL "
                             "SELECT blob, NULL FROM model_versions").fetchall()  # fmt: skip
        users = con.execute("SELECT count(*) FROM server_users").fetchone()[0]
    finally:
        con.close()
    for blob, file_sha256 in wanted:
        path = dest / "blobs" / blob[:2] / blob
        assert hashlib.sha256(path.read_bytes()).hexdigest() == (file_sha256 or blob.split(".")[0])
    assert users == len(USERS)

    # Audited under the admin's name.
    with team.client("vera") as http:
        entries = http.get("/api/v1/audit", params={"action": "workspace.backed_up"}).json()
    entries = entries if isinstance(entries, list) else entries.get("entries", entries)
    assert [(e["actor"], e["target"]) for e in entries] == [("ada", "backup:nightly")], entries

    # A server started on the backup serves it, to the same tokens.
    restored = start_server(dest)
    try:
        with restored.client() as anon:
            anon.headers["Authorization"] = f"Bearer {team.tokens['vera']}"
            shown = anon.get("/api/v1/snapshots/loop").json()
            alias = anon.get("/api/v1/models/wine/aliases/staging").json()
            runs = anon.get("/api/v1/runs").json()
        assert shown["version"] == versions[1], shown
        assert alias["version"] == staging[0], alias
        assert len(runs if isinstance(runs, list) else runs["runs"]) >= 2
    finally:
        restored.stop()


def test_backup_needs_admin(team):
    for user in ("ed", "vera"):
        with team.client(user) as http:
            answer = http.post("/api/v1/backup", json={"name": f"by-{user}"})
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"] == f"backing up the workspace needs role admin; you are {USERS[user]}."
    proc = backup_cli(team, "ed", "by-cli")
    assert proc.returncode != 0 and "needs role admin; you are editor" in proc.stderr, proc.stderr
    root = backups_root(team)
    assert not root.exists() or not [p for p in root.iterdir() if p.name.startswith(("by-", ".by-"))]


@pytest.mark.parametrize("name", ["../escape", "a/b", "/tmp/x", ".hidden", ""])
def test_bad_backup_names_are_refused(team, name):
    before = sorted(p.name for p in team.home.parent.iterdir())
    with team.client("ada") as http:
        answer = http.post("/api/v1/backup", json={"name": name})
    assert answer.status_code == 400, answer.text
    assert "Invalid backup name" in answer.json()["error"] and "not a path" in answer.json()["hint"]
    assert sorted(p.name for p in team.home.parent.iterdir() if p.name != ".workbench-backups") == [
        n for n in before if n != ".workbench-backups"]  # fmt: skip
    assert not (team.home.parent / "escape").exists()


def test_existing_folder_is_refused(team):
    taken = backups_root(team) / "taken"
    taken.mkdir(parents=True, exist_ok=True)
    (taken / "keep.txt").write_text("mine")
    proc = backup_cli(team, "ada", "taken")
    assert proc.returncode != 0
    assert "the folder is not empty" in proc.stderr and "never overwrites" in proc.stderr, proc.stderr
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_folder_backup_of_a_stopped_workspace(team, tmp_path, wine_frame):
    # While the server holds the workspace, a direct backup is refused at once and says who holds it.
    proc = workbench_cli(team.home, "server", "backup", str(tmp_path / "direct"), "--home", str(team.home))
    assert proc.returncode != 0 and "held open by the workbench server" in proc.stderr, proc.stderr
    assert not (tmp_path / "direct").exists()

    home = tmp_path / "stopped" / ".workbench"
    make_workspace(home, wine_frame)
    inside = workbench_cli(home, "server", "backup", str(home / "copy"), "--home", str(home))
    assert inside.returncode != 0 and "must be outside the workspace folder" in inside.stderr, inside.stderr
    (tmp_path / "empty").mkdir()
    proc = workbench_cli(home, "server", "backup", str(tmp_path / "empty"), "--home", str(home))
    assert proc.returncode == 0, proc.stderr
    assert "Backed up to" in proc.stdout
    assert all(f["severity"] == "ok" for f in doctor(tmp_path / "empty"))
    snapshots = workbench_cli(tmp_path / "empty", "snapshot", "list", "--json")
    assert snapshots.returncode == 0 and "wine" in snapshots.stdout, snapshots.stdout + snapshots.stderr
