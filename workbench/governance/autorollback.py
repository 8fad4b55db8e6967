"""Automated rollback: a guard that moves a served alias back when its current version misbehaves.

The server (or `instrument`, which wraps a built server's ASGI app) feeds every /predict outcome
into a `RequestWindow`: the last N requests per model version, thread-safe. A `Guard` compares
the window of the version the alias points at with a `GuardPolicy` (error rate, p99 latency,
optionally input drift from the prediction log) and, on a breach, calls the registry's
`rollback` with the reason, so the audit log's `alias.moved` entry says exactly why. The model
server's alias watcher then swaps the previous version in within a fraction of a second.

Only server-side failures (5xx) count as errors: a 4xx is the client's mistake and says nothing
about the model, so 4xx requests are left out of the window entirely.

The rules, each decision logged and audited:
- A version the guard rolled away from is never chosen as a rollback target by the same guard,
  so two bad versions cannot flip-flop.
- The guard judges whatever the alias points at. If a person moves the alias back to a version
  the guard rolled away from, that is their decision: the guard says so (`guard.rejudging`) and
  judges that version again on new requests only, rolling it back again if it breaches again.
- A breach with nothing to roll back to (no earlier version, or only rejected ones) is reported
  (`guard.breach`, and a warning) and reported again every `report_every` seconds while it lasts:
  the guard never goes quiet on a failing model.

Live quality (`GuardPolicy.ab_metric`): every `ab_every` seconds the guard joins the prediction log
with the outcomes callers reported (`quality.outcomes.joined`, the last `AB_SINCE`) and compares
versions with `quality.abtest.compare_versions`:
- the alias holder against the version it would roll back to (its predecessor, whose outcomes are
  from when it served): significantly worse is a breach like any other, rolled back;
- a canary served next to it (`Guard(canary=...)`, `workbench guard --canary V=F`) against the
  holder: significantly worse stops the canary (its fraction becomes 0: every request goes to the
  holder), in memory, for this server process.
Both are audited with the comparison's numbers (`ABResult.to_dict()`). The test's alpha defaults to
0.001, not 0.05, because the guard looks again and again as outcomes arrive: each look at 0.05 is
another 5 % chance of a false "worse", and a few dozen looks make one likely; at 0.001 two equal
versions checked every 50 outcomes up to 2,000 get a false verdict in about 1.5 % of simulations
(docs/monitoring.md). The price is that only clear differences are caught early. Nothing is judged
before both versions have `ab_min_outcomes` outcomes.

Against a team server (no `ws`, a server configured) the guard works by composition: it reads the
alias, its history and the drift report from the server and rolls back there (audited by the server
as `alias.moved`, with the guard's reason, under the guard's user), and `serve_guarded` serves the
server's model. Rolling back needs the maintainer role, so a guard whose token lacks it is refused
when it starts rather than at its first breach. Its own notes (`guard.breach`, `guard.rejudging`)
go to its log only: a client cannot write the server's audit log. The live checks read the
workspace's logs, so they need the workspace folder (a guard started with `ws`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.errors import ValidationError, WorkbenchError
from workbench.names import parse_ref
from workbench.runs.events import now_iso
from workbench.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    import pandas as pd

    from workbench.quality.abtest import ABResult
    from workbench.serving.app import Canary

DEFAULT_WINDOW = 200
#: How far back the live checks read predictions and outcomes.
AB_SINCE = "7d"
log = logging.getLogger("workbench.guard")


@dataclass
class WindowStats:
    version: int
    requests: int
    errors: int
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "requests": self.requests, "errors": self.errors,
                "error_rate": self.error_rate, "p99_ms": self.p99_ms}  # fmt: skip


class RequestWindow:
    """The outcomes of the last `size` requests of each model version (thread-safe).

    `record` is called on the request path, so it only appends to a bounded deque under a lock;
    the statistics are computed by the guard's thread.
    """

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if size < 1:
            raise ValidationError(f"The window must hold at least 1 request, got {size}.")
        self.size = size
        self._lock = threading.Lock()
        self._by_version: dict[int, deque[tuple[bool, float]]] = {}

    def record(self, version: int, status: int, latency_s: float) -> None:
        """One /predict outcome; 4xx (client mistakes) are not the model's and are ignored."""
        if 400 <= status < 500:
            return
        with self._lock:
            window = self._by_version.get(version)
            if window is None:
                window = self._by_version[version] = deque(maxlen=self.size)
            window.append((status >= 500, latency_s))

    def stats(self, version: int) -> WindowStats:
        with self._lock:
            items = list(self._by_version.get(version, ()))
        if not items:
            return WindowStats(version, 0, 0, None)
        latencies = sorted(latency for _, latency in items)
        rank = max(0, math.ceil(0.99 * len(latencies)) - 1)  # nearest-rank p99
        return WindowStats(version, len(items), sum(1 for failed, _ in items if failed), latencies[rank] * 1000)

    def clear(self, version: int | None = None) -> None:
        with self._lock:
            if version is None:
                self._by_version.clear()
            else:
                self._by_version.pop(version, None)


@dataclass
class GuardPolicy:
    """When to roll back. `None` disables a check; nothing is judged on fewer than `min_requests`."""

    max_error_rate: float | None = 0.05
    max_p99_ms: float | None = None
    max_drift_psi: float | None = None  # any input column's PSI above this (from the prediction log)
    min_requests: int = 20
    ab_metric: str | None = None  # a `quality.abtest.METRICS` name: roll back when significantly worse on it
    ab_alpha: float = 0.001  # stricter than 0.05: the guard looks again at every check (see the module doc)
    ab_min_outcomes: int = 30  # per version, before any live verdict

    def __post_init__(self) -> None:
        if self.max_error_rate is not None and not 0 <= self.max_error_rate <= 1:
            raise ValidationError(f"--max-error-rate must be between 0 and 1, got {self.max_error_rate}.")
        for label, value in (("--max-p99-ms", self.max_p99_ms), ("--max-drift-psi", self.max_drift_psi)):
            if value is not None and value <= 0:
                raise ValidationError(f"{label} must be positive, got {value}.")
        if self.min_requests < 1:
            raise ValidationError(f"--min-requests must be at least 1, got {self.min_requests}.")
        if self.ab_metric is not None:
            from workbench.quality.abtest import METRICS

            if self.ab_metric not in METRICS:
                raise ValidationError(f"--ab-metric {self.ab_metric!r} is not a live metric.",
                                      f"Use one of {', '.join(METRICS)}.")  # fmt: skip
        if not 0 < self.ab_alpha < 1:
            raise ValidationError(f"--ab-alpha must be between 0 and 1, got {self.ab_alpha}.",
                                  "0.001 suits a check repeated at every tick.")  # fmt: skip
        if self.ab_min_outcomes < 1:
            raise ValidationError(f"--ab-min-outcomes must be at least 1, got {self.ab_min_outcomes}.")

    def breaches(self, stats: WindowStats) -> list[str]:
        """Why `stats` call for a rollback (empty: keep serving)."""
        if stats.requests < self.min_requests:
            return []
        reasons = []
        if self.max_error_rate is not None and stats.error_rate > self.max_error_rate:
            reasons.append(f"error rate {stats.error_rate:.2f} > {self.max_error_rate:g} "
                           f"({stats.errors} of the last {stats.requests} requests failed)")  # fmt: skip
        if self.max_p99_ms is not None and stats.p99_ms is not None and stats.p99_ms > self.max_p99_ms:
            reasons.append(f"p99 latency {stats.p99_ms:.0f} ms > {self.max_p99_ms:g} ms "
                           f"over the last {stats.requests} requests")  # fmt: skip
        return reasons


@dataclass
class Decision:
    """What the guard did about a breach: rolled back (`to_version`), or could not (None); or, with
    `action` "canary_stopped", stopped the canary `from_version`, leaving `to_version` the alias holder."""

    model: str
    alias: str
    from_version: int
    to_version: int | None
    reason: str
    reasons: list[str] = field(default_factory=list)
    action: str = "rollback"  # | "canary_stopped"
    evidence: dict[str, Any] = field(default_factory=dict)  # e.g. {"ab": ABResult.to_dict()}

    @property
    def summary(self) -> str:
        """One line for a terminal or a log."""
        ref, why = f"{self.model}@{self.alias}", "; ".join(self.reasons)
        if self.action == "canary_stopped":
            return f"stopped the canary version {self.from_version} of {ref}, all traffic to {self.to_version}: {why}"
        if self.to_version is None:
            return f"{ref} version {self.from_version} breached its guard but there is nothing to roll back to: {why}"
        return f"rolled {ref} back from version {self.from_version} to {self.to_version}: {why}"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Guard:
    """Watches `name@alias` and rolls it back when the current version breaches the policy."""

    def __init__(self, ref: str, policy: GuardPolicy, window: RequestWindow | None = None, ws: Workspace | None = None,
                 drift_every: float = 30.0, report_every: float = 60.0, *, ab_every: float = 30.0,
                 canary: Canary | None = None) -> None:  # fmt: skip
        """`ws` None: the team server when one is configured (see the module doc), else the current workspace.
        `canary`: the served `serving.app.Canary`, stopped when live outcomes show it worse (needs `ab_metric`)."""
        parsed = parse_ref(ref, "model", allow_alias=True)
        if parsed.alias is None:
            raise ValidationError(f"Guard an alias, like {parsed.name}@production, not {ref!r}.",
                                  "A pinned version or 'latest' cannot be rolled back.")  # fmt: skip
        self.name, self.alias = parsed.name, parsed.alias
        self.policy = policy
        self.window = window or RequestWindow()
        self.ws = _guarded_workspace(ws, self.ref)  # None: the team server's registry
        self.drift_every = drift_every
        self.report_every = report_every
        self.ab_every = ab_every
        self.canary = canary
        self._last_ab = -math.inf
        if policy.ab_metric is not None and self.ws is None:
            raise ValidationError(f"The live checks of {self.ref} (--ab-metric) read the workspace's prediction and "
                                  "outcome logs, which a team server does not serve yet.",
                                  "Run the guard on the workspace folder itself (--home).")  # fmt: skip
        self.rejected: set[int] = set()
        self._serving: int | None = None  # the version judged at the last check
        self._last_report: dict[int, float] = {}  # version -> when a breach without target was last reported
        self.decisions: list[Decision] = []
        self._since: dict[int, str] = {}  # version -> when this guard first saw it serving (drift window)
        self._last_drift = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.alias}"

    def current_version(self) -> int:
        from workbench.models.registry import get_version

        return get_version(self.ref, self.ws).version

    def _drift_breaches(self, version: int) -> list[str]:
        from workbench.serving.monitor import drift_report

        if self.policy.max_drift_psi is None or time.monotonic() - self._last_drift < self.drift_every:
            return []
        self._last_drift = time.monotonic()
        try:
            report = drift_report(f"{self.name}@{version}", since=self._since.get(version), ws=self.ws)
        except ValidationError:  # no predictions logged yet, or no lineage to compare with
            return []
        if report.live_rows < self.policy.min_requests:
            return []
        table = report.table[report.table["kind"] != "prediction"]
        drifted = table[table["psi"] > self.policy.max_drift_psi]
        return [f"input drift: PSI of {row.column} {row.psi:.2f} > {self.policy.max_drift_psi:g} "
                f"over {report.live_rows} logged predictions" for row in drifted.itertuples()]  # fmt: skip

    def _live_frame(self) -> pd.DataFrame | None:
        """The joined predictions and outcomes when a live check is configured and due (throttled:
        joining reads the logs), else None."""
        if self.policy.ab_metric is None or time.monotonic() - self._last_ab < self.ab_every:
            return None
        from workbench.quality.metrics import parse_since
        from workbench.quality.outcomes import joined

        self._last_ab = time.monotonic()
        frame, _ = joined(self.ws, self.name, parse_since(AB_SINCE))
        return frame

    def _compare(self, frame: pd.DataFrame, a: int, b: int) -> ABResult:
        from workbench.quality.abtest import compare_versions

        policy = self.policy
        return compare_versions(frame, a, b, str(policy.ab_metric), alpha=policy.ab_alpha,
                                min_n=policy.ab_min_outcomes)  # fmt: skip

    def _ab_breach(self, frame: pd.DataFrame | None, current: int) -> ABResult | None:
        """The comparison showing `current` significantly worse than the version it would roll back to, if so."""
        target = self._target(current) if frame is not None else None
        if target is None:
            return None
        result = self._compare(frame, target, current)
        return result if result.verdict == "worse" else None

    def _judge_canary(self, frame: pd.DataFrame | None, current: int) -> Decision | None:
        """Stop the canary (all traffic to the alias holder) when it is significantly worse than `current`."""
        canary = self.canary
        if frame is None or canary is None or canary.fraction <= 0:
            return None
        version = canary.model.version.version
        if version == current:
            return None
        result = self._compare(frame, current, version)
        if result.verdict != "worse":
            return None
        canary.fraction = 0.0
        reason = f"canary of {self.ref} stopped: {result.reason}"
        decision = Decision(self.name, self.alias, version, current, reason, [result.reason], "canary_stopped",
                            {"ab": result.to_dict()})  # fmt: skip
        log.warning("guard: %s", decision.summary)
        self._audit("guard.canary_stopped", {"canary": version, "serving": current, "ab": result.to_dict()})
        self.decisions.append(decision)
        return decision

    def _target(self, current: int) -> int | None:
        """The most recent earlier holder of the alias that this guard has not rejected."""
        from workbench.models.registry import get_model

        history = [h for h in get_model(self.name, self.ws)["alias_history"] if h["alias"] == self.alias]
        for entry in history:  # newest first
            for version in (entry["version"], entry["previous"]):
                if version is not None and version != current and version not in self.rejected:
                    return int(version)
        return None

    def check(self) -> Decision | None:
        """Judge the version the alias points at now (and the canary); on a breach roll back, or
        report that it cannot. Returns the last decision taken, if any."""
        from workbench.models.registry import rollback

        current = self.current_version()
        if current != self._serving:
            self._now_serving(current)
        stats = self.window.stats(current)
        frame = self._live_frame()
        stopped = self._judge_canary(frame, current)
        ab = self._ab_breach(frame, current)
        reasons = self.policy.breaches(stats) + self._drift_breaches(current) + ([ab.reason] if ab else [])
        if not reasons:
            self._last_report.pop(current, None)
            return stopped
        evidence = {"window": stats.to_dict(), **({"ab": ab.to_dict()} if ab else {})}
        target = self._target(current)
        if target is None:
            return self._report_stuck(current, reasons, evidence) or stopped
        self.rejected.add(current)
        reason = f"auto-rollback of {self.ref} from version {current}: {'; '.join(reasons)}"
        rollback(self.name, self.alias, to=target, reason=reason, ws=self.ws)
        decision = Decision(self.name, self.alias, current, target, reason, reasons, evidence=evidence)
        log.warning("guard: %s", decision.summary)
        self._audit("guard.rolled_back", {"version": current, "rolled_back_to": target, "reasons": reasons,
                                          **evidence})  # fmt: skip
        self.decisions.append(decision)
        self._serving = target
        self._since[target] = now_iso()
        return decision

    def _now_serving(self, current: int) -> None:
        """The alias moved to `current` (not by this guard): judge it from here on."""
        self._serving = current
        self._since[current] = now_iso()
        if current in self.rejected:  # moved back by someone else: their call, judged afresh
            self.window.clear(current)
            why = (f"{self.ref} was moved back to version {current}, which this guard rolled away from; "
                   "judging it again on new requests")  # fmt: skip
            log.warning("guard: %s", why)
            self._audit("guard.rejudging", {"version": current, "rule": why})

    def _report_stuck(self, current: int, reasons: list[str], evidence: dict[str, Any]) -> Decision | None:
        """A breach with nothing to roll back to: log + audit it, again every `report_every` s."""
        last = self._last_report.get(current)
        if last is not None and time.monotonic() - last < self.report_every:
            return None
        self._last_report[current] = time.monotonic()
        reason = f"breach of {self.ref} at version {current} with nothing to roll back to: {'; '.join(reasons)}"
        decision = Decision(self.name, self.alias, current, None, reason, reasons, evidence=evidence)
        log.error("guard: %s", decision.summary)
        self._audit("guard.breach", {"version": current, "reasons": reasons, "rolled_back_to": None,
                                     "why": "no earlier version the guard may roll back to", **evidence})  # fmt: skip
        self.decisions.append(decision)
        return decision

    def _audit(self, action: str, details: dict[str, Any]) -> None:
        from workbench import audit
        from workbench.catalog import transaction

        if self.ws is None:  # a team server's audit log is the server's to write; the caller logged it
            return
        with transaction(self.ws) as con:
            audit.record(con, action, f"model:{self.ref}", details)

    def run(self, interval: float = 1.0, once: bool = False,
            on_decision: Callable[[Decision], None] | None = None,
            on_error: Callable[[Exception], None] | None = None) -> list[Decision]:  # fmt: skip
        """Check every `interval` seconds until `stop()` (or once); returns the rollbacks made."""
        while True:
            try:
                decision = self.check()
                if decision is not None and on_decision is not None:
                    on_decision(decision)
            except WorkbenchError as exc:
                if once or on_error is None:
                    raise
                on_error(exc)
            if once or self._stop.wait(interval):
                return self.decisions

    def start(self, interval: float = 0.5, on_error: Callable[[Exception], None] | None = None) -> Guard:
        """Run the checks in a daemon thread (next to a server in the same process)."""
        self._stop.clear()
        report = on_error or (lambda exc: log.error("guard: %s", exc))
        self._thread = threading.Thread(target=self.run, args=(interval, False, None, report),
                                        name="workbench-guard", daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _guarded_workspace(ws: Workspace | None, ref: str) -> Workspace | None:
    """The workspace folder a guard works on: `ws`, else None for a configured team server (after
    checking that its user may roll back), else the current workspace."""
    if ws is not None:
        return ws
    from workbench.remote.dispatch import remote_store

    store = remote_store()
    if store is None:
        return current_workspace()
    from workbench.server.roles import MAINTAINER, allows

    me = store.client.me()
    if not allows(me.get("role", ""), MAINTAINER):
        raise WorkbenchError(
            f"A guard of {ref} on {store.remote.url} could never roll it back: rolling back needs role "
            f"{MAINTAINER}; {me.get('name')} is {me.get('role')}.",
            "Start the guard with a maintainer's token (WORKBENCH_TOKEN or 'workbench login'), "
            "or ask an admin of the server for the role.",
        )
    return None


class _RecordingApp:
    """ASGI wrapper feeding each /predict outcome (status, latency, version) into a window."""

    def __init__(self, app: Any, slot: Any, window: RequestWindow) -> None:
        self.app, self.slot, self.window = app, slot, window
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/predict":
            await self.app(scope, receive, send)
            return
        version = self.slot.current.version.version
        status = 500
        started = time.perf_counter()

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", []):
                    if key.lower() == b"x-model-version":
                        version = int(value)  # a canary answers with its own version
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            self.window.record(version, status, time.perf_counter() - started)


def instrument(server: Any, window: RequestWindow) -> None:
    """Make a built (not yet listening) `serving.server.Server` feed `window` from /predict."""
    server.app = _RecordingApp(server.app, server.slot, window)


def serve_guarded(ref: str, policy: GuardPolicy, *, window: int = DEFAULT_WINDOW, host: str = "127.0.0.1",
                  port: int = 8000, interval: float = 1.0, token: str | None = None, ws: Workspace | None = None,
                  on_decision: Callable[[Decision], None] | None = None, canary: str | None = None,
                  ab_every: float = 30.0) -> None:  # fmt: skip
    """`workbench guard`: serve `ref` (an alias) with a guard in the same process (blocking);
    `token` as for `build_server` (WORKBENCH_SERVE_TOKEN when not given). Without `ws` and with a team
    server configured, the server's model is served and rolled back on the server. `canary`
    ("VERSION=FRACTION", as `workbench serve --canary`) serves a canary that the guard stops when
    live outcomes show it worse (`policy.ab_metric`)."""
    from workbench.serving.server import build_server, serve_forever

    guard = Guard(ref, policy, RequestWindow(window), ws, ab_every=ab_every)  # refused here if it could never roll back
    server = build_server(ref, host=host, port=port, token=token, ws=guard.ws, canary=canary)
    guard.canary = served_canary(server) if canary else None
    instrument(server, guard.window)
    guard.run(once=True)  # a bad ref or policy fails here, before listening

    def loop() -> None:
        guard.run(interval, on_decision=on_decision, on_error=lambda exc: log.error("guard: %s", exc))

    threading.Thread(target=loop, name="workbench-guard", daemon=True).start()
    try:
        serve_forever(server)
    finally:
        guard.stop()


def served_canary(server: Any) -> Canary | None:
    """The `Canary` object a built model server splits requests with (its fraction is what the guard
    sets to 0), which `serving.app.create_app` keeps in `app.state.canary`."""
    canary = getattr(getattr(server.app, "state", None), "canary", None)
    if canary is None and server.canary:
        raise WorkbenchError("This model server does not expose its canary (app.state.canary), so the guard "
                             "could not stop it.", "Serve the canary with 'workbench serve --canary' instead, "
                             "or upgrade workbench.")  # fmt: skip
    return canary


__all__ = ["Decision", "Guard", "GuardPolicy", "RequestWindow", "WindowStats", "instrument", "serve_guarded",
           "served_canary"]  # fmt: skip
