"""Retraining triggers: `workbench watch` reruns pipelines whose trigger snapshot got a new version.

The loop is deliberately simple polling (a catalog read per pipeline per tick): snapshots are
registered by people and jobs, minutes apart, so a few seconds of delay costs nothing, and
polling survives restarts without any subscription state. The decision itself is
`pipelines.changed` (the audit log knows which version each pipeline run used), so `watch`,
`pipeline run --if-changed` from cron and a CI job can all be used together without running a
pipeline twice for the same version, as long as they do not start at the very same moment.
Like `run_pipeline`, watching is refused against a team server (`pipelines.automation_workspace`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.governance.pipelines import (
    PipelineResult,
    automation_workspace,
    changed,
    run_pipeline,
    validate_file,
)
from workbench.workspace import Workspace


def check_once(
    file: str | Path | None = None,
    ws: Workspace | None = None,
    on_result: Callable[[PipelineResult], None] | None = None,
) -> list[PipelineResult]:
    """Run every triggered pipeline whose snapshot has a version its last run did not use."""
    ws = automation_workspace("Checking pipeline triggers", ws)
    results = []
    for name, pipeline in validate_file(file).items():
        if not pipeline.trigger:
            continue
        go, _why = changed(pipeline, ws)
        if not go:
            continue
        result = run_pipeline(name, if_changed=True, file=file, ws=ws)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def watch(
    interval: float = 5.0,
    once: bool = False,
    *,
    file: str | Path | None = None,
    ws: Workspace | None = None,
    on_result: Callable[[PipelineResult], None] | None = None,
    on_error: Callable[[WorkbenchError], None] | None = None,
    max_ticks: int | None = None,
) -> list[PipelineResult]:
    """Check triggers every `interval` seconds and run what changed (`once`: a single check).

    The pipelines file is re-read on every tick, so edits apply without a restart; while it is
    invalid, the error goes to `on_error` and the loop keeps waiting (with `once` it raises).
    """
    ws = automation_workspace("Watching pipeline triggers", ws)  # refused before the loop, not on each tick
    results: list[PipelineResult] = []
    ticks = 0
    while True:
        try:
            results += check_once(file, ws, on_result)
        except WorkbenchError as exc:
            if once or on_error is None:
                raise
            on_error(exc)
        ticks += 1
        if once or (max_ticks is not None and ticks >= max_ticks):
            return results
        time.sleep(interval)


__all__ = ["check_once", "watch"]
