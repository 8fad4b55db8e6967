"""Snapshots through the library against a team server (issue 18): `wb.snapshot`, `wb.load_snapshot`,
`wb.list_snapshots`, `wb.sql`, diffs, exports and the `workbench snapshot` CLI in client processes
that have no workspace, only the server's URL and a token (`remote.dispatch` sends the calls to
`RemoteStore`), answering the same types as a workspace folder; data downloaded once into the
client's cache by sha256; and a notebook run on a client reading a snapshot with its lineage
recorded on the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import VENV_BIN, write_notebook
from test_team_logging import client_env
from test_team_server import add_user, start_server

import workbench as wb

pytestmark = pytest.mark.slow

FIRST = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [0.5, 1.5, 2.5]})
QUERY = "select name, score * 2 as doubled from people where id > 1 order by id"
SECOND = pd.DataFrame({"id": [1, 2, 4, 5], "name": ["a", "B", "d", "e"], "score": [0.5, 1.0, 4.0, None]})

# A client process: the editor registers, reads, diffs, queries and exports; prints what it saw as JSON.
EDITOR = r"""
import json, os, sys
import pandas as pd
import workbench as wb
from workbench.errors import ValidationError, WorkbenchError
from workbench.remote.client import Client
from workbench.snapshots import store
from workbench.snapshots.differ import SnapshotDiff, diff
from workbench.snapshots.store import Snapshot

downloads = []
stream = Client.stream
Client.stream = lambda self, path: (downloads.append(path), stream(self, path))[1]
first = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [0.5, 1.5, 2.5]})
out = {}

def dtypes(frame):
    return {c: str(t) for c, t in frame.dtypes.items()}

one = wb.snapshot("people", first, description="first cut")
again = wb.snapshot("people", first)
two = wb.snapshot("people", sys.argv[1], expect={"not_null": ["id"]})
out["registered"] = [(one.ref, one.created, type(one).__name__), (again.ref, again.created), (two.ref, two.created)]
try:
    wb.snapshot("people", first.assign(id=[1, None, 3]), expect={"not_null": ["id"]})
except ValidationError as exc:
    out["refused"] = [exc.message, exc.report.to_dict()]
try:
    wb.snapshot("copy", sql="select * from people")
except WorkbenchError as exc:
    out["sql_register"] = [exc.message, exc.hint]
try:
    wb.load_snapshot("people@9")
except WorkbenchError as exc:
    out["missing"] = [type(exc).__name__, exc.message, exc.hint]

snap = store.get("people@1")
out["get"] = [isinstance(snap, Snapshot), snap.ref, snap.description, snap.row_count, snap.created_at.isoformat(),
              len(snap.file_sha256 or "")]
out["list"] = [s.ref for s in store.list_snapshots(all_versions=True)]
out["table"] = wb.list_snapshots().to_dict(orient="records")

frame = wb.load_snapshot("people")
again = wb.load_snapshot("people@2")
out["load"] = [frame.to_dict(orient="list"), dtypes(frame), again.equals(frame), len(downloads)]
out["columns"] = wb.load_snapshot("people@2", columns=["name"]).columns.tolist()
try:
    wb.load_snapshot("people@2", columns=["nope"])
except WorkbenchError as exc:
    out["bad_column"] = exc.message
cached = os.path.join(os.environ["XDG_CACHE_HOME"], "workbench", "snapshots", store.get("people@2").file_sha256)
with open(cached, "r+b") as damaged:
    damaged.write(b"garbage!")
out["after_damage"] = [wb.load_snapshot("people@2").equals(frame), len(downloads)]

changes = diff("people@1", "people@2", key="id")
out["diff"] = [type(changes).__name__, changes.to_dict()]
query = wb.sql(sys.argv[-1])
out["sql"] = [query.to_dict(orient="list"), dtypes(query)]
try:
    wb.sql("select * from read_csv('/etc/passwd')")
except WorkbenchError as exc:
    out["sql_refused"] = exc.message
for target in sys.argv[2:-1]:
    store.export("people@1", target)
print(json.dumps(out, default=str))
"""

# A second client process with the same cache: the data it loads is already there.
READER = r"""
import json
import workbench as wb
from workbench.remote.client import Client
downloads = []
stream = Client.stream
Client.stream = lambda self, path: (downloads.append(path), stream(self, path))[1]
import os
from workbench.runs.events import ENV_PINS
os.environ[ENV_PINS] = json.dumps({"people": 1})
pinned = wb.load_snapshot("people")
print(json.dumps({"rows": len(wb.load_snapshot("people@2")), "pinned": len(pinned), "downloads": downloads}))
"""

VIEWER = r"""
import pandas as pd
import workbench as wb
from workbench.remote.client import PermissionDeniedError
try:
    wb.snapshot("people", pd.DataFrame({"id": [7]}))
except PermissionDeniedError as exc:
    print(exc.message)
print(len(wb.load_snapshot("people@1")))
"""


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    home = tmp_path_factory.mktemp("team-store-snapshots") / ".workbench"
    wb.init(home)
    wb.use(None)
    tokens = {name: add_user(home, name, role) for name, role in {"ed": "editor", "vera": "viewer"}.items()}
    server = start_server(home)
    server.tokens = tokens
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()


def python(env: dict[str, str], script: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def local_frames(tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What a workspace folder answers for the same data (the types the server's clients must match)."""
    from workbench.snapshots.store import load

    ws = wb.init(tmp / ".workbench")
    try:
        wb.snapshot("people", FIRST)
        wb.snapshot("people", SECOND)
        return load("people", ws=ws), wb.sql(QUERY)  # not wb.load_snapshot: no lineage for later runs
    finally:
        wb.use(None)
        del ws


@pytest.fixture(scope="module")
def editor_saw(team, tmp_path_factory) -> dict:
    client = tmp_path_factory.mktemp("laptop")
    SECOND.to_csv(client / "second.csv", index=False)
    env = client_env(client, team.url, team.tokens["ed"])
    out = python(env, EDITOR, str(client / "second.csv"), str(client / "p1.csv"), str(client / "p1.parquet"),
                 QUERY, cwd=client)  # fmt: skip
    saw = json.loads(out)
    saw["client"], saw["env"] = client, env
    return saw


def test_a_client_registers_and_reads_snapshots_with_the_types_of_a_workspace(editor_saw, tmp_path):
    saw = editor_saw
    assert saw["registered"] == [["people@1", True, "Snapshot"], ["people@1", False], ["people@2", True]]
    assert saw["get"][:4] == [True, "people@1", "first cut", 3] and saw["get"][5] == 64
    assert saw["list"] == ["people@1", "people@2"]
    assert [row["ref"] for row in saw["table"]] == ["people@2"] and saw["table"][0]["creator"] == "ed"
    local, local_sql = local_frames(tmp_path)
    values, dtypes, same, _ = saw["load"]
    assert dtypes == {c: str(t) for c, t in local.dtypes.items()}
    assert pd.DataFrame(values).astype(local.dtypes).equals(local) and same
    assert saw["columns"] == ["name"]
    assert saw["bad_column"] == "Snapshot people@2 has no column(s) nope."
    assert saw["sql"][1] == {c: str(t) for c, t in local_sql.dtypes.items()}
    assert pd.DataFrame(saw["sql"][0]).astype(local_sql.dtypes).equals(local_sql)
    assert "SQL refused" in saw["sql_refused"]
    assert saw["missing"][:2] == ["RemoteNotFoundError", "Snapshot people@9 does not exist."]


def test_data_is_downloaded_once_and_a_damaged_copy_again(editor_saw, tmp_path):
    assert editor_saw["load"][3] == 1  # people and people@2: one download
    assert editor_saw["after_damage"] == [True, 2]
    # Another process on the same machine: no download at all, and a rerun's pin is honoured.
    seen = json.loads(python(editor_saw["env"], READER, cwd=tmp_path))
    assert seen["rows"] == 4 and seen["pinned"] == 3
    assert seen["downloads"] == []  # both versions came with the first process (people@1 by its export)
    cache = editor_saw["client"] / "cache" / "workbench" / "snapshots"
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2


def test_expectations_diff_and_export_from_a_client(editor_saw):
    saw = editor_saw
    message, report = saw["refused"]
    assert message.startswith("Snapshot 'people' was not registered: 1 of 1 expectations failed")
    assert report["ok"] is False and report["failures"][0]["expectation"] == "not_null"
    assert saw["list"] == ["people@1", "people@2"]  # nothing registered by the refused upload
    assert "does not register the result of SQL" in saw["sql_register"][0] and "wb.sql(query)" in saw["sql_register"][1]
    kind, changes = saw["diff"]
    assert kind == "SnapshotDiff" and changes["row_count"] == [3, 4] and changes["key"] == ["id"]
    assert (changes["rows_added"], changes["rows_removed"], changes["rows_changed"]) == (2, 1, 1)
    client = saw["client"]
    assert pd.read_csv(client / "p1.csv").equals(FIRST)
    assert pd.read_parquet(client / "p1.parquet").equals(FIRST)


def test_a_viewer_reads_but_cannot_register(team, editor_saw, tmp_path):
    env = client_env(tmp_path, team.url, team.tokens["vera"])
    lines = python(env, VIEWER, cwd=tmp_path).splitlines()
    assert "registering snapshots" in lines[0] and "editor" in lines[0], lines
    assert lines[1] == "3"


def test_the_cli_answers_from_the_server(team, editor_saw, tmp_path):
    env = {**client_env(tmp_path, team.url, team.tokens["ed"]), "COLUMNS": "200", "NO_COLOR": "1"}
    cli = str(VENV_BIN / "workbench")
    shown = subprocess.run([cli, "snapshot", "show", "people@2", "--json"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["row_count"] == 4
    (tmp_path / "third.csv").write_text("id,name,score\n9,z,1.0\n")
    added = subprocess.run([cli, "snapshot", "add", "people", "third.csv"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "Registered people@3: 1 rows, 3 columns" in added.stdout
    assert not (tmp_path / ".workbench").exists()


def test_a_notebook_run_on_a_client_reads_a_snapshot_with_lineage(team, editor_saw, tmp_path):
    nb = write_notebook(tmp_path / "count.ipynb", None,
                        'import workbench as wb\nwb.log_metric("rows", len(wb.load_snapshot("people@2")))')  # fmt: skip
    env = client_env(tmp_path, team.url, team.tokens["ed"])
    done = subprocess.run([str(VENV_BIN / "workbench"), "run", str(nb), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "finished", result
    with team.client("ed") as http:
        run = http.get(f"/api/v1/runs/{result['run_id']}").json()
    assert run["metrics"] == {"rows": 4.0}
    assert run["inputs"] == ["people@2"]
