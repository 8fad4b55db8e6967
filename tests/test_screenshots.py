"""The README and docs show the screenshots `make screenshots` regenerates, in both themes.

Regenerating them drives a real lab for minutes (docs/screenshots.py, run by hand after a view
changes); this checks that the script, the Makefile target, the pictures and the pages that show
them agree, so a renamed view or a forgotten image fails here.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "docs" / "screenshots.py"


def _script():
    spec = importlib.util.spec_from_file_location("workbench_docs_screenshots", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images_shown(page: Path) -> set[str]:
    return {Path(m).name for m in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", page.read_text())}


def _images_linked(page: Path) -> set[str]:
    """Pictures a page shows or links to (the README links the dark ones, to stay short)."""
    return {Path(m).name for m in re.findall(r"\]\(([^)]+\.png)\)", page.read_text())}


def test_every_view_is_pictured_in_light_and_dark() -> None:
    names = _script().image_names()
    assert {n.rsplit("-", 1)[1] for n in names} == {"light.png", "dark.png"}
    assert {"sidebar-light.png", "runs-table-light.png", "compare-light.png", "models-light.png"} <= set(names)
    for name in names:
        image = REPO / "docs" / "images" / name
        assert image.is_file(), f"{image} is missing: run make screenshots"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{image} is not a PNG"


def test_readme_and_extension_docs_show_them() -> None:
    names = set(_script().image_names())
    assert names <= _images_shown(REPO / "docs" / "extension.md")
    readme = _images_shown(REPO / "README.md")
    assert {"sidebar-light.png", "runs-table-light.png", "compare-light.png", "models-light.png"} <= readme
    assert names <= _images_linked(REPO / "README.md")


def test_make_screenshots_runs_the_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^screenshots:.*\n\t.*docs/screenshots\.py", makefile, re.M)
