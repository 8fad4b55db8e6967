"""The `workbench snapshot` CLI: outputs, --json, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest


@pytest.fixture()
def wine_csv(tmp_path, wine_frame):
    path = tmp_path / "wine.csv"
    wine_frame.to_csv(path, index=False)
    return path


def test_add_list_show_diff_export_query(cli, wine_csv, wine_frame, tmp_path):
    out = cli("snapshot", "add", "wine", str(wine_csv), "-d", "UCI wine", check=True).stdout
    assert "Registered wine@1" in out and "178 rows" in out
    assert "nothing new" in cli("snapshot", "add", "wine", str(wine_csv), check=True).stdout
    small = tmp_path / "small.csv"
    wine_frame.head(20).to_csv(small, index=False)
    cli("snapshot", "add", "wine", str(small), check=True)
    listed = json.loads(cli("snapshot", "list", "--json", check=True).stdout)
    assert [s["ref"] for s in listed] == ["wine@2"]
    every = json.loads(cli("snapshot", "list", "--all", "--json", check=True).stdout)
    assert [s["ref"] for s in every] == ["wine@1", "wine@2"]
    shown = json.loads(cli("snapshot", "show", "wine@1", "--json", check=True).stdout)
    assert shown["row_count"] == 178 and shown["profile"]["alcohol"]["null_count"] == 0
    assert "alcohol" in cli("snapshot", "show", "wine", check=True).stdout
    diff = json.loads(cli("snapshot", "diff", "wine@1", "wine@2", "--json", check=True).stdout)
    assert diff["row_delta"] == -158
    export = tmp_path / "out.parquet"
    cli("snapshot", "export", "wine@2", str(export), check=True)
    assert export.stat().st_size > 0
    rows = json.loads(cli("snapshot", "query", "select count(*) as n from wine", "--json", check=True).stdout)
    assert rows == [{"n": 20}]


def test_add_from_sql(cli, wine_csv):
    cli("snapshot", "add", "wine", str(wine_csv), check=True)
    out = cli(
        "snapshot",
        "add",
        "rich",
        "--sql",
        "select * from snapshot('wine@1') where alcohol > 14",
        "--json",
        check=True,
    )  # noqa: E501
    assert json.loads(out.stdout)["row_count"] == 22


def test_failed_expectations_report(cli, wine_csv, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("ranges: {alcohol: {max: 13}}\n")
    proc = cli("snapshot", "add", "wine", str(wine_csv), "--expect", str(rules))
    assert proc.returncode == 2
    assert "not registered" in proc.stderr and "alcohol" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(cli("snapshot", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["snapshot", "show", "nope"], "No snapshot named"),
        (["snapshot", "show", "wine@x"], "Invalid version"),
        (["snapshot", "show", "wine@99"], "does not exist"),
        (["snapshot", "add", "bad name", "{csv}"], "Invalid snapshot name"),
        (["snapshot", "add", "x", "/no/such/file.csv"], "not found"),
        (["snapshot", "add", "x", "{empty}"], "empty"),
        (["snapshot", "add", "x", "{corrupt}"], "Could not read"),
        (["snapshot", "add", "x", "--sql", "selec broken"], "Could not read"),
        (["snapshot", "add", "x"], "Give either a PATH or --sql"),
        (["snapshot", "diff", "wine", "nope"], "No snapshot named"),
        (["snapshot", "export", "wine", "out.txt"], "unknown format"),
    ],
)
def test_bad_input_one_line_exit_2(cli, wine_csv, tmp_path, args, message):
    cli("snapshot", "add", "wine", str(wine_csv), check=True)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 garbage")
    args = [a.format(csv=wine_csv, empty=empty, corrupt=corrupt) for a in args]
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    listed = json.loads(cli("snapshot", "list", "--all", "--json").stdout)
    assert [s["ref"] for s in listed] == ["wine@1"]


def test_missing_workspace(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_HOME"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "workbench"), "snapshot", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "workbench init" in proc.stderr and "Traceback" not in proc.stderr
