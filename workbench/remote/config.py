"""Which team server this process talks to, and the saved logins.

Resolved in this order, once per process (`resolve`):

1. `wb.connect(url, token=...)` in this process;
2. a workspace folder chosen in this process (`wb.init`, `wb.use`), or the folder of the run this
   kernel executes (its runner sets `WORKBENCH_RUN_HOME` and `WORKBENCH_HOME`): local, whatever
   else is set;
3. `WORKBENCH_URL` with `WORKBENCH_TOKEN` (or, without it, the token `workbench login` saved for
   that URL);
4. the server of the last `workbench login` (until `workbench logout`), like `wandb login`: it
   applies in every folder, so the first run logged there says so when a local workspace is
   found too (`runs.interactive_run`);
5. none: the local workspace folder, as without a server.

`workbench login URL` saves the token in `$XDG_CONFIG_HOME/workbench/credentials.json`
(`~/.config/...` by default), keyed by URL: a file of mode 0600 in a folder of mode 0700, written
to a temporary file and renamed into place, so it is never half written or readable by others.
TLS: certificates are verified; `WORKBENCH_CA_BUNDLE` (or `connect(verify=PATH)`) names the CA
bundle of a private certificate authority.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from workbench.errors import ValidationError, WorkbenchError

ENV_URL = "WORKBENCH_URL"
ENV_TOKEN = "WORKBENCH_TOKEN"
ENV_CA_BUNDLE = "WORKBENCH_CA_BUNDLE"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Remote:
    """A team server and the token to use with it."""

    url: str
    token: str
    verify: bool | str = True
    source: str = "wb.connect"  # where it was configured, for messages

    def __repr__(self) -> str:  # never the token
        return f"Remote(url={self.url!r}, source={self.source!r})"

    @property
    def host(self) -> str:
        """`host_port`, a folder name for this server's spool."""
        parts = urlsplit(self.url)
        return f"{parts.hostname}_{parts.port or (443 if parts.scheme == 'https' else 80)}"


_connected: Remote | None = None


def normalize_url(url: object) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash, else a ValidationError."""
    text = str(url or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValidationError(
            f"Invalid server URL {url!r}.", "Give it as http(s)://HOST:PORT, e.g. http://localhost:8686."
        )
    return text


def verify_option(verify: bool | str | None = None) -> bool | str:
    """TLS verification: `verify` if given, else `$WORKBENCH_CA_BUNDLE` (a CA bundle file), else on."""
    if verify is None:
        verify = os.environ.get(ENV_CA_BUNDLE) or True
    if isinstance(verify, str) and not Path(verify).expanduser().is_file():
        raise ValidationError(f"CA bundle {verify} not found.", f"Point {ENV_CA_BUNDLE} (or verify=) at a PEM file.")
    return str(Path(verify).expanduser()) if isinstance(verify, str) else verify


# ------------------------------------------------------------------------------ saved logins


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "workbench"


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def load_credentials() -> dict[str, Any]:
    """`{"default": url or None, "servers": {url: {"token", "user", "role", "saved_at"}}}`."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"default": None, "servers": {}}
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"Cannot read {path}: {exc}.",
                             "Delete it and log in again ('workbench login URL').") from exc  # fmt: skip
    if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
        raise WorkbenchError(f"{path} is not a Workbench credentials file.", "Delete it and log in again.")
    return data


def save_credentials(data: dict[str, Any]) -> Path:
    """Write the credentials file atomically, readable by its owner only (0600, folder 0700)."""
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".credentials-", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, folder / CREDENTIALS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / CREDENTIALS_FILE


def remember(url: str, token: str, user: str, role: str) -> Path:
    """Save `token` for `url` and make it the default server."""
    from datetime import datetime, timezone

    data = load_credentials()
    data["servers"][url] = {"token": token, "user": user, "role": role,
                            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    data["default"] = url
    return save_credentials(data)


def forget(url: str | None = None) -> str | None:
    """Remove the saved token of `url` (default: the default server); returns the URL removed, if any."""
    data = load_credentials()
    url = normalize_url(url) if url else data.get("default")
    if not url or url not in data["servers"]:
        return None
    del data["servers"][url]
    if data.get("default") == url:
        data["default"] = next(iter(data["servers"]), None)
    save_credentials(data)
    return url


# ------------------------------------------------------------------------------ resolving


def remote_for(url: str, token: str | None = None, verify: bool | str | None = None) -> Remote:
    """The server at `url` with `token`, else `$WORKBENCH_TOKEN`, else the one `workbench login` saved."""
    url = normalize_url(url)
    token = token or os.environ.get(ENV_TOKEN) or _saved_token(url)
    if not token:
        raise ValidationError(f"No token for {url}.",
                              f"Pass token=..., set {ENV_TOKEN}, or run 'workbench login {url}'.")  # fmt: skip
    return Remote(url, token, verify_option(verify), "wb.connect")


def use_remote(remote: Remote | None) -> None:
    """Log to `remote` for the rest of this process (`wb.connect`); None: resolve it again."""
    global _connected
    _connected = remote


def _saved_token(url: str) -> str | None:
    entry = load_credentials()["servers"].get(url)
    return entry.get("token") if isinstance(entry, dict) else None


def _in_local_run() -> bool:
    """Whether this is the kernel of a run executing against a workspace folder: its runner sets
    `WORKBENCH_RUN_HOME` and `WORKBENCH_HOME` to that folder (a run recorded on a server has its
    spool as run home, and the server's URL and token instead)."""
    from workbench.runs.events import ENV_RUN_HOME
    from workbench.workspace import ENV_HOME

    run_home, home = os.environ.get(ENV_RUN_HOME), os.environ.get(ENV_HOME)
    return bool(run_home and home and Path(run_home).expanduser() == Path(home).expanduser())


def resolve() -> Remote | None:
    """The server this process logs to, or None for the local workspace (see the module doc)."""
    if _connected is not None:
        return _connected
    from workbench.workspace import chosen_workspace

    if chosen_workspace() is not None or _in_local_run():
        return None
    url = os.environ.get(ENV_URL, "").strip()
    if url:
        url = normalize_url(url)
        token = os.environ.get(ENV_TOKEN) or _saved_token(url)
        if not token:
            raise ValidationError(f"{ENV_URL} is {url} but there is no token for it.",
                                  f"Set {ENV_TOKEN}, or run 'workbench login {url}'.")  # fmt: skip
        return Remote(url, token, verify_option(), ENV_URL)
    if not credentials_path().is_file():
        return None
    data = load_credentials()
    url = data.get("default")
    token = _saved_token(url) if url else None
    return Remote(url, token, verify_option(), "workbench login") if url and token else None
