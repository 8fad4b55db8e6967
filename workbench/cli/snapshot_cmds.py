"""`workbench snapshot ...`: register, list, show, diff, export and query data snapshots."""

from __future__ import annotations

from typing import Optional

import typer

from workbench.cli.app import JsonOption, app, console, err_console, fail, print_json, workspace_or_server
from workbench.cli.tables import is_terminal, print_table
from workbench.errors import ValidationError
from workbench.snapshots import query, store
from workbench.snapshots.differ import diff as diff_snapshots

snapshot_app = typer.Typer(help="Versioned, content-addressed data snapshots.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@snapshot_app.command("add")
def add(
    name: str = typer.Argument(..., help="Snapshot name, e.g. 'wine'."),
    path: Optional[str] = typer.Argument(None, help="CSV or Parquet file to register."),
    sql: Optional[str] = typer.Option(None, "--sql", help="Register the result of a DuckDB query."),
    description: Optional[str] = typer.Option(None, "--description", "-d"),
    expect: Optional[str] = typer.Option(None, "--expect", help="YAML/JSON file of expectations the data must meet."),
    as_json: bool = JsonOption,
) -> None:
    """Register a file or query result as the next version of NAME (dedups identical data)."""
    if (path is None) == (sql is None):
        fail("Give either a PATH or --sql QUERY.", "E.g. workbench snapshot add wine wine.csv")
    ws = workspace_or_server()
    try:
        with console.status(f"Registering {name} ...", spinner="dots"):
            snap = store.register(name, path, sql=sql, description=description, expectations=expect, ws=ws)
    except ValidationError as exc:
        if as_json and exc.report is not None:
            print_json({"registered": False, "validation": exc.report.to_dict()})
        raise
    if as_json:
        print_json(snap.to_dict())
        return
    if snap.created:
        console.print(
            f"Registered [bold]{snap.ref}[/]: {snap.row_count:,} rows, {len(snap.columns)} "
            f"columns, {_human_bytes(snap.byte_size)} (hash {snap.content_hash[:12]})"
        )
    else:
        console.print(f"Same data as [bold]{snap.ref}[/]: nothing new registered.")


@snapshot_app.command("list")
def list_cmd(
    name: Optional[str] = typer.Argument(None, help="Only this name."),
    all_versions: bool = typer.Option(False, "--all", "-a", help="Every version, not only the latest."),
    as_json: bool = JsonOption,
) -> None:
    """List snapshots (latest version of each name)."""
    snaps = store.list_snapshots(name, all_versions=all_versions or name is not None, ws=workspace_or_server())
    if as_json:
        print_json([s.to_dict() for s in snaps])
        return
    print_table(
        "Snapshots",
        ["ref", "rows", "cols", "size", "created", "by", "description"],
        [
            (
                s.ref,
                f"{s.row_count:,}",
                len(s.columns),
                _human_bytes(s.byte_size),
                s.created_at.strftime("%Y-%m-%d %H:%M"),
                s.creator,
                s.description or "",
            )
            for s in snaps
        ],
        priority=[0, 1, 2, 6, 4, 3, 5],  # ref, rows, cols, description, created, size, by
    )


@snapshot_app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME[@VERSION], e.g. wine@2 (default: latest)."),
    as_json: bool = JsonOption,
) -> None:
    """Show a snapshot's metadata, schema and column profile."""
    snap = store.get(ref, workspace_or_server())
    if as_json:
        print_json(snap.to_dict())
        return
    console.print(f"[bold]{snap.ref}[/]  {snap.description or ''}")
    console.print(
        f"rows {snap.row_count:,} · {_human_bytes(snap.byte_size)} · hash {snap.content_hash[:16]}"
        f" · {snap.created_at:%Y-%m-%d %H:%M} by {snap.creator}\nsource {snap.source}"
    )
    rows = []
    for col in snap.columns:
        p = snap.profile.get(col["name"], {})
        top = ", ".join(f"{t['value']} ({t['count']})" for t in p.get("top_values", [])[:3])
        mean = p.get("mean")
        rows.append(
            (
                col["name"],
                col["type"],
                p.get("null_count"),
                p.get("distinct_estimate"),
                p.get("min"),
                p.get("max"),
                f"{mean:.4g}" if isinstance(mean, float) else mean,
                top,
            )
        )
    print_table(
        "Schema and profile",
        ["column", "type", "nulls", "distinct~", "min", "max", "mean", "top values"],
        rows,
        priority=[0, 1, 2, 4, 5, 6, 3, 7],  # the name and type first, then nulls and the range
    )


@snapshot_app.command("diff")
def diff(
    a: str = typer.Argument(..., help="Old version, e.g. wine@1."),
    b: str = typer.Argument(..., help="New version, e.g. wine@2."),
    key: Optional[list[str]] = typer.Option(None, "--key", "-k", help="Key column(s) to match rows."),
    as_json: bool = JsonOption,
) -> None:
    """Compare two snapshots: schema, row counts, column profiles, and rows by key."""
    result = diff_snapshots(a, b, key=key or None, ws=workspace_or_server())
    if as_json:
        print_json(result.to_dict())
        return
    console.print(f"[bold]{result.a} → {result.b}[/]" + ("  (identical content)" if result.same_content else ""))
    console.print(f"rows: {result.row_count[0]:,} → {result.row_count[1]:,} ({result.row_delta:+,})")
    for col in result.columns_added:
        console.print(f"[green]+ column {col['name']} ({col['type']})[/]")
    for col in result.columns_removed:
        console.print(f"[red]- column {col['name']} ({col['type']})[/]")
    for change in result.type_changes:
        console.print(f"[yellow]~ column {change['name']}: {change['from']} → {change['to']}[/]")
    if result.profile_changes:
        print_table(
            "Profile changes",
            ["column", "stat", "before", "after"],
            [(c, stat, _value(v[0]), _value(v[1])) for c, stats in result.profile_changes.items()
             for stat, v in stats.items()],
            ids=(0, 1),
        )  # fmt: skip
    if result.key:
        console.print(
            f"rows by key {'+'.join(result.key)}: [green]{result.rows_added} added[/], "
            f"[red]{result.rows_removed} removed[/], [yellow]{result.rows_changed} changed[/]"
        )


def _value(value: object) -> object:
    """Floats to 6 significant digits: a profile mean's 16 digits are noise in a table (--json keeps them)."""
    return f"{value:.6g}" if isinstance(value, float) else value


@snapshot_app.command("export")
def export(
    ref: str = typer.Argument(..., help="NAME[@VERSION]"),
    path: str = typer.Argument(..., help="Target file ending in .parquet or .csv."),
) -> None:
    """Write a snapshot's data to a Parquet or CSV file."""
    out = store.export(ref, path, workspace_or_server())
    console.print(f"Wrote {out}")


@snapshot_app.command("query")
def query_cmd(
    sql: str = typer.Argument(..., help="SQL; use snapshot('name@v') or a snapshot name as a table."),
    limit: int = typer.Option(50, "--limit", help="Rows to print."),
    as_json: bool = JsonOption,
) -> None:
    """Run a DuckDB query over snapshots and print the result."""
    frame = query.sql(sql, workspace_or_server())
    if as_json:
        print_json(frame.head(limit).to_dict(orient="records"))
        return
    print_table(None, [str(c) for c in frame.columns], frame.head(limit).itertuples(index=False), ids=())
    if len(frame) > limit:  # on stderr in a pipe, where stdout is TSV rows only
        (console if is_terminal() else err_console).print(f"... {len(frame) - limit:,} more rows")
