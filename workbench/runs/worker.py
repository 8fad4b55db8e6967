"""Background worker: `python -m workbench.runs.worker HOME RUN_ID` executes one queued run.

Used for runs started from the JupyterLab UI or `workbench run --background`: the caller
returns at once and the run lives in its own process (its own session, so closing a terminal
does not kill it). SIGTERM cancels the run cleanly (see `runs.cancellation.init_worker_process`).
"""

from __future__ import annotations

import sys

from workbench.runs.cancellation import init_worker_process
from workbench.runs.runner import execute_queued


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m workbench.runs.worker HOME RUN_ID\n")
        return 2
    init_worker_process()
    status = execute_queued(argv[0], argv[1])
    return 0 if status == "finished" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
