"""Errors that carry a message meant for a person.

Every mistake a user can make (a bad name, a missing workspace, a corrupt file) raises a
`WorkbenchError` subclass whose message says what was wrong and how to fix it. Shells (the
CLI, the REST API, widgets) show the message as one line instead of a traceback; anything else
that escapes is a bug in Workbench and keeps its traceback.
"""

from __future__ import annotations


class WorkbenchError(Exception):
    """A failure the user can act on; `str(err)` is the whole message."""

    #: Exit code used by the CLI for this kind of error.
    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)


class InvalidNameError(WorkbenchError):
    """A snapshot, experiment or model name (or a `name@version` ref) is malformed."""


class NotFoundError(WorkbenchError):
    """A named object (snapshot, run, model, workspace) does not exist."""


class WorkspaceNotFoundError(NotFoundError):
    """No workspace folder could be found from the current directory."""


class ValidationError(WorkbenchError):
    """Data or parameters did not satisfy what was required of them."""

    def __init__(self, message: str, hint: str | None = None, report: object = None) -> None:
        super().__init__(message, hint)
        self.report = report


class DataSourceError(WorkbenchError):
    """A file or query could not be read (missing, empty, corrupt, bad SQL)."""


class StoreBusyError(WorkbenchError):
    """The catalog stayed locked by other processes for longer than the bounded wait."""

    exit_code = 3


class CatalogCorruptError(WorkbenchError):
    """The catalog file fails DuckDB's block checksums: it cannot be opened until rebuilt or restored."""


class WriteConflictError(StoreBusyError):
    """Two concurrent writes touched the same catalog rows; this one was rolled back and may be retried."""


class BlobIntegrityError(WorkbenchError):
    """A stored file's bytes no longer match the hash it was stored under: it is not read."""
