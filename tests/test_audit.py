"""Every state change writes exactly one audit entry; `workbench audit` filters them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from conftest import run_cli_in_process
from model_fixtures import train_run

import workbench as wb

governance_cli = run_cli_in_process


def new_entries(before: int) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in wb.audit_log()[before:]]


def count() -> int:
    return len(wb.audit_log())


def test_each_action_writes_exactly_one_entry(ws, wine_frame):
    start = count()
    wb.snapshot("wine", wine_frame)
    assert new_entries(start) == [("snapshot.registered", "wine@1")]
    start = count()
    wb.snapshot("wine", wine_frame)  # identical content: no new version, no entry
    assert new_entries(start) == []

    first, second = train_run(C=0.01), train_run(C=10.0)
    start = count()
    wb.promote(first)
    assert new_entries(start) == [("model.created", "model:wine"), ("model.version.created", "model:wine@1"),
                                  ("alias.moved", "model:wine@production")]  # fmt: skip
    start = count()
    wb.set_gates("wine", {"metrics": {"accuracy": {"min": 2.0}}})
    assert new_entries(start) == [("model.gates.set", "model:wine")]
    start = count()
    with pytest.raises(wb.GateRefused):
        wb.promote(second, reason="try")
    assert new_entries(start) == [("gate.refused", "model:wine")]
    assert wb.audit_log(action="gate.refused")[0].reason == "try"
    start = count()
    wb.promote(second, force=True, reason="hotfix")
    assert new_entries(start) == [("model.version.created", "model:wine@2"), ("alias.moved", "model:wine@production")]
    forced = wb.audit_log(action="alias.moved")[-1].details
    accuracy = wb.get_run(second).metrics["accuracy"]
    assert forced["forced"] is True and [g["gate"] for g in forced["bypassed"]] == [g["gate"] for g in forced["gates"]]
    assert len(forced["bypassed"]) == 1 and f"{accuracy:.4g}"[:4] in forced["bypassed"][0]["detail"]
    start = count()
    wb.rollback("wine", reason="bad latency")
    assert new_entries(start) == [("alias.moved", "model:wine@production")]
    entry = wb.audit_log(action="alias.moved")[-1]
    assert entry.reason == "bad latency" and entry.details["rollback"] is True and entry.details["from"] == 2
    assert entry.actor  # who: the OS (or Jupyter) user
    start = count()
    wb.set_alias("wine", "staging", 2)
    assert new_entries(start) == [("alias.moved", "model:wine@staging")]
    start = count()
    with wb.serve("wine@production", log_predictions=False):
        pass
    assert [a for a, _ in new_entries(start)] == ["serving.started", "serving.stopped"]


def test_runs_starting_and_finishing_are_audited(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    start = count()
    train_run()
    assert [a for a, _ in new_entries(start)] == ["run.started", "run.finished"]


def test_audit_command_filters(ws, wine_frame, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    wb.snapshot("wine", wine_frame)
    wb.promote(train_run())
    wb.snapshot("other", wine_frame.head(5))
    everything = json.loads(governance_cli(capsys, "audit", "--json").stdout)
    assert [e["action"] for e in everything][:1] == ["snapshot.registered"] and len(everything) == 7
    model = json.loads(governance_cli(capsys, "audit", "--model", "wine", "--json").stdout)
    assert [e["action"] for e in model] == ["model.created", "model.version.created", "alias.moved"]
    moved = json.loads(governance_cli(capsys, "audit", "--action", "alias.moved", "--json").stdout)
    assert [e["target"] for e in moved] == ["model:wine@production"]
    newest = json.loads(governance_cli(capsys, "audit", "--limit", "1", "--json").stdout)
    assert [e["target"] for e in newest] == ["other@1"]
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    assert json.loads(governance_cli(capsys, "audit", "--since", future, "--json").stdout) == []
    bad = governance_cli(capsys, "audit", "--since", "yesterday")
    assert bad.returncode == 2 and "Invalid --since 'yesterday'" in bad.stderr
    table = governance_cli(capsys, "audit", "--model", "wine")
    assert table.returncode == 0 and "alias.moved" in table.stdout


def test_a_run_is_audited_when_it_starts_with_its_own_times(ws, notebook):
    """`run.started` must appear while the run works, stamped with its start, not its end."""
    import threading
    import time

    path = notebook("slow", None, "import time\ntime.sleep(4)")
    done = threading.Event()
    result: dict[str, object] = {}

    def work() -> None:
        result["run"] = wb.run(path, experiment="audited")
        done.set()

    threading.Thread(target=work, daemon=True).start()
    deadline = time.monotonic() + 60
    started: list = []
    while not started and not done.is_set() and time.monotonic() < deadline:
        started = [e for e in wb.audit_log(action="run.started")]
        time.sleep(0.2)
    assert started, "run.started was not audited before the run ended"
    assert done.wait(90)
    run = result["run"]
    entries = {e.action: e for e in wb.audit_log(target=f"run:{run.run_id}")}
    assert set(entries) == {"run.started", "run.finished"}
    assert abs((entries["run.started"].occurred_at - run.started_at).total_seconds()) < 0.01
    assert abs((entries["run.finished"].occurred_at - run.ended_at).total_seconds()) < 0.01
    assert (entries["run.finished"].occurred_at - entries["run.started"].occurred_at).total_seconds() >= 4
