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


def test_older_catalog_is_migrated_forward(tmp_path, wine_frame):
    ws = init_workspace(tmp_path / "old")
    newest = available_migrations()[-1][0]
    # Recreate the catalog as the first release wrote it: only migration 1 applied.
    ws.catalog_path.unlink()
    first = available_migrations()[0]
    con = duckdb.connect(str(ws.catalog_path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMPTZ)")
    con.execute(first[2])
    con.execute("INSERT INTO schema_migrations VALUES (1, ?, now())", [first[1]])
    con.close()
    forget_migrations()
    with connect(ws) as con:
        assert schema_version(con) == newest
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert {"snapshots", "audit", "runs"} <= tables


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


def test_init_from_a_subfolder_joins_the_project_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    project = init_workspace()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert init_workspace().root == project.root
    assert not (tmp_path / "notebooks" / ".workbench").exists()
