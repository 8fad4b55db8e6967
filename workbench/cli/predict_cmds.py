"""`workbench predict`: score a snapshot with a registered model (`models.batch`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import typer

from workbench.cli.app import JsonOption, app, console, err_console, print_json, workspace_or_server
from workbench.cli.tables import is_terminal, print_table


@app.command("predict")
def predict_cmd(
    model: str = typer.Argument(..., help="NAME@ALIAS, NAME@VERSION or NAME (latest)."),
    snapshot: str = typer.Option(..., "--snapshot", "-s", help="The snapshot to score, NAME[@VERSION]."),
    into: Optional[str] = typer.Option(
        None, "--into", help="Register the result as the next version of this snapshot."
    ),
    columns: Optional[str] = typer.Option(
        None, "--columns", help="Columns of the snapshot to keep beside the predictions, a,b (default: all; '' none)."
    ),
    proba: bool = typer.Option(False, "--proba", help="Add a proba_<class> column per class (classifiers)."),
    log: bool = typer.Option(False, "--log", help="Also write the predictions to the model's prediction log."),
    limit: int = typer.Option(20, "--limit", help="Rows to print without --into."),
    as_json: bool = JsonOption,
) -> None:
    """Score SNAPSHOT with MODEL in chunks: print the first rows, or register them all with --into."""
    from workbench.models.batch import predict

    keep = None if columns is None else [c.strip() for c in columns.split(",") if c.strip()]
    with _progress(as_json) as on_progress:
        result = predict(model, snapshot, into=into, columns=keep, proba=proba, log=log, ws=workspace_or_server(),
                         progress=on_progress)  # fmt: skip
    if into is not None:
        _report_snapshot(model, snapshot, result, as_json)
    else:
        _report_frame(model, snapshot, result, limit, as_json)


@contextmanager
def _progress(as_json: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr while chunks are scored; none with --json or when stderr is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                   TimeElapsedColumn(), console=err_console, disable=as_json or not is_terminal(err_console.file),
                   transient=True)  # fmt: skip
    task = bar.add_task("predict", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _report_snapshot(model: str, snapshot: str, snap: Any, as_json: bool) -> None:
    if as_json:
        print_json({"model": model, "input": snapshot, "rows": snap.row_count, "created": snap.created,
                    "snapshot": snap.to_dict()})  # fmt: skip
        return
    what = "registered" if snap.created else "identical to the registered version"
    console.print(f"Scored {snapshot} with {model}: {snap.row_count:,} rows -> [bold]{snap.ref}[/] ({what})",
                  highlight=False)  # fmt: skip


def _report_frame(model: str, snapshot: str, frame: Any, limit: int, as_json: bool) -> None:
    head = frame.head(limit)
    if as_json:
        print_json({"model": frame.attrs.get("model", model), "input": frame.attrs.get("input", snapshot),
                    "rows": len(frame), "columns": [str(c) for c in frame.columns],
                    "predictions": head.to_dict(orient="records")})  # fmt: skip
        return
    print_table(None, [str(c) for c in frame.columns], head.itertuples(index=False), ids=())
    if len(frame) > limit:  # on stderr in a pipe, where stdout is TSV rows only
        (console if is_terminal() else err_console).print(
            f"... {len(frame) - limit:,} more rows (--into NAME registers them all as a snapshot)"
        )
