"""Request and response bodies of the team server's API (pydantic), in one place.

Bodies are validated here for shape and type (a version is a whole number, a reason is text of
bounded length); names in them are checked by the library itself (`workbench.names`), so the API
refuses a bad name with the same message as the CLI. Responses whose shape is the library's own
(runs, snapshots, models) are documented by the routes and passed through as JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from workbench.httpapi import MAX_INT

Version = Annotated[int, Field(strict=True, ge=1, le=MAX_INT, description="A version number of the model.")]
Reason = Annotated[str | None, Field(default=None, max_length=2000, description="Why (recorded in the audit log).")]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    """A request body: unknown fields are refused (a typo is an error, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------
# Requests


class AliasMove(Strict):
    """PUT /models/{name}/aliases/{alias}: point the alias at a registered version."""

    version: Version
    reason: Reason = None
    by: str | None = Field(default=None, max_length=200, description="The automation deciding (e.g. pipeline:NAME).")
    force: bool = Field(default=False, description="Move despite the model's live gate (audited).")


class Rollback(Strict):
    """POST /models/{name}/aliases/{alias}/rollback: back to the previous version (or `to`)."""

    to: Version | None = None
    reason: Reason = None


class GatesEdit(Strict):
    """PUT /models/{name}/gates: the promotion gates (null: none), as `workbench models gate` sets them."""

    gates: dict[str, Any] | None = Field(
        description='E.g. {"metrics": {"accuracy": {"min": 0.9}}, "beat": {"metric": "log_loss", "mode": "min"}}.'
    )
    description: str | None = Field(default=None, max_length=2000)


class NewUser(Strict):
    """POST /users: a user and their role (the answer carries their token, shown once)."""

    name: Name
    role: Name = Field(description="viewer, editor, maintainer or admin.")


class EventChunk(Strict):
    """POST /runs/{run_id}/events: the client's event file from byte `offset`, whole lines."""

    offset: int = Field(strict=True, ge=0, le=MAX_INT, description="Bytes of the client's event file before `lines`.")
    lines: str = Field(description="Newline-terminated JSON event lines, as wb.log_* wrote them.")


class PredictionChunk(Strict):
    """POST /models/{name}/predictions: part of a model server's prediction log from byte `offset`."""

    stream: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                        description="The client's log file (one per server process and day): the batch's id "
                        "is (`stream`, `offset`).")  # fmt: skip
    offset: int = Field(strict=True, ge=0, le=MAX_INT, description="Bytes of the client's log file before `lines`.")
    lines: str = Field(description="Newline-terminated JSON prediction records, as the model server wrote them.")


class SqlQuery(Strict):
    """POST /sql: one read-only SELECT over snapshots, and how many rows of its result to answer."""

    query: str = Field(min_length=1, max_length=100_000, description="E.g. select * from snapshot('wine@2') limit 5.")
    limit: int = Field(default=1000, strict=True, ge=1, le=100_000, description="Most rows to answer.")


# --------------------------------------------------------------------------------------------
# Responses


class ErrorBody(BaseModel):
    """Every refusal: what was wrong and how to fix it."""

    error: str
    hint: str | None = None


class Health(BaseModel):
    status: str


class Me(BaseModel):
    name: str
    role: str


class UserOut(BaseModel):
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    active: bool


class NewUserOut(UserOut):
    token: str = Field(description="The user's bearer token: shown only in this answer, stored only hashed.")


class ModelVersionOut(BaseModel):
    """A model version (the library's `ModelVersion.to_dict()`), after an alias moved to it."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: int
    ref: str
    run_id: str
    aliases: list[str]
    alias: str


class EventsOffset(BaseModel):
    """How many bytes of the client's event file the server has: the next chunk starts there."""

    size: int
    cancel: bool = Field(False, description="The run was asked to stop (POST /runs/{run_id}/cancel): the client "
                         "executing it cancels it.")  # fmt: skip


class RunCancelled(BaseModel):
    """The answer to a cancel request: False when the run had already ended."""

    run_id: str
    cancelled: bool


class BlobOut(BaseModel):
    blob: str
    size: int
    stored: bool = Field(description="False: the server had it already.")


class GatesOut(BaseModel):
    name: str
    gates: dict[str, Any]


class AuditEntryOut(BaseModel):
    id: int
    occurred_at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None
    reason: str | None


class ChangesOut(BaseModel):
    """GET /changes: audit entries after `after`, and the id to ask after next time."""

    changes: list[AuditEntryOut]
    last_id: int = Field(description="Pass it as `after` in the next request.")


#: What the routes document for their refusals.
REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "A bad request: the message says what and how to fix it."},
    401: {"model": ErrorBody, "description": "No bearer token, or an unknown or revoked one."},
    403: {"model": ErrorBody, "description": "The user's role may not do this; the message names the role needed."},
    404: {"model": ErrorBody, "description": "No such object."},
}


class Promotion(Strict):
    """POST /promotions: register a finished run's model as the next version and move an alias to it
    (`workbench promote`); the model's gates are checked on the server."""

    run_id: Name
    model: Name | None = Field(default=None, description="The model's name (default: the artifact's).")
    artifact: Name | None = Field(default=None, description="Which model artifact, if the run logged several.")
    alias: Name | None = Field(description="The alias to move, e.g. production (null: register only).")
    reason: Reason = None
    force: bool = Field(default=False, strict=True, description="Promote despite failing gates (audited).")


class SweepRecord(Strict):
    """PUT /sweeps/{sweep_id}: a sweep a client runs, recorded before its first run and updated at its end."""

    experiment: Name
    notebook: str = Field(min_length=1, max_length=4096, description="The notebook's path on the client.")
    notebook_blob: str | None = Field(default=None, max_length=200, description="The notebook's content (a blob "
                                      "uploaded first), for resuming.")  # fmt: skip
    spec: dict[str, Any] = Field(default_factory=dict, description="How it was asked for: grid, random, seed, params, "
                                 "parallel, executor, and what its runs share (tags, kernel, fast).")  # fmt: skip
    param_sets: list[dict[str, Any]] = Field(max_length=100_000, description="The parameters of each of its runs.")
    status: str = Field(pattern=r"^(running|finished|failed|interrupted)$")
