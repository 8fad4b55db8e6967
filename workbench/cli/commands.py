"""Imports every command module so that each registers its commands on the root app."""

from workbench.cli import demo_cmds, doctor_cmds, run_cmds, snapshot_cmds, workspace_cmds  # noqa: F401
