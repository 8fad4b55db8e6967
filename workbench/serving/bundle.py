"""A model bundle: one registered version in a folder of its own, served with no workspace.

`workbench export docker` writes one into its build context (`model/`), and `workbench serve
--bundle DIR` serves it, in a container or anywhere else the model's libraries are installed:

- `model.skops`: the version's file, byte for byte as the registry holds it;
- `model.json`: the version record (`ModelVersion.to_dict()`: metadata with the trusted types and
  input schema, metrics, params, training run) and the sha256 of `model.skops`;
- `schema.json`: the input schema alone, for whoever writes a client;
- `MODEL_CARD.md`: the model card.

`BundleSource` is the `sources.ModelSource` over such a folder. The file is loaded like any other
(`serialization.load_model`: the recorded trusted types only, never pickle) after its sha256 is
checked against `model.json`. A bundle holds one version: nothing to follow, no alias to move.
What the server writes (its status file, the prediction log in `predictions/<model>/`, outcomes
sent to /feedback) goes to a state folder: `$XDG_CACHE_HOME/workbench/bundles/<name>-<version>`
(`~/.cache/...` by default), since the bundle folder itself may be read-only (a container image).
It has no catalog, so serving starts and stops are logged, not audited, and the drift and
live-quality gauges (computed from the registry and the training snapshot) are absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import NotFoundError, ValidationError
from workbench.models.registry import ModelVersion
from workbench.serving.sources import Follower, cache_root
from workbench.workspace import Workspace

if TYPE_CHECKING:
    from workbench.names import Ref
    from workbench.serving.models import LoadedModel, ModelSlot

log = logging.getLogger("workbench.serving")

MODEL_FILE = "model.skops"
RECORD_FILE = "model.json"
SCHEMA_FILE = "schema.json"
CARD_FILE = "MODEL_CARD.md"
FORMAT = 1


def bundle_files(version: ModelVersion, data: bytes, card: str) -> dict[str, bytes]:
    """The files of a bundle of `version` (whose skops bytes are `data`), by name."""
    record = {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "version": version.to_dict()}
    return {
        MODEL_FILE: data,
        RECORD_FILE: (json.dumps(record, indent=2, default=str) + "\n").encode(),
        SCHEMA_FILE: (json.dumps(version.schema, indent=2) + "\n").encode(),
        CARD_FILE: card.encode(),
    }


def read_record(folder: str | Path) -> tuple[ModelVersion, str]:
    """The version record and model sha256 of the bundle in `folder`."""
    path = Path(folder).expanduser() / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ModelVersion.from_dict(data["version"]), str(data["sha256"])
    except FileNotFoundError as exc:
        raise NotFoundError(f"{Path(folder)} is not a model bundle: it has no {RECORD_FILE}.",
                            "Give the folder 'workbench export docker' wrote it into (model/).") from exc  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"Cannot read the bundle record {path}: {exc}.",
                              "Export the model again with 'workbench export docker'.") from exc  # fmt: skip


class _Pinned:
    """The follower of a bundle: one version, nothing ever moves."""

    def start(self) -> _Pinned:
        return self

    def stop(self) -> None:
        return None


class BundleSource:
    """The one version in a bundle folder (see the module doc)."""

    #: No registry or snapshots here: the model server exports no drift or live-quality gauges.
    has_registry = False

    def __init__(self, folder: str | Path, state: str | Path | None = None) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.version, self.sha256 = read_record(self.folder)
        default = Path(cache_root()) / "bundles" / f"{self.version.name}-{self.version.version}"
        root = Path(state).expanduser() if state is not None else default
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.workspace = Workspace(root)

    @property
    def ref(self) -> str:
        return self.version.ref

    def accepts(self, ref: str) -> bool:
        """Whether `ref` names the bundled version: its name, with its version, an alias it had, or none."""
        from workbench.names import parse_ref

        parsed = parse_ref(ref, "model", allow_alias=True)
        if parsed.name != self.version.name:
            return False
        if parsed.version is not None:
            return parsed.version == self.version.version
        return parsed.alias is None or parsed.alias in self.version.aliases

    def load(self, ref: str) -> LoadedModel:
        from workbench.models.serialization import load_model
        from workbench.serving.models import LoadedModel
        from workbench.serving.predict import Predictor

        if not self.accepts(ref):
            raise NotFoundError(f"The bundle {self.folder} holds {self.version.ref} only, not {ref}.",
                                f"Serve it as {self.version.ref} (or export the version you want).")  # fmt: skip
        path = self.folder / MODEL_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise NotFoundError(f"Cannot read the bundled model {path}: {exc.strerror or exc}.") from exc
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ValidationError(f"The bundled model {path} does not match the sha256 in {RECORD_FILE}.",
                                  "Export the model again with 'workbench export docker'.")  # fmt: skip
        return LoadedModel(self.version, Predictor(load_model(data, self.version.meta), self.version.schema))

    def target_version(self, parsed: Ref) -> int | None:
        return self.version.version

    def follower(self, slot: ModelSlot) -> Follower:
        return _Pinned()

    def record(self, action: str, target: str, details: dict[str, Any], required: bool) -> None:
        log.info("%s %s %s (bundle %s, pid %s)", action, target, details, self.folder, os.getpid())

    def shipper(self, model: str) -> Follower | None:
        return None

    def describe(self) -> str:
        return f"the bundle {self.folder}"
