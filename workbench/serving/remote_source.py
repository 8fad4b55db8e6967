"""A model server whose models live on a team server (`workbench serve NAME@alias` with `WORKBENCH_URL`).

- Loading: the version an alias points at comes from `GET /models/{name}/aliases/{alias}`, its
  record (schema, metadata) from `GET /models/{name}/versions/{version}`, its skops file from
  `.../file`. Files are cached under their sha256 in `$XDG_CACHE_HOME/workbench/models/<sha256>`
  (`remote.downloads.cached_download`, as every file a team server hands out: folder 0700, files
  0600) and checked against it on every load: a cached file that does not match is deleted and
  downloaded again, a download that does not match (or whose `X-Workbench-Sha256` differs from the
  record's) is refused. The bytes are then loaded like local ones
  (`serialization.load_model`: allow-listed types, never pickle).
- Following: a thread long-polls the change feed (`GET /changes?action=alias.moved&target=
  model:NAME@ALIAS`); after a move it loads the new version off the request path and the slot
  swaps it in (one reference assignment). When the server cannot be reached the current model
  keeps serving and the thread retries with backoff (up to 10 s), then re-resolves the alias in
  case it moved meanwhile.
- Prediction log: the server writes it into this server's spool
  (`$XDG_CACHE_HOME/workbench/spool/<host>_<port>/predictions/<model>/`, the same JSON lines as a
  local server); a `PredictionShipper` thread sends the new complete lines of each file once a
  second, as (`stream`, `offset`) batches the team server stores exactly once, and keeps the
  acknowledged offset per file in `sent.json` there, so a restarted server sends only the rest.
  Uploading needs role editor: with a viewer token serving works and the log stays in the spool;
  a warning says so once (and which role is needed). The failure log (`predlog.failures_dir`) and
  the outcomes callers report on /feedback (`quality.outcomes.outcomes_dir`) are shipped the same
  way by shippers of their own `kind` (`POST /models/{name}/logs/{kind}`), so live quality on the
  team server (`workbench monitor NAME --window 1h`) has every model server's traffic, errors and
  outcomes.
- Serving starts and stops are not in the team server's audit log (there is no route to write
  one); they are logged on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from workbench.models.registry import ModelVersion
from workbench.names import Ref, parse_ref
from workbench.remote.client import Client, PermissionDeniedError, RemoteError, RemoteValidationError
from workbench.remote.config import Remote
from workbench.remote.sender import complete_size
from workbench.serving.models import LoadedModel, ModelSlot
from workbench.serving.predict import Predictor
from workbench.serving.predlog import failures_dir, predictions_dir
from workbench.serving.sources import Follower
from workbench.workspace import Workspace, _write_json_atomic

log = logging.getLogger("workbench.serving")

POLL_SECONDS = 25.0  # one long-poll of the change feed
MAX_BACKOFF_SECONDS = 10.0
SHIP_INTERVAL_SECONDS = 1.0
BATCH_BYTES = 256 * 1024  # of prediction lines per upload (the server takes JSON bodies up to 1 MiB)
SENT_FILE = "sent.json"
LOG_WINDOW = 64 * 1024  # bytes of a prediction log searched for its last complete line


class RemoteSource:
    """Models of the team server `remote` (see the module doc)."""

    def __init__(self, remote: Remote) -> None:
        from workbench.remote.sender import spool_workspace

        self.remote = remote
        self.client = Client(remote, timeout=60.0)
        self.workspace: Workspace = spool_workspace(remote)

    def describe(self) -> str:
        return self.remote.url

    # -- versions

    def _info(self, parsed: Ref) -> dict[str, Any]:
        name = parsed.name
        if parsed.version is not None:
            return self.client.get(f"/models/{name}/versions/{parsed.version}")
        if parsed.alias is not None:
            return self.client.get(f"/models/{name}/aliases/{parsed.alias}")
        latest = self.client.get(f"/models/{name}")["latest_version"]
        return self.client.get(f"/models/{name}/versions/{latest}")

    def target_version(self, parsed: Ref) -> int | None:
        return int(self._info(parsed)["version"])

    def load(self, ref: str) -> LoadedModel:
        from workbench.models.serialization import load_model

        info = self._info(parse_ref(ref, "model", allow_alias=True))
        version = ModelVersion.from_dict(info)
        data = self.model_file(version, str(info["sha256"]))
        return LoadedModel(version, Predictor(load_model(data, version.meta), version.schema))

    def model_file(self, version: ModelVersion, sha256: str) -> bytes:
        """The verified bytes of the version's file: from the cache, else downloaded (and cached)."""
        from workbench.remote.downloads import cached_download

        path = cached_download(self.client, f"/models/{version.name}/versions/{version.version}/file", "models",
                               sha256, f"model {version.ref}")  # fmt: skip
        return path.read_bytes()

    # -- helpers of a running server

    def follower(self, slot: ModelSlot) -> Follower:
        return ChangeFollower(self, slot)

    def shipper(self, model: str) -> Follower | None:
        from workbench.quality.outcomes import outcomes_dir

        folders = {"predictions": predictions_dir, "failures": failures_dir, "outcomes": outcomes_dir}
        spool, refusal = self.workspace.root, Refusal()
        return LogShippers([PredictionShipper(self.remote, folder(self.workspace, model), model, kind=kind, spool=spool,
                                              refusal=refusal) for kind, folder in folders.items()])  # fmt: skip

    def record(self, action: str, target: str, details: dict[str, Any], required: bool) -> None:
        log.info("%s %s %s (team server %s)", action, target, details, self.remote.url)


def _warn(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr, flush=True)


class ChangeFollower:
    """Long-polls the change feed for moves of the slot's alias and refreshes the slot (module doc)."""

    def __init__(self, source: RemoteSource, slot: ModelSlot) -> None:
        self.source = source
        self.slot = slot
        self.client = Client(source.remote, timeout=POLL_SECONDS + 15, retries=0)
        parsed = slot.parsed
        self.params: dict[str, Any] = {"timeout": str(POLL_SECONDS)}
        if parsed.alias is not None:
            self.params.update(action="alias.moved", target=f"model:{parsed.name}@{parsed.alias}")
        else:  # latest: any new version
            self.params.update(action="model.version.created", target=f"model:{parsed.name}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workbench-alias-follower", daemon=True)

    def start(self) -> ChangeFollower:
        if self.slot.follows_alias:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.close()  # ends a long-poll in flight

    def _loop(self) -> None:
        cursor: int | None = None  # from now on; then a refresh covers a move before the first poll
        stale, backoff, down_since = True, 0.5, None
        while not self._stop.is_set():
            try:
                params = {**self.params, **({"after": str(cursor)} if cursor is not None else {"timeout": "0"})}
                answer = self.client.get("/changes", params=params)
                cursor = int(answer["last_id"])
                if answer["changes"] or stale:
                    self.slot.refresh()
                stale, backoff = False, 0.5
                if down_since is not None:
                    log.warning("the team server %s answers again", self.source.remote.url)
                    down_since = None
            except Exception as exc:  # unreachable, busy, a bad download: keep serving, retry with backoff
                if self._stop.is_set():
                    return
                if down_since is None:
                    down_since = time.monotonic()
                    reason = exc.message if isinstance(exc, RemoteError) else f"{type(exc).__name__}: {exc}"
                    _warn(f"Cannot follow {self.slot.ref} on {self.source.remote.url} ({reason}); still serving "
                          f"{self.slot.current.version.ref}, retrying.")  # fmt: skip
                stale = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


class Refusal:
    """The team server's refusal of uploads, shared by the shippers of one server: the same token is
    refused for every kind, so one warning says it and the others stop too."""

    def __init__(self) -> None:
        self.message: str | None = None
        self._lock = threading.Lock()

    def refuse(self, message: str) -> bool:
        """Record the refusal; whether it is the first (to be told)."""
        with self._lock:
            first, self.message = self.message is None, self.message or message
            return first


class LogShippers:
    """The shippers of one model's logs (predictions, failures, outcomes), started and stopped together."""

    def __init__(self, shippers: list[PredictionShipper]) -> None:
        self.shippers = shippers

    def start(self) -> LogShippers:
        for shipper in self.shippers:
            shipper.start()
        return self

    def stop(self) -> None:
        for shipper in self.shippers:
            shipper.stop()


class PredictionShipper:
    """Ships the log files of one `kind` (`predlog.LOG_KINDS`) of one model from the spool to the team
    server (module doc); `spool`: the spool workspace's folder (default: two levels above `folder`)."""

    def __init__(self, remote: Remote, folder: Path, model: str, interval: float = SHIP_INTERVAL_SECONDS, *,
                 kind: str = "predictions", spool: Path | None = None,
                 refusal: Refusal | None = None) -> None:  # fmt: skip
        self.remote = remote
        self.folder = folder
        self.model = model
        self.interval = interval
        self.kind = kind
        self.path = f"/models/{model}/predictions" if kind == "predictions" else f"/models/{model}/logs/{kind}"
        self._announced = False
        self._refusal = refusal or Refusal()
        self.client = Client(remote, timeout=30.0, retries=0)
        self.refused: str | None = None
        self.shipped = 0  # bytes acknowledged by this process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"workbench-{kind}-shipper", daemon=True)
        self.spool = spool or folder.parent.parent
        self._prefix = _client_id(self.spool)

    def start(self) -> PredictionShipper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread, then send what the log has (the logger flushed it first), once."""
        self._stop.set()
        self._thread.join(timeout=30)
        if not self.refused:
            try:
                self.ship()
            except RemoteError as exc:
                _warn(f"The {self.kind} log stays in {self.folder} for now: {exc.message}")

    def _loop(self) -> None:
        backoff = self.interval
        while not self._stop.wait(backoff):
            try:
                self.ship()
                backoff = self.interval
            except RemoteError:  # unreachable or busy: the lines wait in the spool
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            if self.refused:
                return

    def _state(self) -> dict[str, int]:
        try:
            data = json.loads((self.folder / SENT_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {k: int(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def pending(self) -> int:
        """Bytes of complete lines not yet acknowledged by the server."""
        state = self._state()
        return sum(max(0, complete_size(p, LOG_WINDOW) - state.get(p.name, 0)) for p in self.folder.glob("*.jsonl"))

    def ship(self) -> None:
        """Send every file's new complete lines, in batches, recording each acknowledged offset. A
        failures folder is announced first (an empty batch), so that the team server knows this
        server logs its failures even before it has any (else its errors are "unknown")."""
        if self._refusal.message:  # refused to a sibling shipper
            self.refused = self._refusal.message
            return
        state = self._state()
        if self.kind == "failures" and not self._announced and self.folder.is_dir():
            self._announced = self._send({"stream": f"{self._prefix}-announce", "offset": 0, "lines": ""}) is not None
            if self.refused:
                return
        for path in sorted(self.folder.glob("*.jsonl")):
            offset, size = state.get(path.name, 0), complete_size(path, LOG_WINDOW)
            while offset < size:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read(min(BATCH_BYTES, size - offset))
                cut = chunk.rfind(b"\n") + 1 if len(chunk) == BATCH_BYTES else len(chunk)
                if cut <= 0:  # one line longer than a batch: cannot be sent (the server would refuse it too)
                    cut = len(chunk)
                body = {"stream": f"{self._prefix}-{path.stem}", "offset": offset,
                        "lines": chunk[:cut].decode("utf-8", errors="replace")}  # fmt: skip
                acknowledged = self._send(body)
                if acknowledged is None:
                    return
                self.shipped += max(0, acknowledged - offset)
                offset = acknowledged
                state[path.name] = offset
                _write_json_atomic(self.folder / SENT_FILE, state)

    def _send(self, body: dict[str, Any]) -> int | None:
        """POST one batch; the size the server has of its stream, or None when it refuses for good."""
        try:
            answer = self.client.request("POST", self.path, json=body, ok=(409,))
        except (PermissionDeniedError, RemoteValidationError) as exc:  # retrying would not help
            self.refused = exc.message
            if self._refusal.refuse(exc.message):
                _warn(f"{exc.message} Serving goes on; its prediction log stays in {self.spool / 'predictions'} "
                      f"(its outcomes in {self.spool / 'outcomes'}).")
            return None
        return int(answer.json()["size"])


def _client_id(spool: Path) -> str:
    """A random id of this spool (one per machine and user and server), made once: the server tells
    apart the log files of different clients by it."""
    path = spool / "client_id"
    try:
        found = path.read_text().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    made = secrets.token_hex(8)
    tmp = path.with_name(f".client_id.{os.getpid()}")
    tmp.write_text(made)
    try:
        os.link(tmp, path)  # the first one made wins; a concurrent process reads its id
    except FileExistsError:
        made = path.read_text().strip() or made
    finally:
        tmp.unlink(missing_ok=True)
    return made


__all__ = ["ChangeFollower", "LogShippers", "PredictionShipper", "Refusal", "RemoteSource"]
