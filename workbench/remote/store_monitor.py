"""The monitoring part of `RemoteStore` (see `remote.store`): drift reports computed by a team server.

The server has the prediction logs every remote model server ships to it (`POST
/models/{name}/predictions`), the training snapshot and the model, so it computes the report
(`GET /models/{name}/monitor`) and this returns it as the `DriftReport` the local function returns.
The name is checked here first, with the library's own message, so a bad one costs no request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.remote.client import Client
from workbench.remote.config import Remote

if TYPE_CHECKING:
    from workbench.serving.monitor import DriftReport


class MonitorStore:
    """Monitoring of served models, answered by a team server."""

    remote: Remote
    client: Client

    def drift_report(self, ref: str, *, since: str | None = None, threshold: float | None = None) -> DriftReport:
        """`monitor.drift_report` on the server: REF is NAME (all versions), NAME@VERSION or NAME@ALIAS."""
        from workbench.names import validate_name
        from workbench.serving.monitor import DEFAULT_THRESHOLD, DriftReport

        name, _, at = ref.partition("@")
        params = {"threshold": DEFAULT_THRESHOLD if threshold is None else threshold}
        params.update({key: value for key, value in (("version", at), ("since", since)) if value})
        answer = self.client.get(f"/models/{validate_name(name, 'model name')}/monitor", params=params)
        return DriftReport.from_dict(answer)
