"""The team server's change feed, as a real server process on loopback: a long-poll answers within a
second of an alias move made by another client (and empty after its timeout when nothing happens),
the server-sent event stream delivers entries and resumes after `Last-Event-ID`, and waiting
clients hold no worker thread (more of them than the server has threads, while it keeps answering).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from test_team_server import add_user, make_workspace, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory, wine_frame):
    home = tmp_path_factory.mktemp("team-changes") / ".workbench"
    make_workspace(home, wine_frame)  # model wine: v1 production, v2 staging
    tokens = {name: add_user(home, name, role) for name, role in {"vera": "viewer", "ed": "editor"}.items()}
    server = start_server(home)
    server.tokens = tokens
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()


def newest(team) -> int:
    with team.client("vera") as http:
        answer = http.get("/api/v1/changes", params={"timeout": "0"})
    assert answer.status_code == 200 and answer.json()["changes"] == [], answer.text
    return answer.json()["last_id"]


def move_staging(team, version: int, reason: str) -> float:
    """Move wine@staging as ed (another client); when the server answered."""
    with team.client("ed") as http:
        moved = http.put("/api/v1/models/wine/aliases/staging", json={"version": version, "reason": reason})
    assert moved.status_code == 200, moved.text
    return time.monotonic()


def test_history_from_an_id_oldest_first_with_a_limit(team):
    with team.client("vera") as http:
        everything = http.get("/api/v1/changes", params={"after": "0", "timeout": "0"}).json()
        ids = [e["id"] for e in everything["changes"]]
        assert ids == sorted(ids) and everything["last_id"] == ids[-1]
        assert {"snapshot.registered", "alias.moved"} <= {e["action"] for e in everything["changes"]}
        assert set(everything["changes"][0]) == {"id", "occurred_at", "actor", "action", "target", "details", "reason"}
        two = http.get("/api/v1/changes", params={"after": "0", "limit": "2", "timeout": "0"}).json()
        assert [e["id"] for e in two["changes"]] == ids[:2] and two["last_id"] == ids[1]
        rest = http.get("/api/v1/changes", params={"after": two["last_id"], "timeout": "0"}).json()
        assert [e["id"] for e in rest["changes"]] == ids[2:]
        moves = http.get("/api/v1/changes", params={"after": "0", "timeout": "0", "action": "alias.moved",
                                                    "target": "model:wine@production"}).json()  # fmt: skip
        assert [e["target"] for e in moves["changes"]] == ["model:wine@production"]
        for params, message in [({"timeout": "soon"}, "timeout must be a number of seconds from 0 to 60, not 'soon'."),
                                ({"timeout": "-1"}, "timeout must be a number of seconds from 0 to 60, not '-1'."),
                                ({"after": "x"}, "after must be a whole number"),
                                ({"limit": "0"}, "limit must be a whole number from 1 to 1,000")]:  # fmt: skip
            answer = http.get("/api/v1/changes", params=params)
            assert answer.status_code == 400 and answer.json()["error"].startswith(message), answer.text


def test_long_poll_answers_within_a_second_of_an_alias_move_by_another_client(team):
    after = newest(team)
    answered: dict = {}

    def wait() -> None:
        with team.client("vera") as http:
            response = http.get("/api/v1/changes", params={"after": after, "timeout": "30", "action": "alias.moved",
                                                           "target": "model:wine@staging"})  # fmt: skip
        answered["at"], answered["response"] = time.monotonic(), response

    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive(), "the long-poll answered before anything changed"
    with team.client("ed") as http:  # noise the filter leaves out
        assert http.post("/api/v1/snapshots/noise", content=b"a\n1\n", headers={"content-type": "text/csv"}).is_success
    time.sleep(0.3)
    assert waiter.is_alive(), "the long-poll answered for an entry its filter leaves out"
    moved_at = move_staging(team, 1, "follow me")
    waiter.join(timeout=30)
    response = answered["response"]
    assert response.status_code == 200, response.text
    assert answered["at"] - moved_at < 1.0 and answered["at"] - started < 10
    (entry,) = response.json()["changes"]
    assert (entry["action"], entry["target"], entry["actor"]) == ("alias.moved", "model:wine@staging", "ed")
    assert entry["details"]["version"] == 1 and entry["reason"] == "follow me" and entry["id"] > after
    assert response.json()["last_id"] == entry["id"]


def test_long_poll_without_changes_answers_empty_after_its_timeout(team):
    after = newest(team)
    with team.client("vera") as http:
        started = time.monotonic()
        answer = http.get("/api/v1/changes", params={"after": after, "timeout": "1.5"})
        took = time.monotonic() - started
    assert answer.status_code == 200 and answer.json() == {"changes": [], "last_id": after}
    assert 1.4 <= took < 4, took


def read_events(response: httpx.Response, count: int) -> list[dict]:
    """The next `count` events of a server-sent event stream: their `id` and parsed `data`."""
    events, current = [], {}
    for line in response.iter_lines():
        if line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            events.append(current)
            current = {}
            if len(events) == count:
                return events
    raise AssertionError(f"the stream ended after {len(events)} events")


def test_event_stream_delivers_changes_and_resumes_after_last_event_id(team):
    after = newest(team)
    params = {"after": after, "action": "alias.moved"}
    with team.client("vera") as http, http.stream("GET", "/api/v1/changes/stream", params=params) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        timer = threading.Timer(0.5, move_staging, (team, 2, "first"))
        timer.start()
        started = time.monotonic()
        (first,) = read_events(stream, 1)
        assert time.monotonic() - started < 5
        timer.join()
    assert first["data"]["reason"] == "first" and first["data"]["actor"] == "ed" and first["id"] > after
    assert first["data"]["id"] == first["id"]
    move_staging(team, 1, "while away")  # made while no stream is open
    with team.client("vera") as http:
        headers = {"Last-Event-ID": str(first["id"])}
        with http.stream("GET", "/api/v1/changes/stream", params=params, headers=headers) as stream:
            (resumed,) = read_events(stream, 1)
    assert resumed["data"]["reason"] == "while away" and resumed["id"] > first["id"]
    with httpx.Client(base_url=team.url) as anonymous:
        assert anonymous.get("/api/v1/changes/stream").status_code == 401
        assert anonymous.get("/api/v1/changes").status_code == 401


def test_waiting_clients_hold_no_worker_thread(team):
    """More long-polls than the server's 40 worker threads wait at once while it keeps answering, and a
    change wakes them all."""
    after = newest(team)
    waiting = 60

    async def scenario() -> tuple[list[httpx.Response], float, float]:
        headers = {"Authorization": f"Bearer {team.tokens['vera']}"}
        limits = httpx.Limits(max_connections=waiting + 5)
        async with httpx.AsyncClient(base_url=team.url, headers=headers, timeout=60, limits=limits) as http:
            polls = [asyncio.create_task(http.get("/api/v1/changes", params={"after": after, "timeout": "20"}))
                     for _ in range(waiting)]  # fmt: skip
            await asyncio.sleep(1.5)
            assert not any(p.done() for p in polls)
            started = time.monotonic()
            me = await http.get("/api/v1/me")
            answered_in = time.monotonic() - started
            assert me.status_code == 200
            moved_at = await asyncio.to_thread(move_staging, team, 2, "wake everybody")
            done = await asyncio.gather(*polls)
            return done, answered_in, time.monotonic() - moved_at

    responses, answered_in, woken_in = asyncio.run(scenario())
    assert answered_in < 1.0, answered_in
    assert woken_in < 3.0, woken_in
    assert all(r.status_code == 200 and r.json()["changes"][0]["reason"] == "wake everybody" for r in responses)
