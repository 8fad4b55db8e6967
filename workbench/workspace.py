"""Finding, creating and describing a workspace folder.

A workspace is one folder (by default `./.workbench/`) that holds everything Workbench knows:
the DuckDB catalog, content-addressed blobs, per-run folders and the workspace settings. It is
found like git finds a repository: `--home`, then `$WORKBENCH_HOME`, then the nearest
`.workbench/` in the current directory or one of its parents.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import WorkbenchError, WorkspaceNotFoundError

DEFAULT_DIRNAME = ".workbench"
ENV_HOME = "WORKBENCH_HOME"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace; cheap to create, holds no open resources."""

    root: Path

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same filesystem as the blobs, so renames are atomic."""
        return self.root / "tmp"

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    def config(self) -> dict[str, Any]:
        """Workspace settings (`config.json`); missing keys take their defaults."""
        try:
            return json.loads(self.config_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise WorkbenchError(
                f"Cannot read workspace settings {self.config_path}: {exc}.",
                "Fix the JSON by hand or delete the file to use the defaults.",
            ) from exc

    def setting(self, key: str, default: Any = None) -> Any:
        return self.config().get(key, default)

    def set_setting(self, key: str, value: Any) -> None:
        config = self.config()
        config[key] = value
        _write_json_atomic(self.config_path, config)


def positive_setting(ws: Workspace | None, setting: str, env: str, default: float, kind: type = int) -> Any:
    """A positive number from `$env` (wins: one process, e.g. a server), the workspace `setting`
    (when there is a workspace), or `default`; anything else is a ValidationError naming its source.

    `kind=int` takes whole numbers only (2.0 in the JSON settings is refused, not truncated).
    """
    import math

    from workbench.errors import ValidationError

    raw: Any = os.environ.get(env)
    source = f"${env}"
    if raw is None or not str(raw).strip():
        raw, source = (ws.setting(setting) if ws is not None else None), f"workspace setting {setting!r}"
    if raw is None:
        return default
    try:
        value = kind(str(raw).strip()) if not isinstance(raw, bool) else None
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        whole = "a positive whole number" if kind is int else "a positive number"
        raise ValidationError(f"{source} must be {whole}, not {raw!r}.",
                              f"Fix it, or remove it to use the default of {default:,g}.")  # fmt: skip
    return value


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    from workbench.permissions import protect

    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    protect(tmp)
    os.replace(tmp, path)


def _is_workspace(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path | None:
    """Where the workspace is, or None if none is configured or found."""
    if home is not None:
        return Path(home).expanduser().absolute()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().absolute()
    here = Path.cwd().absolute()
    for folder in (here, *here.parents):
        candidate = folder / DEFAULT_DIRNAME
        if _is_workspace(candidate):
            return candidate
    return None


def open_workspace(home: str | os.PathLike[str] | None = None) -> Workspace:
    """Find an existing workspace, or explain how to create one."""
    root = resolve_home(home)
    if root is None:
        raise WorkspaceNotFoundError(
            f"No Workbench workspace found in {Path.cwd()} or its parents.",
            "Create one with 'workbench init' (or wb.init()), or point WORKBENCH_HOME at one.",
        )
    if not _is_workspace(root):
        raise WorkspaceNotFoundError(
            f"{root} is not a Workbench workspace.",
            f"Create it with 'workbench init --home {root}' or fix WORKBENCH_HOME/--home.",
        )
    return Workspace(root)


def init_workspace(home: str | os.PathLike[str] | None = None, group: str | None = None) -> Workspace:
    """Create (or reuse) a workspace and its catalog; safe to call again on an existing one.

    Location: `home`, else `$WORKBENCH_HOME`, else the nearest `.workbench/` in the current
    folder or its parents, else `./.workbench`. The workspace is private to its owner (mode
    0700) unless `group` names a group to share it with (recorded in the settings, so calling
    this again keeps the choice); see `workbench.permissions`.
    """
    from workbench.permissions import make_dir, secure_root

    # With no explicit location, reuse the nearest existing workspace (a notebook in
    # `notebooks/` joins the project's `.workbench/`), else create one in the current folder.
    root = resolve_home(home) or (Path.cwd().absolute() / DEFAULT_DIRNAME)
    if root.exists() and not root.is_dir():
        raise WorkbenchError(f"Cannot create a workspace at {root}: a file is in the way.")
    ws = Workspace(root)
    root.mkdir(parents=True, exist_ok=True)
    group = group or (ws.setting("group") if ws.config_path.exists() else None)
    if root.stat().st_uid == os.geteuid():  # a teammate's shared workspace keeps its owner's choice
        secure_root(root, group)
        for folder in (ws.blobs_dir, ws.runs_dir, ws.tmp_dir):
            if folder.is_dir() and folder.stat().st_uid == os.geteuid():
                os.chmod(folder, stat.S_IMODE(root.stat().st_mode))
    for folder in (ws.blobs_dir, ws.runs_dir, ws.tmp_dir):
        make_dir(folder)
    config = ws.config() if ws.config_path.exists() else {"format_version": FORMAT_VERSION}
    if group and config.get("group") != group:
        config["group"] = group
    if not ws.config_path.exists() or group:
        _write_json_atomic(ws.config_path, config)
    from workbench.catalog import connect

    with connect(ws):  # creates the catalog and applies migrations
        pass
    return ws


_current: Workspace | None = None


def current_workspace() -> Workspace:
    """The workspace used by the module-level Python API (`wb.snapshot`, `wb.runs`, ...)."""
    return _current or open_workspace()


def chosen_workspace() -> Workspace | None:
    """The workspace this process chose explicitly (`use_workspace`: `wb.init`, `wb.use`), if any."""
    return _current


def use_workspace(ws: Workspace | None) -> None:
    """Make `ws` the default for the Python API in this process (None: find it again)."""
    global _current
    _current = ws
