"""Retraining triggers: `workbench watch` reruns pipelines whose trigger fired: their snapshot got a
new version (`on: {snapshot: NAME}`), or a served model's live metric fell past a threshold
(`on: {live: {model, metric, below|above, min_outcomes, since, alias, alpha}}`).

A live trigger judges the version holding `alias` on its served (not shadow) predictions since
`since` that have an outcome, and fires only when there are at least `min_outcomes` and the metric
is confidently past the threshold: the upper end of its (1 - alpha) interval is below it (`below`,
accuracy and F1) or the lower end above it (`above`, error rate, log loss, MAE, RMSE). Accuracy and
error rate use the Wilson score interval; the other metrics a seeded percentile bootstrap (the A/B
statistics' per-row sums, `quality.stats`). A point estimate just under the threshold on a few
dozen outcomes is noise, and retraining on noise is expensive. It fires once per served version:
the pipeline run records what fired it (model, version, n, value, bound, threshold) in its audit
entry, and a later check of the same version is skipped; a new version is judged afresh.

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
from typing import TYPE_CHECKING, Any

from workbench.errors import NotFoundError, WorkbenchError
from workbench.governance.pipelines import (
    PipelineResult,
    automation_workspace,
    changed,
    run_pipeline,
    validate_file,
)
from workbench.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd

    from workbench.audit import AuditEntry
    from workbench.governance.pipeline_spec import Pipeline

#: Bootstrap resamples for the bound of a metric that is not a proportion (F1, log loss, MAE, RMSE).
N_BOOT = 2000


def check_once(
    file: str | Path | None = None,
    ws: Workspace | None = None,
    on_result: Callable[[PipelineResult], None] | None = None,
) -> list[PipelineResult]:
    """Run every triggered pipeline whose snapshot has a version its last run did not use."""
    ws = automation_workspace("Checking pipeline triggers", ws)
    results = []
    for name, pipeline in validate_file(file).items():
        if not (pipeline.trigger or pipeline.live):
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


def live_check(spec: dict[str, Any], ws: Workspace) -> tuple[bool, str, dict[str, Any]]:
    """Whether the live metric of `spec["model"]@spec["alias"]` is confidently past the threshold
    (see the module doc): (fire, why, the numbers: model, alias, version, metric, n, value, bound,
    threshold, side, alpha, since, min_outcomes)."""
    from workbench.models.registry import get_version
    from workbench.quality.metrics import parse_since
    from workbench.quality.outcomes import joined

    ref = f"{spec['model']}@{spec['alias']}"
    numbers: dict[str, Any] = {"kind": "live", "model": spec["model"], "alias": spec["alias"],
                               "metric": spec["metric"], "side": spec["side"], "threshold": spec["threshold"],
                               "alpha": spec["alpha"], "since": spec["since"],
                               "min_outcomes": spec["min_outcomes"]}  # fmt: skip
    try:
        version = get_version(ref, ws).version
    except NotFoundError:
        return False, f"{ref} does not exist yet", numbers
    frame, _ = joined(ws, spec["model"], parse_since(spec["since"]))
    rows = frame[(frame["version"] == version) & ~frame["shadow"].astype(bool) & frame["outcome"].notna()]
    n, value, bound = _bound(rows, spec["metric"], spec["side"], spec["alpha"])
    numbers |= {"version": version, "n": n, "value": value, "bound": bound}
    level = f"{100 * (1 - spec['alpha']):g}%"
    if n < spec["min_outcomes"]:
        return False, (f"{ref} (version {version}) has {n} outcomes in the last {spec['since']}, fewer than the "
                       f"{spec['min_outcomes']} needed to judge {spec['metric']}"), numbers  # fmt: skip
    past = bound < spec["threshold"] if spec["side"] == "below" else bound > spec["threshold"]
    said = (f"{spec['metric']} of {ref} (version {version}) is {value:.4g} over {n} outcomes in the last "
            f"{spec['since']}, {level} bound {bound:.4g}")  # fmt: skip
    if past:
        return True, f"{said}: confidently {spec['side']} {spec['threshold']:g}", numbers
    return False, f"{said}: not confidently {spec['side']} {spec['threshold']:g}", numbers


def _bound(rows: pd.DataFrame, metric: str, side: str, alpha: float) -> tuple[int, float, float]:
    """(outcomes usable for `metric`, its value, the end of its two-sided (1 - alpha) interval on
    `side`: the upper end for "below", the lower for "above"). Rows are prepared as the A/B
    statistics prepare them, so the value agrees with `compare_versions` and the live table."""
    import numpy as np

    from workbench.quality import abtest, stats

    spec = abtest.METRICS[metric]
    usable = abtest._usable(rows, spec, -1)  # noqa: SLF001 (the A/B module's row preparation, shared on purpose)
    n = len(usable)
    if n == 0:
        return 0, float("nan"), float("nan")
    pick = 1 if side == "below" else 0
    if spec.proportion:
        hits = int((usable["truth"].to_numpy(object) == usable["guess"].to_numpy(object)).sum())
        hits = hits if metric == "accuracy" else n - hits
        return n, hits / n, stats.wilson_interval(hits, n, alpha)[pick]
    classes = abtest._classes(usable) if metric == "f1" else []  # noqa: SLF001
    per_row = stats.metric_rows(metric, usable["truth"].to_numpy(), usable["guess"].to_numpy(),
                                usable.get("p_true"), classes)  # fmt: skip
    value = float(stats.metric_from_sums(metric, per_row.sum(axis=0)[None, :], n)[0])
    resampled = stats.metric_from_sums(metric, stats.bootstrap_sums(per_row, N_BOOT, np.random.default_rng(0)), n)
    return n, value, stats.percentile_interval(resampled, alpha)[pick]


def live_trigger(pipeline: Pipeline, previous: AuditEntry | None,
                 ws: Workspace | None) -> tuple[bool, str, dict[str, Any] | None]:  # fmt: skip
    """`pipelines.trigger_state` of a live trigger: fire when `live_check` says so, unless the
    pipeline's last run was already fired by the same version (`previous`: its audit entry)."""
    from workbench.workspace import current_workspace

    fire, why, numbers = live_check(pipeline.live or {}, ws or current_workspace())
    if not fire:
        return False, why, None
    before = ((previous.details or {}).get("trigger") or {}) if previous else {}
    if before.get("kind") == "live" and before.get("model") == numbers["model"] \
            and before.get("version") == numbers["version"]:  # fmt: skip
        run = previous.details.get("pipeline_run")
        return False, f"{why}; pipeline run {run} was already triggered by this version", None
    return True, why, numbers


__all__ = ["check_once", "live_check", "watch"]
