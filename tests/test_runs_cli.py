"""`workbench runs list / show / compare` on real (kernel-free) runs."""

from __future__ import annotations

import json

from workbench.runs.ingest import ingest_pending
from workbench.runs.lifecycle import create_run


def _run(ws, lr: float, depth: int, loss: list[float], status: str = "finished") -> str:
    record = create_run(ws, experiment="cli", kind="notebook", params={"lr": lr, "depth": depth}, tags={"team": "ml"})
    for step, value in enumerate(loss):
        record.writer.emit("metric", key="loss", value=value, step=step, at=None)
    record.end(status, {"cell_index": 2, "ename": "ValueError", "evalue": "bad", "traceback": ["Traceback", "boom"]}
               if status == "failed" else None)  # fmt: skip
    return record.run_id


def test_list_show_compare(ws, cli, tmp_path):
    a, b = _run(ws, 0.1, 3, [0.9, 0.5]), _run(ws, 0.3, 5, [0.8, 0.2])
    failed = _run(ws, 1.0, 5, [0.99], status="failed")
    ingest_pending(ws)

    listed = json.loads(cli("runs", "list", "-e", "cli", "-f", "params.depth >= 5", "-o", "metrics.loss", "--json",
                            check=True).stdout)  # fmt: skip
    assert [r["run_id"] for r in listed] == [b, failed]
    assert listed[0]["params.lr"] == 0.3 and listed[0]["metrics.loss"] == 0.2
    table = cli("runs", "list", check=True).stdout.splitlines()  # a pipe: TSV, a header and one line per run
    assert table[0].startswith("run_id\t") and {line.split("\t")[0] for line in table[1:]} == {a, b, failed}

    shown = cli("runs", "show", failed, check=True).stdout
    assert "failed" in shown and "cell 2: ValueError: bad" in shown and "boom" in shown
    assert json.loads(cli("runs", "show", a, "--json", check=True).stdout)["params"] == {"lr": 0.1, "depth": 3}

    report = tmp_path / "report.html"
    compared = cli("runs", "compare", a, b, "--html", str(report), check=True).stdout
    assert "params.depth" in compared and "params.lr" in compared and "tags.team" not in compared  # equal: hidden
    assert "tags.team" in cli("runs", "compare", a, b, "--all", check=True).stdout
    assert report.read_text().count(a) >= 1 and "plotly" in report.read_text()
    rows = json.loads(cli("runs", "compare", a, b, "--json", check=True).stdout)["rows"]
    assert {r["key"]: r["differs"] for r in rows}["params.lr"] is True

    bad = cli("runs", "list", "-f", "metrics.loss <<< 1")
    assert bad.returncode == 2 and "position" in bad.stderr and "Traceback" not in bad.stderr
    assert cli("runs", "show", "nope").returncode == 2
