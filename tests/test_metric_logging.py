"""Metric logging's fast paths (issue 21) write, read and index exactly what the general ones did.

`wb.log_metric` formats its event line itself instead of going through a dict and the JSON
encoder, `now_iso` formats a second once, `parse_events` parses a whole file in one call and the
indexer builds metric columns instead of row tuples: each is checked here against the general
path it replaces, so event files written before (one `json.dumps` per event) index the same.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone
from importlib import metadata

import numpy as np
import pytest

import workbench as wb
from workbench import tracking
from workbench.catalog import connect
from workbench.runs import environment
from workbench.runs.events import EVENTS_FILE, metric_line, metric_prefix, now_iso, parse_events, read_events, run_dir
from workbench.runs.ingest import fold, index_runs, ingest_all
from workbench.runs.lifecycle import create_run


class _Step(int):
    pass


@pytest.mark.parametrize(
    "value", [0.1, -0.0, 5e-324, 1.7976931348623157e308, 123456789.125, 1 / 3, math.nan, math.inf, -math.inf]
)
@pytest.mark.parametrize("step", [None, 0, 7, -3, 2**70, _Step(5)])
def test_a_metric_line_is_what_the_json_encoder_writes(value, step):
    at = now_iso()
    for key in ("loss", "val/acc-1.top_5", "_x"):
        expected = json.dumps({"t": "metric", "key": key, "value": value, "step": step, "at": at}, allow_nan=True)
        assert metric_line(metric_prefix(key), value, step, at) == expected


@pytest.mark.parametrize(
    "ns",
    [0, 1_700_000_000_000_000_000, 1_700_000_000_123_456_789, 1_700_000_000_000_000_999, 1_799_999_999_999_999_999],
)
def test_now_iso_writes_what_datetime_isoformat_writes(monkeypatch, ns):
    def expected(ns: int) -> str:
        micros = ns // 1000
        return datetime.fromtimestamp(micros // 10**6, timezone.utc).replace(microsecond=micros % 10**6).isoformat()

    for later in (ns, ns + 1000, ns + 999_999_000, ns + 10**9):  # the same second (cached) and the next ones
        monkeypatch.setattr(time, "time_ns", lambda later=later: later)
        assert now_iso() == expected(later)


def test_now_iso_is_the_current_utc_time():
    before = datetime.now(timezone.utc)
    stamp = datetime.fromisoformat(now_iso())
    assert before <= stamp <= datetime.now(timezone.utc)
    assert stamp.utcoffset().total_seconds() == 0


def _per_line(data: bytes) -> list:
    """What read_events gave before: one json.loads per non-blank line, invalid lines skipped."""
    events = []
    for line in data.split(b"\n"):
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
    return events


_GOOD = b"\n".join(
    json.dumps(event, allow_nan=True).encode()
    for event in (
        {"t": "start", "run_id": "r", "experiment": "e"},
        {"t": "metric", "key": "loss", "value": math.nan, "step": 1, "at": "2026-01-01T00:00:00+00:00"},
        {"t": "metric", "key": "loss", "value": -math.inf, "step": None, "at": None},
        {"t": "param", "key": "lr", "value": {"nested": [1, "two", None]}},
        {"t": "tag", "key": "k", "value": "caf\u00e9 \u2603"},
    )
)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        _GOOD + b"\n",
        _GOOD,  # no final newline
        b"\n  \n" + _GOOD.replace(b"\n", b"\n \n\n") + b"\n",  # blank and whitespace lines
        _GOOD + b'\n{"t": "metric", "key": "lo',  # a torn last line (killed mid-write)
        _GOOD + b'\n{"t": "metric", "ke' + _GOOD + b"\n",  # a torn line continued by a later append
        b'{"t": "a", "x": [1\n2]}\n{"t": "b"}\n{"t": "c"}, {"t": "d"}\n',  # lines valid only when joined
        _GOOD + b"\n\xff\xfe garbage\n" + _GOOD + b"\n",  # not UTF-8
        b"[1, 2]\n3\n" + _GOOD,  # JSON but not objects: passed on, as before
        b'\xef\xbb\xbf{"t": "bom"}\n' + _GOOD + b'\n \xef\xbb\xbf{"t": "late bom"}\n',  # byte-order marks
        b'\x00{"t": "nul"}\n{"t": "ok"}\n{"t": "\x00"}\n' + '{"t": "x"}'.encode("utf-16-le") + b"\n",
        b'{"k": "\xed\xa0\x80"}\n' + _GOOD,  # an encoded lone surrogate (json.loads lets it through)
        b' \t{"t": "spaced"} \r\n\x0c{"t": "form feed"}\n{"t": "x"} {"t": "y"}\n{"t": "z"}\xc2\xa0\n',
        b'{"deep": ' + b"[" * 50 + b"]" * 50 + b"}\n",
    ],
)
def test_parse_events_gives_what_one_parse_per_line_gave(data, tmp_path):
    expected = json.dumps(_per_line(data), allow_nan=True)
    assert json.dumps(parse_events(data), allow_nan=True) == expected
    path = tmp_path / EVENTS_FILE
    path.write_bytes(data)
    assert json.dumps(list(read_events(path)), allow_nan=True) == expected


def _catalog_metrics(ws, run_id: str) -> list[tuple]:
    with connect(ws) as con:
        return con.execute(
            "SELECT key, step, value, logged_at FROM run_metrics WHERE run_id = ? ORDER BY rowid", [run_id]
        ).fetchall()


def _expected_metrics(ws, run_id: str) -> list[tuple]:
    """The catalog rows the event file asks for, derived the way the row-at-a-time indexer did."""
    item = fold(read_events(run_dir(ws, run_id) / EVENTS_FILE))
    rows = []
    for index, (key, step, value, at) in enumerate(item["metrics"]):
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        rows.append((key, index if step is None else step, None if number is None or math.isnan(number) else number,
                     datetime.fromisoformat(at) if isinstance(at, str) else None))  # fmt: skip
    return rows


def _comparable(rows: list[tuple]) -> list[tuple]:
    return [(k, s, v, t.timestamp() if t is not None else None) for k, s, v, t in rows]


def test_logged_metrics_are_indexed_with_their_values_steps_and_times(ws):
    values = [0.5, 3, np.float32(0.25), np.int64(7), math.nan, math.inf, -math.inf, 1e300, -0.0, 10**20,
              np.float64(2.5)]  # fmt: skip
    for step, value in enumerate(values):
        wb.log_metric("mixed", value, step=step)
    wb.log_metric("nostep", 1.5)
    wb.log_metric("nostep", 2.5)
    run_id = wb.active_run_id()
    wb.end_run()
    lines = [e for e in read_events(run_dir(ws, run_id) / EVENTS_FILE) if e["t"] == "metric"]
    assert [e["value"] for e in lines[:5]] == [0.5, 3.0, 0.25, 7.0, pytest.approx(math.nan, nan_ok=True)]
    assert all(math.isnan(e["value"]) for e in lines[4:7])  # non-finite values are stored as NaN, as before
    history = wb.metric_history(run_id, "mixed")
    assert list(history["step"]) == list(range(len(values)))
    assert history["value"].tolist()[:4] == [0.5, 3.0, 0.25, 7.0]
    assert history["value"].isna().tolist() == [False] * 4 + [True] * 3 + [False] * 4
    assert history["value"].tolist()[7:] == [1e300, -0.0, 1e20, 2.5]
    assert list(wb.metric_history(run_id, "nostep")["value"]) == [1.5, 2.5]
    rows = _catalog_metrics(ws, run_id)
    assert _comparable(rows) == _comparable(_expected_metrics(ws, run_id))
    assert rows[-1][3] == datetime.fromisoformat(lines[-1]["at"])  # microseconds kept


def test_an_event_file_written_one_json_encoding_per_event_is_indexed_the_same(ws):
    """Files written before the fast path (and by any other writer) go through the general one."""
    record = create_run(ws, experiment="old", kind="interactive")
    record.set_status("running")
    events = [("loss", 1.0, 0), ("loss", math.nan, 1), ("loss", 2, 2), ("acc", True, None), ("acc", "x", None),
              ("acc", None, 5), ("loss", 0.125, None)]  # fmt: skip
    for key, value, step in events:
        record.writer.emit("metric", key=key, value=value, step=step, at=now_iso())
    record.writer.emit("metric", key="naive", value=1.0, step=0, at="2026-01-01T10:00:00.250000+00:00")
    record.writer.emit("metric", key="offset", value=1.0, step=0, at="2026-01-01T10:00:00.250000+02:00")
    record.writer.emit("metric", key="untimed", value=1.0, step=0, at=None)
    record.end("finished")
    index_runs(ws, [record.run_id])
    rows = _catalog_metrics(ws, record.run_id)
    assert len(rows) == len(events) + 3
    assert _comparable(rows) == _comparable(_expected_metrics(ws, record.run_id))
    assert [r[1] for r in rows[:7]] == [0, 1, 2, 3, 4, 5, 6]  # a missing step is the point's position
    assert [r[2] for r in rows[:7]] == [1.0, None, 2.0, None, None, None, 0.125]


def test_indexing_many_runs_at_once_gives_the_rows_indexing_each_gives(ws):
    run_ids = []
    for n in range(3):
        record = create_run(ws, experiment=f"e{n}", kind="interactive", params={"n": n}, tags={"t": str(n)})
        record.set_status("running")
        for step in range(50 * n):
            record.writer.emit_line(metric_line(metric_prefix(f"m{n % 2}"), step / 7, step, now_iso()))
        record.end("finished")
        index_runs(ws, [record.run_id])
        run_ids.append(record.run_id)

    def snapshot() -> dict:
        with connect(ws) as con:
            return {table: con.execute(f"SELECT * EXCLUDE (run_id), run_id FROM {table} ORDER BY ALL").fetchall()
                    for table in ("runs", "run_params", "run_metrics", "run_metric_summary", "run_tags")}  # fmt: skip

    one_by_one = snapshot()
    assert len(one_by_one["run_metrics"]) == 150
    with connect(ws) as con:
        con.execute("DELETE FROM run_ingest")
    ingest_all(ws)
    assert snapshot() == one_by_one


@pytest.mark.parametrize("key", [5, None, "", "1abc", "a b", "x" * 129, b"loss", "bad name;drop"])
def test_bad_metric_names_are_refused_and_start_no_run(ws, key):
    wb.log_metric("loss", 1.0)  # a valid name, now cached, does not let others through
    wb.end_run()
    with pytest.raises(wb.ValidationError, match="Invalid metric name"):
        wb.log_metric(key, 1.0)
    assert tracking.active_run_id() is None


@pytest.mark.parametrize("value", ["1.0", None, True, [1.0], 1j, np.array("x"), np.bool_(True)])
def test_bad_metric_values_are_refused(ws, value):
    with pytest.raises(wb.ValidationError, match="must be a number"):
        wb.log_metric("loss", value)
    assert tracking.active_run_id() is None


@pytest.mark.parametrize("step", [1.0, True, "3", np.int64(3)])
def test_bad_steps_are_refused(ws, step):
    with pytest.raises(wb.ValidationError, match="step must be an integer"):
        wb.log_metric("loss", 1.0, step=step)
    assert tracking.active_run_id() is None


def test_threads_logging_at_once_lose_nothing(ws):
    wb.log_metric("start", 0.0)

    def log(name: str) -> None:
        for step in range(2000):
            wb.log_metric(name, step * 0.5, step=step)

    threads = [threading.Thread(target=log, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_id = wb.active_run_id()
    wb.end_run()
    for i in range(4):
        history = wb.metric_history(run_id, f"t{i}")
        assert list(history["step"]) == list(range(2000))
        assert list(history["value"]) == [step * 0.5 for step in range(2000)]


class _Dist(metadata.Distribution):
    def __init__(self, text: str | None) -> None:
        self.text = text

    def read_text(self, filename):
        return self.text if filename == "METADATA" else None

    def locate_file(self, path):
        raise NotImplementedError


@pytest.mark.parametrize(
    "text",
    [
        "Metadata-Version: 2.1\nName: Foo-Bar\nVersion: 1.0 \n\nName: not a header\n",
        "Name: a\nVersion:1\n",
        "Name:\tx\nVersion: 2\n continued\n\nbody",  # a folded Version
        "Name: x\n y\nVersion: 1\n",  # a folded Name
        "name: lower\nVERSION: 3\n",
        "Name: a\r\nVersion: 1\r\n\r\nbody",
        " first line continues nothing\nName: a\nVersion: 1\n",
        "Summary: s\nName: a\nName: b\nVersion: 1\n",
        "Not a header\nName: a\nVersion: 1\n",
        ":x\nName: a\nVersion: 1\n",
        "Version: 1\n",
        "",
        "Name: a\nFrom x\nVersion: 2\n",
        "From nobody\nName: a\nVersion: 1\n",
        "Name: caf\u00e9\nVersion: 1\n",
    ],
)
def test_package_name_and_version_are_read_as_importlib_reads_them(text):
    dist = _Dist(text)
    assert environment.name_version(dist) == (dist.metadata.get("Name"), dist.version)


def test_the_recorded_packages_are_the_installed_distributions():
    expected: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            expected[name.lower()] = dist.version
    assert environment.packages() == dict(sorted(expected.items()))


def _git_state_in_two_calls(folder):
    """What git_state answered before it asked git once."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    if commit.returncode != 0:
        return None, None
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                            capture_output=True, text=True)  # fmt: skip
    return commit.stdout.strip(), bool(status.stdout.strip())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize("state", ["no repository", "no commit", "clean", "modified", "staged", "deleted",
                                   "untracked only", "detached", "conflict"])  # fmt: skip
def test_git_state_is_what_rev_parse_and_status_said(tmp_path, state):
    folder = tmp_path / "code"
    folder.mkdir()

    def git(*args: str, check: bool = True) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=folder,
                       capture_output=True, check=check)  # fmt: skip

    if state != "no repository":
        git("init", "-q", "-b", "main")
    if state not in ("no repository", "no commit"):
        (folder / "a.py").write_text("a = 1\n")
        git("add", "a.py")
        git("commit", "-q", "-m", "one")
    if state == "modified":
        (folder / "a.py").write_text("a = 2\n")
    elif state == "staged":
        (folder / "b.py").write_text("b = 1\n")
        git("add", "b.py")
    elif state == "deleted":
        (folder / "a.py").unlink()
    elif state == "untracked only":
        (folder / "new.py").write_text("x = 1\n")
    elif state == "detached":
        git("checkout", "-q", "--detach")
    elif state == "conflict":
        git("checkout", "-q", "-b", "other")
        (folder / "a.py").write_text("a = 'other'\n")
        git("commit", "-q", "-am", "other")
        git("checkout", "-q", "main")
        (folder / "a.py").write_text("a = 'main'\n")
        git("commit", "-q", "-am", "main")
        git("merge", "-q", "other", check=False)
    assert environment.git_state(folder) == _git_state_in_two_calls(folder)
    if state in ("modified", "staged", "deleted", "conflict"):
        assert environment.git_state(folder)[1] is True
