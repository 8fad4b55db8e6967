"""A small HTTP client for the team server: the bearer token on every request, TLS options, retries
of idempotent requests when the connection fails, and the server's `{"error", "hint"}` answers
raised as `WorkbenchError`s (401 and 403 name the server and what to do).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from workbench.errors import NotFoundError, ValidationError, WorkbenchError
from workbench.remote.config import Remote

API = "/api/v1"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRIES = 3  # after the first attempt
BACKOFF = 0.2  # seconds, doubled per retry


class RemoteError(WorkbenchError):
    """The team server refused a request or could not be reached."""

    def __init__(self, message: str, hint: str | None = None, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(message, hint)
        self.status = status
        self.body = body or {}


class ServerUnreachableError(RemoteError):
    """No answer from the server (connection refused, timed out, TLS failure): worth retrying later."""

    exit_code = 3


class ServerBusyError(RemoteError):
    """The server answered 5xx (busy, restarting, or a bug): worth retrying later."""

    exit_code = 3


class AuthenticationError(RemoteError):
    """401: the token is missing, unknown or revoked."""


class PermissionDeniedError(RemoteError):
    """403: the user's role may not do this."""


class ConflictError(RemoteError):
    """409: the request does not fit the server's state (e.g. an event chunk's offset)."""


class RemoteValidationError(RemoteError, ValidationError):
    """400 or 413: the request was malformed or too large."""


class RemoteNotFoundError(RemoteError, NotFoundError):
    """404: no such object on the server."""


def _error(remote: Remote, response: httpx.Response) -> RemoteError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    message = str(body.get("error") or f"HTTP {response.status_code}")
    hint = body.get("hint")
    status = response.status_code
    if status == 401:
        return AuthenticationError(f"The server {remote.url} refused the token ({remote.source}): {message}",
                                   f"Log in again with 'workbench login {remote.url}' or set WORKBENCH_TOKEN.",
                                   status, body)  # fmt: skip
    if status == 403:
        return PermissionDeniedError(f"The server {remote.url} refused: {message}", hint, status, body)
    if status == 404:
        return RemoteNotFoundError(message, hint, status, body)
    if status == 409:
        return ConflictError(message, hint, status, body)
    if status >= 500:
        return ServerBusyError(f"The server {remote.url} failed: {message}", hint or "Try again shortly.", status, body)
    return RemoteValidationError(message, hint, status, body)


class Client:
    """Requests to one team server (thread-safe: httpx.Client is)."""

    def __init__(self, remote: Remote, timeout: float = 30.0, retries: int = RETRIES) -> None:
        from workbench import __version__

        self.remote = remote
        self.retries = retries
        self._http = httpx.Client(base_url=remote.url + API, timeout=timeout, verify=remote.verify,
                                  headers={"Authorization": f"Bearer {remote.token}",
                                           "User-Agent": f"workbench/{__version__}"})  # fmt: skip

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, idempotent: bool | None = None, ok: tuple[int, ...] = (),
                **kwargs: Any) -> httpx.Response:  # fmt: skip
        """The response of `method path` (a 2xx, or a status in `ok`); an error raised otherwise.

        Connection failures are retried with backoff when the request is idempotent (GET, HEAD, PUT,
        DELETE, or `idempotent=True`), then raised as `ServerUnreachableError`."""
        method = method.upper()
        attempts = 1 + (self.retries if (method in IDEMPOTENT if idempotent is None else idempotent) else 0)
        for attempt in range(attempts):
            try:
                response = self._http.request(method, path, **kwargs)
                break
            except httpx.TransportError as exc:
                if attempt == attempts - 1:
                    raise self.unreachable(exc) from exc
                time.sleep(BACKOFF * 2**attempt)
        if response.is_success or response.status_code in ok:
            return response
        raise _error(self.remote, response)

    def unreachable(self, exc: Exception) -> ServerUnreachableError:
        """The error for a request that got no answer."""
        reason = str(exc) or type(exc).__name__
        return ServerUnreachableError(f"Cannot reach the server {self.remote.url}: {reason}.",
                                      "Check that it runs and the URL; logged runs wait in the local spool "
                                      "and are sent when it answers.")  # fmt: skip

    def raise_for(self, response: httpx.Response) -> None:
        """Raise the `RemoteError` a non-2xx answer means (its body must have been read)."""
        if not response.is_success:
            raise _error(self.remote, response)

    @contextmanager
    def stream(self, path: str) -> Iterator[httpx.Response]:
        """`GET path` with its body streamed (large files); errors as `request` raises them, no retries."""
        try:
            with self._http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    self.raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def me(self) -> dict[str, Any]:
        """`{"name", "role"}` of the token's user."""
        return self.get("/me")
