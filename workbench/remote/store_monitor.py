"""The monitoring part of `RemoteStore` (see `remote.store`): drift and live quality computed by a team server.

The server has the prediction logs, failure logs and outcomes every remote model server ships to it
(`POST /models/{name}/predictions`, `.../logs/{kind}`), the training snapshot and the model, so it
computes the drift report (`GET /models/{name}/monitor`), the live quality (`.../live`) and the A/B
summary (`.../ab`); this returns them as the local functions do (`DriftReport`, `LiveQuality`, a
dict). Bulk outcomes (`wb.log_outcomes`) are read and checked here, every row before any is sent,
then sent in requests the server's body limit takes (`POST .../outcomes`, role editor).
The name is checked here first, with the library's own message, so a bad one costs no request.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from workbench.names import validate_name
from workbench.remote.client import Client
from workbench.remote.config import Remote

if TYPE_CHECKING:
    from workbench.quality.live import LiveQuality
    from workbench.serving.monitor import DriftReport

#: Most bytes of outcomes in one request (the server takes JSON bodies up to 1 MiB).
OUTCOME_BATCH_BYTES = 768 * 1024


class MonitorStore:
    """Monitoring of served models, answered by a team server."""

    remote: Remote
    client: Client

    def drift_report(self, ref: str, *, since: str | None = None, threshold: float | None = None) -> DriftReport:
        """`monitor.drift_report` on the server: REF is NAME (all versions), NAME@VERSION or NAME@ALIAS."""
        from workbench.serving.monitor import DEFAULT_THRESHOLD, DriftReport

        name, _, at = ref.partition("@")
        params = {"threshold": DEFAULT_THRESHOLD if threshold is None else threshold}
        params.update({key: value for key, value in (("version", at), ("since", since)) if value})
        answer = self.client.get(f"/models/{validate_name(name, 'model name')}/monitor", params=params)
        return DriftReport.from_dict(answer)

    def live_quality(self, model: str, window: str = "1h", since: str | None = "7d") -> LiveQuality:
        """`quality.live.live_quality` on the server (`since` None: everything, sent as "")."""
        from workbench.quality.live import LiveQuality
        from workbench.quality.metrics import parse_since, parse_span

        parse_span(window, "--window")  # the library's messages, before any request
        parse_since(since)
        answer = self.client.get(f"/models/{validate_name(model, 'model name')}/live",
                                 params={"window": window, "since": since or ""})  # fmt: skip
        return LiveQuality.from_dict(answer)

    def ab_summary(self, model: str, since: str | None = None) -> dict[str, Any] | None:
        """`quality.live.ab_summary` on the server."""
        answer = self.client.get(f"/models/{validate_name(model, 'model name')}/ab", params={"since": since or ""})
        return answer["ab"]

    def outcome_counts(self, model: str) -> dict[str, int]:
        """`quality.outcomes.outcome_counts` on the server."""
        return dict(self.client.get(f"/models/{validate_name(model, 'model name')}/outcomes"))

    def log_outcomes(self, model: str, data: Any, id_column: str = "request_id", outcome_column: str = "outcome",
                     row_column: str | None = None) -> dict[str, Any]:  # fmt: skip
        """`wb.log_outcomes` recorded on the server: the table (a snapshot read from the server) is
        checked here, every row before any is sent, then sent in batches of at most MAX_ITEMS rows and
        OUTCOME_BATCH_BYTES; the counts are summed. Each batch is recorded and audited by the server as
        it arrives: a failure part way leaves the earlier batches recorded (sending the table again
        counts them as duplicates, never twice)."""
        from workbench.quality.outcomes import bulk_items

        name = validate_name(model, "model name")
        checked, described = bulk_items(data, None, id_column, outcome_column, row_column)
        counts = {"recorded": 0, "duplicates": 0, "unknown": 0}
        for batch in _batches([{"request_id": key[0], "row": key[1], "outcome": outcome} for key, outcome in checked]):
            answer = self.client.request("POST", f"/models/{name}/outcomes", json={"items": batch, "source": described})
            for key in counts:
                counts[key] += int(answer.json()[key])
        return {"model": name, "source": described, **counts}


def _batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`items` in order, in lists of at most MAX_ITEMS and OUTCOME_BATCH_BYTES of JSON each."""
    from workbench.quality.outcomes import MAX_ITEMS

    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for item in items:
        length = len(json.dumps(item)) + 2
        if batches[-1] and (len(batches[-1]) >= MAX_ITEMS or size + length > OUTCOME_BATCH_BYTES):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += length
    return batches
