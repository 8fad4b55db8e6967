"""docs/cli.md is generated from the CLI and must match it."""

from __future__ import annotations

from pathlib import Path

from workbench.cli.reference import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_cli_reference_is_current():
    assert DOC.read_text() == render(), (
        "docs/cli.md is out of date: run `.venv/bin/python -m workbench.cli.reference > docs/cli.md`"
    )
