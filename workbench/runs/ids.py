"""Run ids: time-sortable, unique without coordination, safe in paths and URLs."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from workbench.errors import InvalidNameError

RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")


def new_run_id() -> str:
    """`20261124-235901-1a2b3c4d`: sorts by creation time, 32 random bits against collisions."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise InvalidNameError(
            f"Invalid run id {run_id!r}.",
            "Run ids look like 20261124-235901-1a2b3c4d (see 'workbench runs list').",
        )
    return run_id
