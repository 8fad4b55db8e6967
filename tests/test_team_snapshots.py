"""Snapshots through the team server, as a real server process on loopback with users made by the CLI:
registering by upload (CSV and Parquet, dedup, roles, names, the upload limit, nothing half-written),
downloading the Parquet file with its hash, diffs equal to the CLI's, and SQL over snapshots that
cannot read or write anything else, over HTTP and for local callers of `wb.sql` alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from test_team_server import Server, add_user, start_server, workbench_cli

import workbench as wb

pytestmark = pytest.mark.slow

UPLOAD_LIMIT = 200_000
PARQUET = {"content-type": "application/vnd.apache.parquet"}
CSV = {"content-type": "text/csv"}
FIRST = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [0.5, 1.5, 2.5]})
SECOND = pd.DataFrame({"id": [1, 2, 4], "name": ["a", "B", "d"], "score": [0.5, 1.0, 4.0]})


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out, index=False)
    return out.getvalue()


def scratch_files(home: Path) -> list[Path]:
    """Files left in the workspace's scratch folder (DuckDB's empty spill folder does not count)."""
    return [p for p in (home / "tmp").rglob("*") if p.is_file()] if (home / "tmp").exists() else []


def new_team(home: Path, **users: str) -> Server:
    wb.init(home)
    wb.use(None)
    from workbench.workspace import Workspace

    Workspace(home).set_setting("max_upload_bytes", UPLOAD_LIMIT)
    tokens = {name: add_user(home, name, role) for name, role in users.items()}
    server = start_server(home)
    server.tokens = tokens
    return server


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    server = new_team(tmp_path_factory.mktemp("team-snapshots") / ".workbench", vera="viewer", ed="editor")
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()


def versions(server: Server, name: str) -> list[int]:
    with server.client("vera") as http:
        listed = http.get("/api/v1/snapshots", params={"name": name, "all_versions": True})
    return [s["version"] for s in listed.json()] if listed.status_code == 200 else []


# ---------------------------------------------------------------------------------------------- upload


def test_editor_uploads_csv_then_parquet_and_identical_content_is_the_same_version(team):
    with team.client("ed") as http:
        first = http.post("/api/v1/snapshots/people", content=csv_bytes(FIRST), headers=CSV,
                          params={"description": "first cut"})  # fmt: skip
        assert first.status_code == 201, first.text
        one = first.json()
        assert (one["ref"], one["created"], one["creator"], one["row_count"]) == ("people@1", True, "ed", 3)
        assert (one["source"], one["description"]) == ("upload (csv)", "first cut")
        assert [c["name"] for c in one["columns"]] == ["id", "name", "score"]

        second = http.post("/api/v1/snapshots/people", content=parquet_bytes(SECOND), headers=PARQUET)
        assert second.status_code == 201, second.text
        assert (second.json()["version"], second.json()["source"]) == (2, "upload (parquet)")

        again = http.post("/api/v1/snapshots/people", content=csv_bytes(FIRST), headers=CSV)
        assert again.status_code == 200 and (again.json()["version"], again.json()["created"]) == (1, False)
        # the same data in the other format, the format given by ?format= and streamed in chunks
        chunks = (parquet_bytes(FIRST)[i : i + 100] for i in range(0, len(parquet_bytes(FIRST)), 100))
        same = http.post("/api/v1/snapshots/people", params={"format": "parquet"}, content=chunks,
                         headers={"content-type": "application/octet-stream"})  # fmt: skip
        assert same.status_code == 200 and same.json()["ref"] == "people@1", same.text
    assert versions(team, "people") == [1, 2]
    assert scratch_files(team.home) == []
    with team.client("vera") as http:
        audit = http.get("/api/v1/audit", params={"target": "people", "action": "snapshot.registered"}).json()
    assert [(e["target"], e["actor"]) for e in audit] == [("people@1", "ed"), ("people@2", "ed")]


def test_failing_expectations_register_nothing_and_say_why(team):
    with team.client("ed") as http:
        spec = json.dumps({"min_rows": 10})
        refused = http.post("/api/v1/snapshots/checked", content=csv_bytes(FIRST), headers=CSV,
                            params={"expectations": spec})  # fmt: skip
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"].startswith("Snapshot 'checked' was not registered")
        assert refused.json()["validation"]["ok"] is False
        passed = http.post("/api/v1/snapshots/checked", content=csv_bytes(FIRST), headers=CSV,
                           params={"expectations": json.dumps({"not_null": ["id"], "min_rows": 2})})  # fmt: skip
        assert passed.status_code == 201 and passed.json()["version"] == 1
        for value, message in [("[1]", "expectations must be a JSON object."),
                               ("{nope", "expectations is not valid JSON"),
                               ('{"speed": 1}', "Unknown expectation(s): speed.")]:  # fmt: skip
            answer = http.post("/api/v1/snapshots/checked", content=csv_bytes(SECOND), headers=CSV,
                               params={"expectations": value})  # fmt: skip
            assert answer.status_code == 400 and answer.json()["error"].startswith(message), answer.text
    assert versions(team, "checked") == [1]
    assert scratch_files(team.home) == []


def test_the_new_routes_are_in_the_openapi_that_the_token_test_walks(team):
    """tests/test_team_server.py::test_no_route_answers_without_a_token_but_health sends every path of
    the OpenAPI description without a token (and with bad ones) and wants 401: these are among them."""
    with team.client("vera") as http:
        paths = http.get("/api/v1/openapi.json").json()["paths"]
    assert "post" in paths["/api/v1/snapshots/{ref}"] and "get" in paths["/api/v1/snapshots/{ref}"]
    for path in ("/api/v1/snapshots/{ref}/data", "/api/v1/snapshots/{ref}/diff/{other}", "/api/v1/changes",
                 "/api/v1/changes/stream"):  # fmt: skip
        assert "Needs role: **viewer**" in paths[path]["get"]["description"], path
    assert "Needs role: **editor**" in paths["/api/v1/snapshots/{ref}"]["post"]["description"]
    assert "Needs role: **viewer**" in paths["/api/v1/sql"]["post"]["description"]
    with httpx.Client(base_url=team.url) as anonymous:
        for method, path in [("POST", "/api/v1/snapshots/people"), ("GET", "/api/v1/snapshots/people/data"),
                             ("GET", "/api/v1/snapshots/people@1/diff/people@2"), ("POST", "/api/v1/sql"),
                             ("GET", "/api/v1/changes"), ("GET", "/api/v1/changes/stream")]:  # fmt: skip
            for headers in ({}, {"Authorization": "Bearer wbt_not-a-real-token"}):
                answer = anonymous.request(method, path, headers=headers, json={"query": "select 1"})
                assert answer.status_code == 401 and answer.json()["error"], (method, path, answer.text)


def test_viewer_upload_is_refused_naming_the_role(team):
    with team.client("vera") as http:
        refused = http.post("/api/v1/snapshots/people", content=csv_bytes(SECOND), headers=CSV)
    assert refused.status_code == 403
    assert refused.json()["error"] == "registering snapshots needs role editor; you are viewer."
    with httpx.Client(base_url=team.url) as anonymous:
        assert anonymous.post("/api/v1/snapshots/people", content=csv_bytes(SECOND), headers=CSV).status_code == 401
    assert versions(team, "people")[-1] <= 2


def test_bad_names_formats_and_bodies_are_400_with_a_message(team):
    with team.client("ed") as http:
        for path, body, headers, params, message in [
            ("/api/v1/snapshots/bad%20name", csv_bytes(FIRST), CSV, {}, "Invalid snapshot name 'bad name'."),
            ("/api/v1/snapshots/9lives", csv_bytes(FIRST), CSV, {}, "Invalid snapshot name '9lives'."),
            ("/api/v1/snapshots/a..b", csv_bytes(FIRST), CSV, {}, "Invalid snapshot name 'a..b'."),
            ("/api/v1/snapshots/odd", b"x", {"content-type": "application/json"}, {},
             "Cannot register a body with content type 'application/json'."),
            ("/api/v1/snapshots/odd", b"x", CSV, {"format": "xlsx"}, "Cannot register a body with format 'xlsx'."),
            ("/api/v1/snapshots/odd", b"", CSV, {}, "The request body is empty."),
            ("/api/v1/snapshots/odd", b"PAR1 not really parquet", PARQUET, {}, "Could not read upload (parquet)"),
        ]:  # fmt: skip
            answer = http.post(path, content=body, headers=headers, params=params)
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["error"].startswith(message) and "Traceback" not in answer.text, answer.text
            assert str(team.home) not in answer.text  # no scratch path of the server in a message
        assert "Names start with a letter" in http.post("/api/v1/snapshots/9lives", content=b"a\n1\n",
                                                        headers=CSV).json()["hint"]  # fmt: skip
    assert versions(team, "odd") == [] and scratch_files(team.home) == []


def test_an_oversized_upload_is_413_and_leaves_nothing_behind(team):
    big = csv_bytes(pd.DataFrame({"x": range(60_000)}))
    assert len(big) > UPLOAD_LIMIT
    with team.client("ed") as http:
        declared = http.post("/api/v1/snapshots/huge", content=big, headers=CSV)  # Content-Length says so
        assert declared.status_code == 413, declared.text
        assert declared.json()["error"] == f"The upload is larger than the server's limit of {UPLOAD_LIMIT:,} bytes."
        assert "max_upload_bytes" in declared.json()["hint"]

        def streamed():  # no Content-Length: refused once the limit is passed while it arrives
            for start in range(0, len(big), 16_384):
                yield big[start : start + 16_384]

        chunked = http.post("/api/v1/snapshots/huge", content=streamed(), headers=CSV)
        assert chunked.status_code == 413 and "larger than the server's limit" in chunked.json()["error"]
        assert http.post("/api/v1/snapshots/small", content=big[:50_000].rsplit(b"\n", 1)[0],
                         headers=CSV).status_code == 201  # fmt: skip
    assert versions(team, "huge") == [] and scratch_files(team.home) == []


def test_an_upload_cut_off_midway_registers_nothing_and_leaves_nothing_behind(team):
    import socket
    from urllib.parse import urlparse

    body = csv_bytes(pd.DataFrame({"x": range(20_000)}))
    url = urlparse(team.url)
    head = (f"POST /api/v1/snapshots/cut HTTP/1.1\r\nHost: {url.hostname}\r\n"
            f"Authorization: Bearer {team.tokens['ed']}\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
        assert scratch_files(team.home), "the upload should be arriving in a scratch file"
    deadline = time.monotonic() + 10
    while scratch_files(team.home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scratch_files(team.home) == [] and versions(team, "cut") == []
    with team.client("ed") as http:  # the server is fine
        assert http.post("/api/v1/snapshots/cut", content=body, headers=CSV).json()["ref"] == "cut@1"


# ---------------------------------------------------------------------------------------------- download


def test_download_round_trips_the_data_with_its_hash(team):
    with team.client("ed") as http:
        assert http.post("/api/v1/snapshots/people", content=csv_bytes(FIRST), headers=CSV).json()["version"] == 1
    with team.client("vera") as http:
        meta = http.get("/api/v1/snapshots/people@1").json()
        got = http.get("/api/v1/snapshots/people@1/data")
        assert got.status_code == 200 and got.headers["content-type"] == "application/vnd.apache.parquet"
        sha256 = hashlib.sha256(got.content).hexdigest()
        assert got.headers["x-workbench-sha256"] == sha256 and got.headers["etag"] == f'"{sha256}"'
        assert got.headers["x-workbench-content-hash"] == meta["content_hash"]
        assert got.headers["x-workbench-ref"] == "people@1"
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(got.content)), FIRST)
        latest = http.get("/api/v1/snapshots/people/data")
        assert latest.headers["x-workbench-ref"] == "people@2"
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(latest.content)), SECOND)
        cached = http.get("/api/v1/snapshots/people@1/data", headers={"If-None-Match": f'"{sha256}"'})
        assert cached.status_code == 304 and cached.content == b""
        stale = http.get("/api/v1/snapshots/people@1/data", headers={"If-None-Match": '"0000"'})
        assert stale.status_code == 200 and stale.content == got.content
        missing = http.get("/api/v1/snapshots/people@9/data")
        assert (missing.status_code, missing.json()["error"]) == (404, "Snapshot people@9 does not exist.")
        assert http.get("/api/v1/snapshots/bad%20name/data").status_code == 400


# ---------------------------------------------------------------------------------------------- SQL


def test_sql_answers_columns_with_a_row_limit(team):
    with team.client("vera") as http:
        answer = http.post("/api/v1/sql", json={"query": "select id, name from snapshot('people@2') order by id"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"columns": ["id", "name"], "types": [answer.json()["types"][0], "str"],
                                 "data": [[1, 2, 4], ["a", "B", "d"]], "rows": 3, "truncated": False,
                                 "limit": 1000}  # fmt: skip
        limited = http.post("/api/v1/sql", json={"query": "select * from people order by id", "limit": 2}).json()
        assert (limited["rows"], limited["truncated"], limited["data"][0]) == (2, True, [1, 2])
        joined = http.post("/api/v1/sql", json={"query": "select count(*) as n from snapshot('people@1') a "
                                                "join snapshot('people@2') b using (id)"}).json()  # fmt: skip
        assert joined["data"] == [[2]]
        for body, status in [({"query": "select 1", "limit": 0}, 400), ({"query": ""}, 400),
                             ({"query": "select 1", "extra": 1}, 400), ({"limit": 5}, 400)]:  # fmt: skip
            assert http.post("/api/v1/sql", json=body).status_code == status, body


def attacks(home: Path) -> list[tuple[str, str]]:
    """(query, what the refusal says) for everything `POST /api/v1/sql` and `wb.sql` must refuse."""
    outside = home.parent / "stolen.csv"
    catalog = home / "catalog.duckdb"
    return [
        (f"COPY (select * from people) TO '{outside}'", "Only SELECT queries are allowed, not COPY."),
        (f"copy people to '{outside}' (format csv)", "Only SELECT queries are allowed, not COPY."),
        (f"ATTACH '{catalog}' AS cat", "Only SELECT queries are allowed, not ATTACH."),
        (f"ATTACH '{home.parent / 'new.db'}'", "Only SELECT queries are allowed, not ATTACH."),
        ("INSTALL httpfs", "Only SELECT queries are allowed, not LOAD."),
        ("LOAD httpfs", "Only SELECT queries are allowed, not LOAD."),
        ("SET enable_external_access = true", "Only SELECT queries are allowed, not SET."),
        ("SET threads = 1", "Only SELECT queries are allowed, not SET."),
        ("PRAGMA database_list", "Only SELECT queries are allowed, not PRAGMA."),
        (f"EXPORT DATABASE '{home.parent / 'dump'}'", "Only SELECT queries are allowed, not EXPORT."),
        ("CREATE TABLE t AS SELECT 1", "Only SELECT queries are allowed, not CREATE."),
        ("select 1; select 2", "The SQL text has 2 statements; only one is allowed."),
        (f"select 1; COPY (select 1) TO '{outside}'", "The SQL text has 2 statements; only one is allowed."),
        ("select * from people; drop table people", "The SQL text has 2 statements; only one is allowed."),
        ("select * from read_csv('/etc/passwd')", "SQL refused: Permission Error"),
        ("select * from read_text('/etc/passwd')", "SQL refused: Permission Error"),
        ("select * from read_blob('/etc/hostname')", "SQL refused: Permission Error"),
        ("select * from glob('/etc/*')", "SQL refused: Permission Error"),
        (f"select * from read_parquet('{home}/blobs/*/*.parquet')", "SQL refused: Permission Error"),
        (f"select * from read_csv('{home / 'config.json'}')", "SQL refused: Permission Error"),
        (f"select * from sniff_csv('{home / 'config.json'}')", "SQL refused: Permission Error"),
        ("select * from read_csv('https://example.com/data.csv')", "SQL refused: Permission Error"),
        (f"select * from people, read_parquet('{catalog}')", "SQL refused: Permission Error"),
        ("select * from query('select 42') , read_csv('/etc/passwd')", "SQL refused: Permission Error"),
    ]


def test_sql_attacks_are_refused_with_400(team):
    cases = attacks(team.home)
    with team.client("ed") as http:
        for query, message in cases:
            answer = http.post("/api/v1/sql", json={"query": query})
            assert answer.status_code == 400, (query, answer.text)
            assert answer.json()["error"].startswith(message), (query, answer.json())
            assert "root:" not in answer.text and "Traceback" not in answer.text
        assert http.get("/api/v1/me").status_code == 200  # the server is fine
    assert not (team.home.parent / "stolen.csv").exists() and not (team.home.parent / "new.db").exists()
    assert not (team.home.parent / "dump").exists()


def test_sql_refuses_the_same_attacks_for_local_callers(tmp_path):
    from workbench.errors import DataSourceError
    from workbench.snapshots.query import sql
    from workbench.workspace import Workspace

    home = tmp_path / ".workbench"
    wb.init(home)
    try:
        wb.snapshot("people", FIRST)
        other = wb.snapshot("other", SECOND)
        ws = Workspace(home)
        assert sql("select count(*) as n from people", ws)["n"][0] == 3
        blob = home / "blobs" / other.blob[:2] / other.blob
        cases = [*attacks(home), (f"select * from people, read_parquet('{blob}')", "SQL refused: Permission Error")]
        for query, message in cases:
            with pytest.raises(DataSourceError) as refused:
                sql(query, ws)
            assert refused.value.message.startswith(message), (query, refused.value.message)
        with pytest.raises(DataSourceError, match="took longer than 0.2 s"):
            sql("select count(*) from range(100000000000) a", ws, timeout=0.2)
        assert len(sql("select * from range(10)", ws, limit=4)) == 4
    finally:
        wb.use(None)
    assert not (tmp_path / "stolen.csv").exists()


# ---------------------------------------------------------------------------------------------- diff


def test_diff_is_the_same_as_the_cli(tmp_path):
    home = tmp_path / ".workbench"
    server = new_team(home, ed="editor", vera="viewer")
    try:
        with server.client("ed") as http:
            for frame in (FIRST, SECOND):
                assert http.post("/api/v1/snapshots/people", content=csv_bytes(frame), headers=CSV).status_code == 201
        with server.client("vera") as http:
            by_key = http.get("/api/v1/snapshots/people@1/diff/people@2", params={"key": "id"})
            plain = http.get("/api/v1/snapshots/people@1/diff/people")
            bad_key = http.get("/api/v1/snapshots/people@1/diff/people@2", params={"key": "nope"})
            missing = http.get("/api/v1/snapshots/people@1/diff/people@7")
    finally:
        server.stop()
    assert by_key.status_code == 200 and plain.status_code == 200, (by_key.text, plain.text)
    assert (by_key.json()["rows_added"], by_key.json()["rows_removed"], by_key.json()["rows_changed"]) == (1, 1, 1)
    assert bad_key.status_code == 400 and bad_key.json()["error"].startswith("Key column(s) nope")
    assert missing.status_code == 404
    cli = workbench_cli(home, "snapshot", "diff", "people@1", "people@2", "--key", "id", "--json")
    assert cli.returncode == 0, cli.stderr
    assert by_key.json() == json.loads(cli.stdout)
    cli_plain = workbench_cli(home, "snapshot", "diff", "people@1", "people@2", "--json")
    assert plain.json() == json.loads(cli_plain.stdout)
