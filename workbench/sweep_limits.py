"""The caps a sweep must fit in, checked before anything is queued.

A sweep is refused when it has more runs than `max_sweep_runs` or asks for more runs at a time
than `max_parallel`: one REST call, one widget click or one typo in a shell loop must not queue
ten thousand runs or start a billion kernels.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from workbench.errors import ValidationError
from workbench.sweep_grid import Space, sweep_size
from workbench.workspace import Workspace, current_workspace, positive_setting

#: Most runs one sweep may queue by default (workspace setting `max_sweep_runs`, env below).
DEFAULT_MAX_SWEEP_RUNS = 1000
#: Default most runs at a time, per core: room for notebooks that mostly wait (on I/O, remote
#: services), while each extra kernel still costs a process and its memory (~100 MB+ each).
PARALLEL_PER_CORE = 4
ENV_MAX_SWEEP_RUNS = "WORKBENCH_MAX_SWEEP_RUNS"
ENV_MAX_PARALLEL = "WORKBENCH_MAX_PARALLEL"


@dataclass(frozen=True)
class SweepLimits:
    """The caps a sweep must fit in (see `sweep_limits`)."""

    max_runs: int
    max_parallel: int


def sweep_limits(ws: Workspace | None = None) -> SweepLimits:
    """The caps on a sweep: `$WORKBENCH_MAX_SWEEP_RUNS` / setting `max_sweep_runs` (default 1,000
    runs) and `$WORKBENCH_MAX_PARALLEL` / setting `max_parallel` (default 4 x cores)."""
    ws = ws or current_workspace()
    return SweepLimits(
        max_runs=positive_setting(ws, "max_sweep_runs", ENV_MAX_SWEEP_RUNS, DEFAULT_MAX_SWEEP_RUNS),
        max_parallel=positive_setting(ws, "max_parallel", ENV_MAX_PARALLEL, PARALLEL_PER_CORE * default_parallel()),
    )


def _how_to_raise(setting: str, env: str) -> str:
    return f"raise the limit with ${env}=N or the workspace setting: wb.Workspace(...).set_setting({setting!r}, N)."


def check_parallel(parallel: Any, ws: Workspace | None = None) -> int:
    """Runs at a time for a sweep: `parallel` if it is a whole number within the cap, else a clear
    error; None means one per core (within the cap)."""
    cap = sweep_limits(ws).max_parallel
    if parallel is None:
        return min(default_parallel(), cap)
    if isinstance(parallel, bool) or not isinstance(parallel, numbers.Integral) or parallel < 1:
        raise ValidationError(f"parallel must be a whole number of at least 1, not {parallel!r}.")
    if parallel > cap:
        raise ValidationError(f"parallel={int(parallel):,} is more than the limit of {cap:,} runs at a time.",
                              "Ask for fewer, or " + _how_to_raise("max_parallel", ENV_MAX_PARALLEL))  # fmt: skip
    return int(parallel)


def check_sweep_size(space: Space, random: Any = None, ws: Workspace | None = None) -> int:
    """The number of runs of the sweep, refused (before anything is queued) past `max_sweep_runs`."""
    size = sweep_size(space, random)
    cap = sweep_limits(ws).max_runs
    if size > cap:
        raise ValidationError(f"This sweep has {size:,} runs, more than the limit of {cap:,} per sweep.",
                              "Sweep fewer values (or sample some with --random N), or "
                              + _how_to_raise("max_sweep_runs", ENV_MAX_SWEEP_RUNS))  # fmt: skip
    return size


def default_parallel() -> int:
    """One run per usable core: each kernel then gets a thread budget of about one core."""
    from workbench.runs.runner import usable_cores

    return usable_cores()
