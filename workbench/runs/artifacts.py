"""Writing an artifact into a run: the one place that names, stores and records it.

An artifact is two things: a content-addressed blob (hashed, written atomically with the
workspace's file mode by `workbench.blobs`) and an `artifact` event in the run's event file that
points at it. Notebook logging (`wb.log_artifact`, `wb.log_text`, ...) and analyses that add to
a finished run (`governance.RunAppender`) both go through here, so the name rules, the blob
extension per kind and the event's fields cannot drift apart between them.

Callers pass how the event is recorded (`emit`, shaped like `EventWriter.emit`): the notebook API
appends to the live run's file, `RunAppender` holds events until its block succeeds. `emit` is
called only after the blob is stored, so a failed write records nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from workbench import blobs
from workbench.errors import ValidationError
from workbench.names import validate_name
from workbench.runs.events import now_iso
from workbench.workspace import Workspace

ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
_EXTENSION = re.compile(r"\.[a-z0-9]{1,12}")


class Emit(Protocol):
    """Records one run event (`EventWriter.emit`, or a buffer that writes it later)."""

    def __call__(self, event: str, /, **fields: Any) -> object: ...


def check_artifact_name(name: object) -> str:
    """A relative, traversal-free name such as `plots/roc.png` (it becomes part of paths and URLs)."""
    if not isinstance(name, str) or len(name) > 255 or not ARTIFACT_NAME.match(name) or ".." in name.split("/"):
        raise ValidationError(
            f"Invalid artifact name {name!r}.",
            "Use a relative name like 'plots/roc.png' (no '..', no absolute paths).",
        )
    return name


def file_extension(path: Path) -> str:
    """The blob extension kept from a logged file's name (only short alphanumeric suffixes)."""
    suffix = path.suffix.lower()
    return suffix if _EXTENSION.fullmatch(suffix) else ""


def record(ws: Workspace, emit: Emit, name: str, kind: str, blob_id: str, meta: dict[str, Any] | None = None) -> str:
    """Record an already stored blob as artifact `name` of the run `emit` writes to; returns the blob id."""
    size = blobs.blob_path(ws, blob_id).stat().st_size
    emit("artifact", name=name, kind=kind, blob=blob_id, size=size, meta=meta, at=now_iso())
    return blob_id


def write_file(ws: Workspace, emit: Emit, source: Path, name: str | None = None) -> str:
    """Store a regular file (never a symlink: it could point anywhere) as artifact `name`."""
    if source.is_symlink():
        raise ValidationError(f"{source} is a symbolic link.", "Log the file it points to instead.")
    if not source.is_file():
        raise ValidationError(f"Artifact file not found: {source}.", "Check the path.")
    artifact = check_artifact_name(name or source.name)
    return record(ws, emit, artifact, "file", blobs.put_file(ws, source, file_extension(source)))


def write_text(ws: Workspace, emit: Emit, name: str, text: str) -> str:
    """Store `text` (UTF-8, a `.txt` blob) as artifact `name`."""
    artifact = check_artifact_name(name)
    return record(ws, emit, artifact, "text", blobs.put_bytes(ws, text.encode(), ".txt"))


def write_figure(ws: Workspace, emit: Emit, name: str, fig: Any) -> str:
    """Store a plotly figure as JSON, so notebooks, reports and the extension can render it later."""
    if not hasattr(fig, "to_json"):
        raise ValidationError(f"log_figure expects a plotly Figure, got {type(fig).__name__}.")
    artifact = check_artifact_name(name)
    blob_id = blobs.put_bytes(ws, fig.to_json().encode(), ".json")
    return record(ws, emit, artifact, "figure", blob_id, {"format": "plotly"})


def write_model(ws: Workspace, emit: Emit, name: str, data: bytes, meta: dict[str, Any]) -> str:
    """Store serialized model bytes (skops) as artifact `name`; models follow the registry's
    name rules, since a model artifact's name becomes the registered model's name."""
    validate_name(name, "model name")
    return record(ws, emit, name, "model", blobs.put_bytes(ws, data, ".skops"), meta)
