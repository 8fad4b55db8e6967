"""Imports every command module so that each registers its commands on the root app."""

from workbench.cli import (  # noqa: F401
    demo_cmds,
    doctor_cmds,
    export_cmds,
    governance_cmds,
    import_cmds,
    model_cmds,
    predict_cmds,
    remote_cmds,
    run_cmds,
    runs_cmds,
    server_cmds,
    snapshot_cmds,
    workspace_cmds,
)
