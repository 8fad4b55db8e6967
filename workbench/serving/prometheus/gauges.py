"""Drift and live-quality gauges on the model server's /metrics, computed off the scrape path.

`workbench monitor` computes input drift (`serving.monitor.drift_report`) and live quality
(`quality.live.live_quality`) from the prediction log and the outcomes callers report; Prometheus
needs the same numbers as gauges to alert on them. Both reports read the logs, load the training
snapshot and predict it, which takes far longer than a scrape may: so a scrape only returns the
values computed last, and when they are older than `refresh` seconds it starts one recomputation
in a background thread (never two at once). A server nobody scrapes computes nothing, and the
values are at most `refresh` seconds plus a scrape interval old; `workbench_monitor_refreshed_
timestamp_seconds` says when they were computed. A report that cannot be computed yet (no
prediction logged, no training snapshot in the model's lineage, no outcome) leaves its gauges out
rather than exporting a number nobody measured.

The look-back is a rolling window (default the last hour): the gauges describe recent traffic,
which is what an alert should watch, not everything since the server was first started.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator

import pandas as pd
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workbench.errors import ValidationError, WorkbenchError
from workbench.quality.metrics import parse_span
from workbench.workspace import Workspace

log = logging.getLogger("workbench.serving")

#: Seconds between recomputations, overridable for a server with WORKBENCH_METRICS_REFRESH.
REFRESH_ENV = "WORKBENCH_METRICS_REFRESH"
DEFAULT_REFRESH = 60.0
#: How far back the gauges look, overridable with WORKBENCH_METRICS_LOOKBACK ("15m", "1h", "1d").
LOOKBACK_ENV = "WORKBENCH_METRICS_LOOKBACK"
DEFAULT_LOOKBACK = "1h"
#: One window wider than any look-back: `live_quality` then gives one row per version over it.
_ONE_WINDOW = "36500d"

DRIFT = "workbench_drift_psi"
QUALITY = "workbench_live_quality"
OUTCOMES = "workbench_live_outcomes"
REFRESHED = "workbench_monitor_refreshed_timestamp_seconds"
#: The gauges this module may export (the alert rules and the dashboard may use only these and
#: `app.ServerMetrics`' metrics).
GAUGE_NAMES = (DRIFT, QUALITY, OUTCOMES, REFRESHED)


def refresh_seconds() -> float:
    """The refresh period from the environment (a positive number of seconds), else the default;
    a wrong setting is refused, so that the server does not start with a period nobody chose."""
    text = os.environ.get(REFRESH_ENV, "").strip()
    if not text:
        return DEFAULT_REFRESH
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ValidationError(f"Invalid {REFRESH_ENV} {text!r}.", "Give a positive number of seconds, e.g. 60.")
    return value


class MonitorGauges(Collector):
    """A prometheus_client collector over model `model`'s drift and live quality in `ws`.

    `served` names the version(s) whose input drift is reported (the server's current version, read
    at each refresh so that a hot swap is followed)."""

    def __init__(self, ws: Workspace, model: str, served: Callable[[], list[int]], *, refresh: float | None = None,
                 lookback: str | None = None) -> None:  # fmt: skip
        self.ws, self.model, self.served = ws, model, served
        self.refresh = refresh if refresh is not None else refresh_seconds()
        self.lookback = lookback or os.environ.get(LOOKBACK_ENV) or DEFAULT_LOOKBACK
        self.span = parse_span(self.lookback, LOOKBACK_ENV)  # a wrong setting stops the server at start
        self._families: list[GaugeMetricFamily] = []
        self._started = -math.inf  # monotonic time of the last refresh's start
        self._lock = threading.Lock()
        self._running = False
        self._warned: set[str] = set()

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing to check at registration (and no computation then): the names are fixed."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The values computed last; starts a recomputation when they are stale (never waits for it)."""
        self._maybe_refresh()
        yield from self._families

    def _maybe_refresh(self) -> None:
        with self._lock:
            if self._running or time.monotonic() - self._started < self.refresh:
                return
            self._running, self._started = True, time.monotonic()
        threading.Thread(target=self._refresh, name="workbench-metrics", daemon=True).start()

    def _refresh(self) -> None:
        try:
            self._families = self.compute()
        finally:
            with self._lock:
                self._running = False

    def refresh_now(self) -> list[GaugeMetricFamily]:
        """Compute the gauges in this thread and keep them (tests, a first value at start)."""
        self._families = self.compute()
        return self._families

    def compute(self) -> list[GaugeMetricFamily]:
        """Every gauge over the look-back: the families of the reports that could be computed."""
        since = pd.Timestamp.now(tz="UTC") - self.span
        families = [*self._guarded("drift", lambda: self._drift(since)),
                    *self._guarded("live quality", lambda: self._quality(since))]  # fmt: skip
        families = [family for family in families if family.samples]  # a family with no value says nothing
        refreshed = GaugeMetricFamily(REFRESHED, "When the drift and live-quality gauges were computed (Unix time)")
        refreshed.add_metric([], time.time())
        return [*families, refreshed]

    def _guarded(self, what: str, compute: Callable[[], list[GaugeMetricFamily]]) -> list[GaugeMetricFamily]:
        """`compute()`, or no gauges when it cannot be computed: quietly for a user-level reason (nothing
        logged yet, no training snapshot), with one warning per distinct failure for anything else."""
        try:
            return compute()
        except WorkbenchError as exc:
            log.debug("No %s gauges for %s: %s", what, self.model, exc.message)
        except Exception as exc:  # a broken log line or a model that fails on its training data
            message = f"{type(exc).__name__}: {exc}"
            if message not in self._warned:
                self._warned.add(message)
                log.warning("The %s gauges of %s could not be computed: %s", what, self.model, message)
        return []

    def _drift(self, since: pd.Timestamp) -> list[GaugeMetricFamily]:
        from workbench.serving.monitor import drift_report

        family = GaugeMetricFamily(DRIFT, f"Population stability index of the inputs (and predictions) over the "
                                   f"last {self.lookback} against the training snapshot",
                                   labels=["version", "column"])  # fmt: skip
        for version in self.served():
            report = drift_report(f"{self.model}@{version}", since=since.isoformat(), ws=self.ws)
            for column, value in zip(report.table["column"], report.table["psi"], strict=True):
                if not math.isnan(value):
                    family.add_metric([str(version), str(column)], float(value))
        return [family]

    def _quality(self, since: pd.Timestamp) -> list[GaugeMetricFamily]:
        from workbench.quality.live import live_quality

        report = live_quality(self.model, window=_ONE_WINDOW, since=since.isoformat(), ws=self.ws)
        quality = GaugeMetricFamily(QUALITY, f"Task metric over the predictions of the last {self.lookback} that have "
                                    "an outcome (accuracy, f1, log_loss or mae, rmse)",
                                    labels=["version", "shadow", "metric"])  # fmt: skip
        outcomes = GaugeMetricFamily(OUTCOMES, f"Predictions of the last {self.lookback} with an outcome reported",
                                     labels=["version", "shadow"])  # fmt: skip
        for row in report.table.to_dict(orient="records"):
            labels = [str(row["version"]), "true" if row["shadow"] else "false"]
            outcomes.add_metric(labels, float(row["outcomes"]))
            for metric in report.metrics:
                if not pd.isna(row[metric]):
                    quality.add_metric([*labels, metric], float(row[metric]))
        return [quality, outcomes]
