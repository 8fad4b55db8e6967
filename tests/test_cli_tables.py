"""CLI tables: fitted to an 80-column terminal (ids whole), plain TSV in a pipe.

The commands run as a user runs them: in a subprocess whose stdout is a pipe (a script, `| cut`)
or a pseudo-terminal 80 columns wide (a terminal window).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from conftest import VENV_BIN
from rich.cells import cell_len

from workbench.cli.tables import Column, describe, fit, is_number, ranked
from workbench.runs.ingest import ingest_pending
from workbench.runs.lifecycle import create_run

REPO = Path(__file__).resolve().parent.parent
WIDTH = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
LONG_TEXT = "UCI wine, first delivery of the season, checked by hand in the lab before registering"

# ------------------------------------------------------------------------------------ the layout


def test_ids_are_never_cut_and_low_priority_columns_go_first():
    from rich.text import Text

    headers = ["run_id", "status", "description", "accuracy", "learning_rate"]
    rows = [[Text("20261201-031508-e79cdf06"), Text("finished"), Text(LONG_TEXT), Text("0.98148"), Text("0.3")]]
    columns = describe(headers, rows, {0})
    layout = fit(columns, 50, [0, 1, 3, 4, 2])
    assert layout.widths[0] == len("20261201-031508-e79cdf06")
    assert 2 in layout.hidden or layout.widths[2] < len(LONG_TEXT)  # the text went, or was cut
    assert 3 in layout.shown and layout.widths[3] >= len("0.98148")  # a number is whole or gone
    assert sum(layout.widths.values()) + 3 * (len(layout.shown) - 1) <= 50


def test_an_id_wider_than_the_terminal_stays_whole():
    columns = [Column("ref", 30, 30, True), Column("rows", 4, 4, False)]
    layout = fit(columns, 20, [0, 1])
    assert layout.shown == [0] and layout.widths[0] == 30 and layout.hidden == [1]


def test_numbers_and_dates_are_not_cut():
    assert all(is_number(v) for v in ["0.5", "1,234", "1e-05", "-3", "2026-01-31 12:00", "8.9 KB"[:3]])
    assert not any(is_number(v) for v in ["finished", "wine@2", "UCI wine", ""])


def test_ranked_orders_names_then_prefixes_then_the_rest():
    columns = ["run_id", "experiment", "status", "params.a", "metrics.x", "metrics.y"]
    assert ranked(columns, "run_id", "status", "metrics.y", "params.", "metrics.") == [0, 2, 5, 3, 4, 1]


def test_every_command_prints_tables_through_the_one_helper():
    for path in sorted((REPO / "workbench" / "cli").glob("*_cmds.py")):
        source = path.read_text()
        assert "rich.table" not in source, f"{path.name} builds a rich Table itself"
        if "print_table(" in source:
            assert "from workbench.cli.tables import" in source and "print_table, workspace" not in source, path.name


# ------------------------------------------------------------------------------- real commands


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory):
    """A workspace with a wine snapshot, a promoted model and runs with many params and metrics."""
    from model_fixtures import train_run

    import workbench as wb
    from workbench.workspace import init_workspace, use_workspace

    home = tmp_path_factory.mktemp("tables") / ".workbench"
    ws = init_workspace(home)
    use_workspace(ws)
    old_home = os.environ.get("WORKBENCH_HOME")
    os.environ["WORKBENCH_HOME"] = str(home)
    try:
        wb.snapshot("wine", REPO / "data" / "wine.csv", description=LONG_TEXT)
        wb.snapshot("wine", REPO / "data" / "wine-2.csv", description=LONG_TEXT)
        run_ids = [_run(ws, index) for index in range(4)]
        model_runs = [train_run(C=c) for c in (0.5, 1.0)]
        for run_id in model_runs:
            wb.promote(run_id, model="wine-classifier", alias="production", reason=LONG_TEXT)
        ingest_pending(ws)
    finally:
        use_workspace(None)
        if old_home is None:
            os.environ.pop("WORKBENCH_HOME", None)
        else:
            os.environ["WORKBENCH_HOME"] = old_home
    return {"home": home, "runs": run_ids + model_runs, "model_runs": model_runs}


def _run(ws, index: int) -> str:
    params = {"learning_rate": 0.05 * (index + 1), "max_depth": index + 1, "n_estimators": 60,
              "subsample": 0.8, "min_samples_leaf": 3, "snapshot": "wine@2"}  # fmt: skip
    record = create_run(ws, experiment="wine-sweep", kind="notebook", params=params, tags={"team": "ml"})
    for name, value in {"accuracy": 0.9 + index / 100, "f1_macro": 0.91, "log_loss": 0.3 - index / 20,
                        "val_log_loss": 0.31, "precision_macro": 0.92}.items():  # fmt: skip
        record.writer.emit("metric", key=name, value=value, step=0, at=None)
    record.end("finished", None)
    return record.run_id


COMMANDS = {
    "runs list": ["runs", "list"],
    "runs list ordered": ["runs", "list", "-e", "wine-sweep", "-o", "metrics.log_loss"],
    "models show": ["models", "show", "wine-classifier"],
    "models list": ["models", "list"],
    "snapshot list": ["snapshot", "list", "--all"],
    "snapshot show": ["snapshot", "show", "wine@2"],
    "snapshot diff": ["snapshot", "diff", "wine@1", "wine@2"],
    "audit": ["audit"],
    "runs compare": ["runs", "compare", "RUNS3"],
}


def _argv(populated, args: list[str]) -> list[str]:
    if args[-1] == "RUNS3":
        args = [*args[:-1], *populated["runs"][:3]]
    return [str(VENV_BIN / "workbench"), *args]


def _env(populated, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return {**env, "WORKBENCH_HOME": str(populated["home"]), "NO_COLOR": "1", "TERM": "xterm", **extra}


def run_in_terminal(argv: list[str], env: dict[str, str], columns: int = WIDTH, timeout: float = 120) -> str:
    """Run argv with a pseudo-terminal of `columns` columns as stdin/stdout/stderr; its output, plain."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, b"".join(chunks).decode()
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n").replace("\r", "")


def _expected_ids(populated, name: str) -> list[str]:
    if name.startswith("runs"):
        return {"runs compare": populated["runs"][:3], "runs list ordered": populated["runs"][:4]}.get(
            name, populated["runs"]
        )
    if name == "models show":
        return populated["model_runs"]
    if name == "snapshot list":
        return ["wine@1", "wine@2"]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_pipe_gets_tab_separated_rows_with_ids_whole(populated, name):
    proc = subprocess.run(_argv(populated, COMMANDS[name]), capture_output=True, text=True, timeout=120,
                          env=_env(populated, COLUMNS=str(WIDTH)))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"[─━│┃┏┗]", proc.stdout), proc.stdout  # no box drawing
    table = [line.split("\t") for line in proc.stdout.splitlines() if "\t" in line]
    assert table, proc.stdout
    header = table[0]
    assert all(len(fields) == len(header) for fields in table), proc.stdout
    fields = {field for row in table for field in row}
    for run_id in _expected_ids(populated, name):
        assert run_id in fields or any(run_id == h for h in header), (run_id, proc.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("columns_env", [False, True], ids=["terminal-size", "COLUMNS"])
def test_an_80_column_terminal_gets_a_table_that_fits(populated, name, columns_env):
    env = _env(populated, **({"COLUMNS": str(WIDTH)} if columns_env else {}))
    out = run_in_terminal(_argv(populated, COMMANDS[name]), env)
    lines = out.splitlines()
    too_long = [line for line in lines if cell_len(line) > WIDTH]
    assert not too_long, "\n".join(too_long)
    assert "\t" not in out
    for run_id in _expected_ids(populated, name):
        assert re.search(rf"(^|\s){re.escape(run_id)}(\s|$)", out, re.M), (run_id, out)
    if name == "runs list ordered":  # the sort key and the first params survive, the rest is named
        header = next(line for line in lines if line.startswith("run_id"))
        assert "log_loss" in header and "learning_rate" in header and "status" in header
        assert "hidden to fit" in out


@pytest.mark.slow
def test_a_terminal_narrower_than_a_run_id_still_shows_it_whole(populated):
    out = run_in_terminal(_argv(populated, ["runs", "list"]), _env(populated), columns=20)
    assert all(re.search(rf"^{run_id}\s*$", out, re.M) for run_id in populated["runs"]), out
