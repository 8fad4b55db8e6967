"""`workbench run / sweep / rerun / cancel` as a user types them, including every bad-input case."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def square(notebook):
    return notebook("square", "n = 2\nlabel = 'a'", "import workbench as wb\nwb.log_metric('sq', n * n)")


def test_run_with_params_tags_and_a_params_file(cli, square, tmp_path):
    proc = cli("run", str(square), "-p", "n", "3", "-p", "label=b=c", "--tag", "team=ml", "-e", "cli", "--json",
               check=True)  # fmt: skip
    run = json.loads(proc.stdout)
    assert run["status"] == "finished" and run["experiment"] == "cli"
    assert run["params"] == {"n": 3, "label": "b=c"} and run["metrics"] == {"sq": 9.0}
    assert run["tags"] == {"team": "ml"}

    params = tmp_path / "params.yaml"
    params.write_text("n: 5\n")
    run = json.loads(cli("run", str(square), "--params-file", str(params), "--json", check=True).stdout)
    assert run["metrics"] == {"sq": 25.0}

    again = cli("rerun", run["run_id"], "--json", check=True)
    rerun = json.loads(again.stdout)
    assert rerun["parent_run_id"] == run["run_id"] and rerun["metrics"] == {"sq": 25.0}
    assert "has already ended" in cli("cancel", run["run_id"], check=True).stdout


def test_a_failing_run_exits_1_and_shows_the_cell(cli, notebook):
    nb = notebook("fail", None, "raise KeyError('missing column')")
    proc = cli("run", str(nb))
    assert proc.returncode == 1
    assert "failed" in proc.stdout and "cell 0: KeyError" in proc.stdout


def _bad_inputs(tmp_path, square, notebook):
    not_json = tmp_path / "broken.ipynb"
    not_json.write_text("{ this is not json")
    no_params = notebook("plain", None, "print(1)")
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    julia = tmp_path / "julia.ipynb"
    julia.write_text(json.dumps({"cells": [], "metadata": {"language_info": {"name": "julia"}}, "nbformat": 4,
                                 "nbformat_minor": 5}))  # fmt: skip
    return [
        (["run", str(tmp_path / "missing.ipynb")], "Notebook not found"),
        (["run", str(text)], "is not a notebook"),
        (["run", str(not_json)], "is not a valid notebook"),
        (["run", str(no_params), "-p", "n", "1"], "has no cell tagged 'parameters'"),
        (["run", str(square), "-p", "n", "three"], "expects int"),
        (["run", str(square), "-p", "m", "1"], "Unknown parameter 'm'"),
        (["run", str(square), "-k", "no-such-kernel"], "Kernel 'no-such-kernel' is not installed"),
        (["run", str(julia)], "no julia kernel is installed"),
        (["run", str(square), "-e", "bad name; drop table runs"], "Invalid experiment name"),
        (["run", str(square), "--tag", "novalue"], "Invalid --tag"),
        (["run", str(square), "--params-file", str(tmp_path / "nope.yaml")], "Cannot read parameters file"),
        (["sweep", str(square), "--grid", "n=1,x"], "expects int"),
        (["sweep", str(square)], "at least one parameter"),
        (["sweep", str(square), "--grid", "n=1", "--executor", "ray"], "Unknown executor"),
        (["rerun", "not-a-run"], "Invalid run id"),
        (["rerun", "20260101-000000-0000abcd"], "No run"),
    ]


def test_bad_input_is_one_clear_line_and_records_nothing(cli, ws, square, notebook, tmp_path):
    for args, message in _bad_inputs(tmp_path, square, notebook):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


@pytest.mark.slow
def test_sweep_cli_prints_a_summary_sorted_by_the_metric(cli, square):
    proc = cli("sweep", str(square), "--grid", "n=1,3,2", "-j", "2", "-m", "sq", "--maximize", "--json", check=True)
    summary = json.loads(proc.stdout)
    assert [r["metrics.sq"] for r in summary["runs"]] == [9.0, 4.0, 1.0]
    assert summary["experiment"] == "sweep-square"
