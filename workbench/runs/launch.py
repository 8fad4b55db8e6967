"""Starting runs: in this process, in a background worker, again (rerun), and cancelling them.

This is the library behind `wb.run`, `workbench run`, `workbench rerun` and the REST API's
"start run" button. Validation (notebook, parameters, kernel, names) happens here before any
record is written, so a mistake leaves nothing behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import blobs
from workbench.errors import ValidationError
from workbench.names import validate_name
from workbench.remote.dispatch import remote_capable
from workbench.runs import environment
from workbench.runs.events import run_dir
from workbench.runs.lifecycle import given_params
from workbench.runs.runner import REQUEST_FILE, execute, prepare, queue
from workbench.runs.store import Run, get_run
from workbench.workspace import Workspace, current_workspace

if TYPE_CHECKING:
    from workbench.remote.config import Remote
    from workbench.remote.runs import RunPlace


class ReproducibilityWarning(UserWarning):
    """A rerun does not run on exactly what the original ran on (notebook, code, packages)."""


def check_tags(tags: dict[str, Any] | None) -> dict[str, str]:
    """Tags as text, with names validated before anything is recorded (runs and sweeps)."""
    clean = {}
    for key, value in (tags or {}).items():
        validate_name(str(key), "tag name")
        clean[str(key)] = str(value)
    return clean


def run(
    notebook: str | os.PathLike[str],
    params: dict[str, Any] | None = None,
    *,
    experiment: str | None = None,
    tags: dict[str, Any] | None = None,
    allow_new_params: bool = False,
    kernel: str | None = None,
    background: bool = False,
    params_from_text: bool = False,
    fast: bool | None = None,
    autolog: bool | None = None,
    ws: Workspace | None = None,
) -> Run:
    """Execute `notebook` with `params` as a tracked run and return it.

    With a team server configured (and no `ws` given) the run executes here and is logged to the
    server (`workbench.remote.runs.run_place`); this returns once the server has it (or after
    `$WORKBENCH_SYNC_TIMEOUT`, the run then `syncing`).
    With `background=True` the run executes in a detached worker process and this returns at
    once with the run `queued`; follow it with `get_run` (the UI and REST API do this).
    `fast` (default: the workspace setting `fast_kernels`, on) starts the kernel from a fork server
    with the notebook's imports preloaded (see docs/performance.md).
    `autolog` (default: the workspace setting `autolog`, on) records scikit-learn's fits, scores and
    metric calls without logging calls (see docs/runs.md, "Autologging"); False turns it off for this run.
    """
    from workbench.remote.runs import run_place

    if experiment is not None:
        validate_name(experiment, "experiment name")
    place = run_place(ws)  # the workspace, or a team server's spool (`ws` not given, a server configured)
    if background and place.remote is not None:
        raise ValidationError(f"Runs logged to the team server {place.remote.url} execute in the foreground.",
                              "Leave out background=True / --background (or start a sweep for many runs).")  # fmt: skip
    ws = place.ws
    prepared = prepare(notebook, params, allow_new_params=allow_new_params, from_text=params_from_text,
                       kernel_name=kernel, **fast_options(ws, fast, autolog))  # fmt: skip
    record = place.adopt(queue(ws, prepared, experiment=experiment, tags=check_tags(tags)))
    if background:
        start_background(ws, record.run_id)
    else:
        execute(ws, prepared, record)
    return place.get_run(record.run_id)


def fast_options(ws: Workspace, fast: bool | None, autolog: bool | None = None) -> dict[str, Any]:
    """`prepare` arguments for fork-server kernels and autologging: each on unless disabled per call
    or per workspace (settings `fast_kernels`, `autolog`)."""
    enabled = ws.setting("fast_kernels", True) if fast is None else fast
    autologs = ws.setting("autolog", True) if autolog is None else autolog
    return {"fast": bool(enabled), "extra_preload": list(ws.setting("preload", []) or []), "autolog": bool(autologs)}


def start_background(ws: Workspace, run_id: str, remote: Remote | None = None) -> int:
    """Execute a queued run in a detached worker process; returns its pid.

    A run queued in the spool of the team server `remote` is executed by `workbench.remote.tasks`,
    which logs it to that server (its URL and token in the worker's environment, never in its argv)."""
    module, env = "workbench.runs.worker", None
    if remote is not None:
        from workbench.remote.runs import remote_env

        module, env = "workbench.remote.tasks", {**os.environ, **remote_env(remote)}
    folder = run_dir(ws, run_id)
    with open(folder / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, str(ws.root), run_id],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env,
        )  # fmt: skip
    return proc.pid


#: Tags that make a run a member of a sweep or a pipeline run: a rerun is neither, so it drops them
#: (and keeps `rerun_of` plus `parent_run_id`), or filtering by the sweep would list it as a member.
MEMBERSHIP_TAGS = ("sweep", "pipeline", "pipeline_run", "pipeline_step")
RERUN_TAG = "rerun_of"


def rerun(run_id: str, *, experiment: str | None = None, background: bool = False,
          ws: Workspace | None = None) -> Run:  # fmt: skip
    """Execute the same notebook content with the same parameters on the same snapshot versions.

    With `background=True` the rerun executes in a detached worker process (as `run` does) and
    this returns at once with the new run `queued`: the lab's Rerun button uses it.

    The new run links to the original (`parent_run_id`, tag `rerun_of`) but is not a member of the
    original's sweep or pipeline run. A run that never started recorded no inputs, so there is
    nothing to pin: rerunning it would silently use the latest data, and is refused instead. When
    the notebook file, the code commit or the installed packages differ from the original's, a
    `ReproducibilityWarning` says how.

    With a team server configured (and no `ws` given) the original is the server's (its notebook
    content downloaded and verified, its parameters and snapshot versions as the server recorded
    them, wherever it ran); the rerun executes here and is logged to the server as a new run.
    """
    from workbench.remote.runs import run_place

    place = run_place(ws)  # the workspace, or a team server's spool (asked first whether we may log runs)
    ws = place.ws
    original = get_run(run_id, ws if place.remote is None else None)  # a server's run: `get_run` asks it
    check_reproducible(original)
    for message in reproducibility_differences(original):
        warnings.warn(message, ReproducibilityWarning, stacklevel=2)
    prepared = prepare(
        original.notebook or "notebook.ipynb", _rerun_given(original, place), allow_new_params=True,
        kernel_name=original.kernel, source=_stored_notebook(original, place),
        **fast_options(ws, None, _autologged(original, place)),
    )  # fmt: skip
    pins = {name: int(version) for name, version in (ref.split("@") for ref in original.inputs)}
    record = queue(ws, prepared, experiment=experiment or original.experiment, tags=rerun_tags(original),
                   parent_run_id=original.run_id, pins=pins)  # fmt: skip
    if background:
        start_background(ws, record.run_id, place.remote)  # the worker reads the pins from the run's request file
        return get_run(record.run_id, ws) if place.remote is None else _queued_on_server(ws, record.run_id)
    execute(ws, prepared, place.adopt(record), pins=pins)
    return place.get_run(record.run_id)


def _stored_notebook(original: Run, place: RunPlace) -> bytes:
    """The notebook content `original` executed, checked against its hash (a server's: downloaded once)."""
    what = f"notebook content of run {original.run_id}"
    if place.remote is None:
        return blobs.read_verified(place.ws, original.notebook_blob or "", what=what)
    from workbench.remote.tasks import server_blob

    return server_blob(place.remote, original.notebook_blob or "", what).read_bytes()


def _autologged(original: Run, place: RunPlace) -> bool | None:
    """Whether `original` autologged (its request file says), so that its rerun does the same; None
    (the default then) when unknown: a server's run, or one queued before autologging existed."""
    import json

    if place.remote is not None:
        return None
    try:
        value = json.loads((run_dir(place.ws, original.run_id) / REQUEST_FILE).read_text()).get("autolog")
    except (OSError, ValueError):
        return None
    return None if value is None else bool(value)


def _rerun_given(original: Run, place: RunPlace) -> dict[str, Any]:
    """`rerun_params`, for a run of the workspace or of the server."""
    if place.remote is None:
        return rerun_params(original, place.ws)
    from workbench.remote.tasks import given_params

    given = given_params(place.remote, original.run_id)
    return dict(original.params) if given is None else given


def _queued_on_server(spool: Workspace, run_id: str) -> Run:
    """A rerun just handed to its background worker, as the spool has it: queued (the server learns of
    it from the worker's sender)."""
    from dataclasses import replace

    from workbench.remote.runs import spooled_run

    return replace(spooled_run(spool, run_id), status="queued")


def rerun_params(original: Run, ws: Workspace) -> dict[str, Any]:
    """What to inject into a rerun: exactly what the original was given.

    A run records its defaults too, but injecting them would change nothing at best; the notebook
    sets them itself (and a default that is an expression is not recorded at all: its value only
    exists in the kernel). Runs recorded before `params_given` existed recorded only what they
    were given (and what they logged), so all their params are injected, as before.
    """
    given = given_params(ws, original.run_id)
    return dict(original.params) if given is None else given


def check_reproducible(original: Run) -> None:
    """Refuse a rerun that could not reproduce `original`: an interactive run, or one that never started."""
    if original.kind != "notebook" or not original.notebook_blob:
        raise ValidationError(
            f"Run {original.run_id} is an interactive run: there is no notebook execution to repeat.",
            "Rerun works on runs started with 'workbench run' or wb.run().",
        )
    if original.started_at is None:
        state = "not started yet" if original.status == "queued" else "never started"
        rerun_of = original.tags.get(RERUN_TAG)
        hint = (f"It was itself a rerun: rerun {rerun_of} instead." if rerun_of
                else f"Start a new run with `workbench run {original.notebook or 'NOTEBOOK'} ...`.")  # fmt: skip
        raise ValidationError(
            f"Run {original.run_id} never executed (status {original.status}, {state}): it recorded no inputs, "
            "so there is nothing to reproduce.",
            hint,
        )


def rerun_tags(original: Run) -> dict[str, str]:
    """The original's tags without sweep/pipeline membership, plus `rerun_of`: a rerun has its own identity."""
    tags = {key: value for key, value in original.tags.items() if key not in MEMBERSHIP_TAGS}
    return {**tags, RERUN_TAG: original.run_id}


def reproducibility_differences(original: Run) -> list[str]:
    """What differs now from what `original` ran on."""
    messages = []
    if original.notebook and not Path(original.notebook).is_file():
        messages.append(f"The notebook file {original.notebook} no longer exists; rerunning the stored copy "
                        f"from run {original.run_id}.")  # fmt: skip
    elif original.notebook:
        import hashlib

        current_hash = hashlib.sha256(Path(original.notebook).read_bytes()).hexdigest()
        if current_hash != original.notebook_hash:
            messages.append(f"{original.notebook} changed since run {original.run_id}; rerunning the original content.")
    folder = Path(original.notebook).parent if original.notebook else Path.cwd()
    commit, _dirty = environment.git_state(folder) if folder.is_dir() else (None, None)
    if original.git_commit and commit and commit != original.git_commit:
        messages.append(f"Code is at commit {commit[:10]}, the original ran at {original.git_commit[:10]}.")
    changes = environment.package_differences(original.packages, environment.packages())
    if changes:
        messages.append("Package versions differ from the original run: " + "; ".join(changes))
    return messages


@remote_capable("cancel_run")
def cancel_run(run_id: str, ws: Workspace | None = None) -> bool:
    """Ask a queued or running run to stop; returns False if it had already ended.

    A cancel file stops a queued run before it starts; a running one gets SIGTERM sent to the
    process executing it, which kills the kernel and ends the run as `killed` (`cancellation`).
    With a team server configured (and no `ws` given) the server is asked: the client executing
    the run hears of it from the server and cancels it there the same way (`remote.sender`).
    """
    from workbench.runs.cancellation import cancel_in_folder
    from workbench.runs.ids import check_run_id

    return cancel_in_folder(run_dir(ws or current_workspace(), check_run_id(run_id)))
