"""Writing the files of an export (`workbench export docker|k8s|prometheus DIR`) into a folder of the user's.

The rules every export follows: files already there are kept unless `force` (someone may have
edited them), nothing is written when any file would be refused, and each file is written whole
(a temporary file in the same folder, renamed into place), so an interrupted export never leaves
a half-written file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from workbench.errors import ValidationError


def write_folder(directory: str | Path, files: dict[str, str | bytes], *, force: bool = False,
                 empty: bool = False) -> list[Path]:  # fmt: skip
    """Write `files` (name -> text or bytes; names may hold '/') into `directory`, made if missing.

    Refused, before anything is written, when one of the files exists, or with `empty` when the
    folder holds anything at all (a Docker build context sends all of it to the builder), unless
    `force`: then the named files are replaced and anything else is left alone."""
    folder = Path(directory).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{folder} is a file, not a folder.", "Give a folder to write the files into.")
    if not force:
        if empty and folder.is_dir() and any(folder.iterdir()):
            raise ValidationError(f"{folder} already exists and is not empty.",
                                  "Choose a new folder, or pass --force to write into it anyway.")  # fmt: skip
        existing = [name for name in files if (folder / name).exists()]
        if existing:
            raise ValidationError(f"{', '.join(existing)} already exist in {folder}.",
                                  "Choose another folder, or pass --force to replace them.")  # fmt: skip
    try:
        for name in files:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError(f"Cannot create {folder}: {exc.strerror or exc}.") from exc
    return [write_whole(folder / name, content) for name, content in files.items()]


def write_whole(path: Path, content: str | bytes) -> Path:
    """`content` into `path` (mode 0644) through a temporary file in the same folder, renamed into place."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ValidationError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
    return path
