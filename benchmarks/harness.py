"""Side-by-side measurement: interleaved A/B trials in fresh processes, medians and ratios.

Machines are noisy, so every comparison runs its contenders alternately (A, B, A, B, ...) for
several repetitions, each trial in a fresh Python process that reports its own wall time and
peak resident memory. A figure is the ratio of medians, shown with min/max so that noise is
visible rather than hidden.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Trial:
    seconds: float
    peak_rss_mb: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Series:
    """All trials of one contender."""

    label: str
    trials: list[Trial] = field(default_factory=list)

    def values(self, key: str = "seconds") -> list[float]:
        return [t.seconds if key == "seconds" else t.peak_rss_mb if key == "peak_rss_mb" else t.extra[key]
                for t in self.trials]  # fmt: skip

    def median(self, key: str = "seconds") -> float:
        return statistics.median(self.values(key))

    def summary(self, key: str = "seconds") -> dict[str, float]:
        vals = self.values(key)
        return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


@dataclass
class Comparison:
    """One benchmark figure: `subject` measured against `baseline`."""

    name: str
    subject: Series
    baseline: Series
    metric: str = "seconds"
    #: "lower" when a smaller ratio is better (time), "higher" when larger is better (throughput)
    better: str = "lower"
    target: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.subject.median(self.metric) / self.baseline.median(self.metric)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio <= self.target if self.better == "lower" else self.ratio >= self.target

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "metric": self.metric, "ratio": self.ratio, "better": self.better,
            "target": self.target, "met": self.met, "note": self.note,
            "subject": {"label": self.subject.label, **self.subject.summary(self.metric),
                        "peak_rss_mb": self.subject.summary("peak_rss_mb")},
            "baseline": {"label": self.baseline.label, **self.baseline.summary(self.metric),
                         "peak_rss_mb": self.baseline.summary("peak_rss_mb")},
        }  # fmt: skip


def run_trial(module: str, case: str, args: Sequence[str] = (), timeout: float = 1800) -> Trial:
    """Run `python -m <module> <case> <args>` and read the Trial JSON it prints last."""
    proc = subprocess.run([sys.executable, "-m", module, case, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"trial {module} {case} failed:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Trial(data.pop("seconds"), data.pop("peak_rss_mb"), data)


def interleave(contenders: dict[str, Callable[[], Trial]], repeats: int) -> dict[str, Series]:
    """Run each contender once per round, in alternating order, for `repeats` rounds."""
    series = {label: Series(label) for label in contenders}
    labels = list(contenders)
    for round_index in range(repeats):
        order = labels if round_index % 2 == 0 else labels[::-1]
        for label in order:
            series[label].trials.append(contenders[label]())
    return series


def report_trial(seconds: float, **extra: Any) -> None:
    """Called at the end of a trial process: print wall time and own peak RSS as JSON."""
    import resource

    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_rss_mb": max(peak_kb, children_kb) / 1024, **extra}))


def write_results(comparisons: list[Comparison], meta: dict[str, Any], name: str = "latest") -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [c.to_dict() for c in comparisons]}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (RESULTS_DIR / f"{name}.md").write_text(markdown_table(comparisons, meta))
    return RESULTS_DIR / f"{name}.json"


def markdown_table(comparisons: list[Comparison], meta: dict[str, Any]) -> str:
    lines = [
        f"Benchmarks ({meta.get('date', '')}, {meta.get('machine', '')})",
        "",
        "| benchmark | Workbench | baseline | ratio (median) | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        s, b = c.subject.summary(c.metric), c.baseline.summary(c.metric)
        unit = "s" if c.metric == "seconds" else ""
        target = "" if c.target is None else ("<= " if c.better == "lower" else ">= ") + f"{c.target:g}"
        met = "" if c.met is None else ("yes" if c.met else "**no**")
        lines.append(
            f"| {c.name} | {c.subject.label}: {s['median']:.3g}{unit} ({s['min']:.3g}-{s['max']:.3g}) "
            f"| {c.baseline.label}: {b['median']:.3g}{unit} ({b['min']:.3g}-{b['max']:.3g}) "
            f"| {c.ratio:.2f}x | {target} | {met} |"
        )
    notes = [f"- {c.name}: {c.note}" for c in comparisons if c.note]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"
