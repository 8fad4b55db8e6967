"""The end-to-end demo behind `workbench demo` (and the README's `make demo`).

It tells the whole story on a real data set that scikit-learn ships (the UCI wine data), in a
workspace under `./.workbench/`, using only the public API, so it doubles as an executable
tour. Every stage is idempotent: running the demo twice reuses what the first run registered.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from workbench import api
from workbench.errors import ValidationError
from workbench.snapshots import diff as diff_snapshots
from workbench.snapshots import sql

console = Console()

WINE_EXPECTATIONS = {
    "min_rows": 100,
    "not_null": ["alcohol", "target"],
    "unique": ["sample_id"],
    "ranges": {"alcohol": {"min": 8, "max": 16}, "hue": {"min": 0, "max": 3}},
    "allowed_values": {"target": [0, 1, 2]},
}


def wine_batches() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wine data as a first delivery and a corrected, extended second delivery."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame.insert(0, "sample_id", range(1, len(frame) + 1))
    first = frame.iloc[:150].reset_index(drop=True)
    second = frame.copy()
    second.loc[second.sample_id.isin([3, 7]), "magnesium"] += 1.0  # two corrected readings
    return first, second


def stage(title: str) -> None:
    console.rule(f"[bold]{title}")


def register_data(ws_root: Path) -> None:
    stage("1. Register data snapshots")
    first, second = wine_batches()
    for batch, text in ((first, "first delivery"), (second, "full data set, two fixes")):
        snap = api.snapshot("wine", batch, description=f"UCI wine, {text}", expect=WINE_EXPECTATIONS)
        verb = "registered" if snap.created else "already registered as"
        console.print(f"  {verb} [bold]{snap.ref}[/] ({snap.row_count} rows, hash {snap.content_hash[:12]})")
    broken = second.copy()
    broken.loc[0, "alcohol"] = 99.0
    try:
        api.snapshot("wine", broken, expect=WINE_EXPECTATIONS)
    except ValidationError as exc:
        console.print(f"  a bad batch was refused, nothing registered:\n  [yellow]{exc.message}[/]")
    diff = diff_snapshots("wine@1", "wine@2", key="sample_id")
    console.print(
        f"  diff wine@1 -> wine@2: {diff.row_delta:+} rows; by sample_id {diff.rows_added} added, "
        f"{diff.rows_removed} removed, {diff.rows_changed} changed"
    )
    by_class = sql(
        "select target, count(*) as n, round(avg(alcohol), 2) as alcohol "
        "from snapshot('wine@2') group by target order by target"
    )
    console.print("  SQL over wine@2:\n" + by_class.to_string(index=False))


def run_demo(home: str | None = None) -> None:
    ws = api.init(home)
    console.print(f"Workspace: [bold]{ws.root}[/]")
    register_data(ws.root)
    stage("Done")
    console.print(
        f"Workspace: {ws.root}\n"
        "Explore:   workbench snapshot list · workbench snapshot show wine@2 · "
        "workbench snapshot diff wine@1 wine@2 --key sample_id\n"
        "Open:      .venv/bin/jupyter lab"
    )
