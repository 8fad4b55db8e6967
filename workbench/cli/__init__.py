"""The `workbench` command line: a thin shell over the library API."""

from workbench.cli.app import app, main

__all__ = ["app", "main"]
