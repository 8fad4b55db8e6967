"""Workspace discovery, creation and forward migration of the catalog schema."""

from __future__ import annotations

import duckdb
import pytest

import workbench as wb
from workbench.catalog import connect
from workbench.catalog.connection import forget_migrations
from workbench.catalog.migrate import available_migrations, schema_version
from workbench.errors import WorkbenchError, WorkspaceNotFoundError
from workbench.workspace import init_workspace, open_workspace


def test_missing_workspace_says_how_to_create_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceNotFoundError, match="workbench init"):
        open_workspace()


def test_found_from_a_subfolder_and_env(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    created = init_workspace()
    assert created.root == tmp_path / ".workbench"
    sub = tmp_path / "notebooks" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert open_workspace().root == created.root
    other = init_workspace(tmp_path / "elsewhere")
    monkeypatch.setenv("WORKBENCH_HOME", str(other.root))
    assert open_workspace().root == other.root
    assert open_workspace(created.root).root == created.root  # --home wins


def test_init_is_idempotent_and_keeps_data(ws, wine_frame):
    wb.snapshot("wine", wine_frame)
    init_workspace(ws.root)
    assert wb.get_snapshot("wine").version == 1


def test_a_file_in_the_way(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(WorkbenchError, match="file is in the way"):
        init_workspace(tmp_path / "blocker")


def _old_catalog_with(ws, applied: int, tables: dict[str, tuple[list[str], list[tuple]]]) -> None:
    """Replace the catalog by one an older Workbench wrote: only the first `applied` migrations,
    holding `tables` ({table: (columns, rows)}) as that version stored them."""
    ws.catalog_path.unlink()
    con = duckdb.connect(str(ws.catalog_path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)")
    for number, name, sql in available_migrations()[:applied]:
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [number, name])
    for table, (columns, rows) in tables.items():
        marks = ", ".join("?" * len(columns))
        con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
    con.close()
    forget_migrations()


def _rows(con, table: str, columns: list[str]) -> list[tuple]:
    return con.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL").fetchall()


def test_older_catalog_with_data_is_migrated_forward_and_keeps_its_data(ws, wine_frame):
    """A workspace of the release before `file_sha256` (migrations 1-4) opens with every row intact."""
    from model_fixtures import train_run

    # Real data the old release could have written: a snapshot (its blob on disk), a finished run
    # that read it and logged a model, that model promoted, and the audit rows of all of it.
    wb.snapshot("wine", wine_frame)
    run_id = train_run()
    wb.promote(run_id, "wine", reason="first")
    with connect(ws) as con:
        tables = {}
        for table in ("snapshots", "audit", "runs", "run_params", "run_metrics", "run_metric_summary",
                      "run_artifacts", "run_inputs", "models", "model_versions", "model_aliases",
                      "model_alias_history"):  # fmt: skip
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall() if c != "file_sha256"]  # fmt: skip
            tables[table] = (columns, _rows(con, table, columns))
    assert all(rows for _, rows in tables.values())  # every table holds data worth keeping
    assert "ADD COLUMN file_sha256" in available_migrations()[4][2]  # what the old release lacked

    _old_catalog_with(ws, 4, tables)
    with connect(ws) as con:
        assert schema_version(con) == available_migrations()[-1][0]
        assert [n for (n,) in con.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()] == [
            n for n, _, _ in available_migrations()
        ]
        for table, (columns, rows) in tables.items():
            assert _rows(con, table, columns) == rows, table
        # 0005 added the column; an old snapshot has no file hash until its file is checked.
        assert con.execute("SELECT file_sha256 FROM snapshots").fetchall() == [(None,)]
    # ...and everything still reads through the library: data, lineage, the served model.
    assert wb.load_snapshot("wine@1").equals(wine_frame)
    run = wb.get_run(run_id)
    assert run.status == "finished" and run.inputs == ["wine@1"] and run.metrics["accuracy"] > 0.8
    assert wb.get_model_version("wine@production").run_id == run_id
    assert [e.action for e in wb.audit_log(target="model:wine")][:1] == ["model.created"]


def test_catalog_of_the_first_release_is_migrated_forward(tmp_path):
    ws = init_workspace(tmp_path / "old")
    frame = [("wine", 1, "abc", "2024-01-01 00:00:00+00", "ana", "wine.csv", None, 3, 10, "[]", "{}", "abc.parquet")]
    columns = ["name", "version", "content_hash", "created_at", "creator", "source", "description", "row_count",
               "byte_size", "columns", "profile", "blob"]  # fmt: skip
    _old_catalog_with(ws, 1, {"snapshots": (columns, frame)})
    with connect(ws) as con:
        assert schema_version(con) == available_migrations()[-1][0]
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        assert con.execute("SELECT name, version, creator, blob, file_sha256 FROM snapshots").fetchall() == [
            ("wine", 1, "ana", "abc.parquet", None)
        ]
    assert {"snapshots", "audit", "runs", "models"} <= tables


def test_newer_catalog_is_refused(tmp_path):
    ws = init_workspace(tmp_path / "new")
    with connect(ws) as con:
        con.execute("INSERT INTO schema_migrations VALUES (9999, 'future', now())")
    forget_migrations()
    with pytest.raises(WorkbenchError, match="newer Workbench"), connect(ws):
        pass
    forget_migrations()


def test_public_function_not_hidden_by_submodule(ws):
    import workbench.snapshots.store  # noqa: F401  (would normally shadow wb.snapshots)

    assert callable(wb.snapshots)


def test_aliased_subpackages_are_modules_and_call_their_function(ws, wine_frame):
    """`wb.runs`, `wb.models`, `wb.snapshots`, `wb.compare` are the packages (submodules import
    as usual) and calling one calls the function with the unambiguous name."""
    import importlib
    import sys
    import types

    import workbench.models.registry

    assert workbench.models.registry is sys.modules["workbench.models.registry"]  # not shadowed by a function
    wb.snapshot("wine", wine_frame)
    for alias, function in [("runs", "search_runs"), ("models", "list_models"), ("snapshots", "list_snapshots"),
                            ("compare", "compare_runs")]:  # fmt: skip
        package = getattr(wb, alias)
        assert isinstance(package, types.ModuleType) and package is importlib.import_module(f"workbench.{alias}")
        assert callable(package) and callable(getattr(wb, function))
    assert wb.models() == wb.list_models() == []
    assert list(wb.snapshots()["ref"]) == list(wb.list_snapshots()["ref"]) == ["wine@1"]
    assert wb.runs().equals(wb.search_runs())


def test_init_from_a_subfolder_joins_the_project_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    project = init_workspace()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert init_workspace().root == project.root
    assert not (tmp_path / "notebooks" / ".workbench").exists()
