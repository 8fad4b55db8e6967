"""Online backup of the server's workspace (admin only): `POST /api/v1/backup`.

The server writes the backup into a new folder of its backup folder (the workspace setting
`backup_dir`, else `<workspace>-backups` beside the workspace folder), on the server's machine; the
request names only the folder, never a path. See `workbench.backup` for what is copied and when.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from workbench import backup
from workbench.server.auth import requires, workspace
from workbench.server.roles import ADMIN
from workbench.server.schemas import REFUSALS
from workbench.workspace import Workspace

router = APIRouter(tags=["backup"], responses=REFUSALS)


class BackupRequest(BaseModel):
    """POST /backup: the name of the new folder in the server's backup folder (default: `backup-<UTC time>`)."""

    model_config = ConfigDict(extra="forbid")
    name: Annotated[str | None, Field(default=None, max_length=128)] = None


class BackupOut(BaseModel):
    """What the backup holds and where the server wrote it."""

    model_config = ConfigDict(extra="allow")
    path: str = Field(description="The backup folder on the server's machine.")
    at: str = Field(description="The backup's point in time (UTC): the catalog as it was then.")
    audit_id: int = Field(description="The last audit entry the backup holds.")
    runs: int
    blobs: int
    damaged: list[str] = Field(description="Blobs the catalog refers to that were missing or damaged: left out.")


@router.post("/backup", response_model=BackupOut, status_code=201,
             dependencies=[Depends(requires(ADMIN, "backing up the workspace"))])  # fmt: skip
def create_backup(body: BackupRequest | None = None, ws: Workspace = Depends(workspace)) -> dict[str, Any]:
    """Back the workspace up into a new folder of the server's backup folder, while the server keeps
    serving: the catalog is copied at one point in time (writes wait for that moment only), then the
    files and every blob it refers to, each checked against its hash. Audited as `workspace.backed_up`.
    A name that is not a plain folder name, or a folder that exists and is not empty, is refused (400)."""
    dest = backup.named_destination(ws, body.name if body else None)
    return backup.backup(ws, dest)
