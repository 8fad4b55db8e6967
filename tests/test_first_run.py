"""The first run never fails on notebooks and machines we did not prepare.

Kernel names resolved as jupyter_client resolves them, notebooks without kernel metadata,
expression defaults in the parameters cell, the full effective parameters of every run, kernels
that are slow to start, no kernel chatter on the terminal, and papermill's own test notebooks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import run_cli_in_process
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

import workbench as wb
from workbench.errors import WorkbenchError
from workbench.kernels.readiness import KernelStartError
from workbench.runs.events import EVENTS_FILE, read_events, run_dir
from workbench.runs.params import coerce_text, notebook_parameters
from workbench.runs.runner import execute, kernel_manager_with_env, prepare, queue
from workbench.runs.store import executed_notebook_path


def _write(path: Path, cells: list, metadata: dict | None = None) -> Path:
    nb = new_notebook()
    nb.metadata.update(metadata or {})
    nb.cells = cells
    nbformat.write(nb, path)
    return path


def _params_cell(source: str):
    return new_code_cell(source, metadata={"tags": ["parameters"]})


LOG_N = "import workbench as wb\nwb.log_metric('n', n)"


def _start_event(ws, run_id: str) -> dict:
    return next(e for e in read_events(run_dir(ws, run_id) / EVENTS_FILE) if e["t"] == "start")


def _injected(run) -> str:
    executed = json.loads(executed_notebook_path(run).read_text())
    cells = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    return "".join(cells[0]["source"]) if cells else ""


# -- 1. kernel names ---------------------------------------------------------------------------


def test_kernelspec_python_runs_on_the_native_kernel_and_records_it(ws, tmp_path):
    """Used to be refused: "Kernel 'python' is not installed (available: python3)"."""
    nb = _write(tmp_path / "old.ipynb", [_params_cell("n = 1"), new_code_cell(LOG_N)],
                {"kernelspec": {"name": "python", "display_name": "Python", "language": "python"}})  # fmt: skip
    run = wb.run(nb, {"n": 2})
    assert run.status == "finished", run.error
    assert run.kernel == "python3" and run.metrics == {"n": 2.0}


def test_an_unknown_kernel_is_still_refused_up_front(ws, tmp_path):
    nb = _write(tmp_path / "k.ipynb", [new_code_cell("1")], {"kernelspec": {"name": "python2", "display_name": "2"}})
    with pytest.raises(WorkbenchError, match="Kernel 'python2' is not installed"):
        wb.run(nb)
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


# -- 2. notebooks without kernel metadata ------------------------------------------------------------


def test_a_notebook_without_kernelspec_or_language_runs_on_the_default_python_kernel(ws, tmp_path):
    """Used to fail as a recorded run: `ValueError: No language found in notebook`, with or without --kernel."""
    nb = _write(tmp_path / "bare.ipynb", [_params_cell("n = 1"), new_code_cell(LOG_N)])
    for kernel in (None, "python3"):
        run = wb.run(nb, {"n": 3}, kernel=kernel)
        assert run.status == "finished", run.error
        assert run.kernel == "python3" and run.metrics == {"n": 3.0}
        executed = json.loads(executed_notebook_path(run).read_text())
        assert executed["metadata"]["kernelspec"]["name"] == "python3"
        assert executed["metadata"]["language_info"]["name"] == "python"
    assert json.loads(nb.read_text())["metadata"] == {}  # the user's file is untouched


def test_another_language_without_a_kernel_is_refused_up_front(ws, tmp_path):
    nb = _write(tmp_path / "jl.ipynb", [new_code_cell("println(1)")], {"language_info": {"name": "julia"}})
    with pytest.raises(WorkbenchError, match="names no kernel and no julia kernel is installed"):
        wb.run(nb)
    assert not ws.runs_dir.exists() or not any(ws.runs_dir.iterdir())


# -- 3. expression defaults ------------------------------------------------------------------------

EXPRESSION = "import numpy as np\nlearning_rate = 0.05\nmax_depth = 3\nx = np.arange(3)"
REPORT = "import workbench as wb\nwb.log_param('x_type', type(x).__name__)\nwb.log_metric('x_sum', float(sum(x)))"


@pytest.fixture()
def expression_nb(tmp_path):
    return _write(tmp_path / "expr.ipynb", [_params_cell(EXPRESSION), new_code_cell(REPORT)],
                  {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})  # fmt: skip


def test_an_expression_default_has_type_any_and_takes_the_value_given(ws, expression_nb, capsys):
    """Used to be typed str: `-p x [1,2]` injected the string '[1, 2]', params={'x': [1, 2]} was refused."""
    assert notebook_parameters(expression_nb)["x"] == {"default": "np.arange(3)", "type": "any", "help": ""}
    run = wb.run(expression_nb, {"x": [1, 2]})
    assert run.status == "finished", run.error
    assert run.params["x"] == [1, 2] and run.params["x_type"] == "list" and run.metrics["x_sum"] == 3.0

    proc = run_cli_in_process(capsys, "run", str(expression_nb), "-p", "x", "[1, 2, 3]", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"]["x"] == [1, 2, 3]


def test_text_for_an_any_parameter_is_read_as_yaml_or_a_python_literal():
    assert coerce_text("x", "[1, 2]", "any") == [1, 2]
    assert coerce_text("x", "(1, 2)", "any") == [1, 2]
    assert coerce_text("x", "1e-3", "any") == 0.001
    assert coerce_text("x", "None", "any") is None
    assert coerce_text("x", "'7'", "any") == "7"
    assert coerce_text("x", "hello", "any") == "hello"


# -- 4. effective parameters --------------------------------------------------------------------------


def test_runs_show_lists_every_parameter_of_the_cell_and_the_given_ones_are_recorded(ws, expression_nb, capsys):
    proc = run_cli_in_process(capsys, "run", str(expression_nb), "-p", "learning_rate", "0.1", "--json")
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    shown = run_cli_in_process(capsys, "runs", "show", run_id).stdout
    assert "learning_rate=0.1" in shown and "max_depth=3" in shown
    assert "np.arange" not in shown  # an expression default is not a value: not recorded
    assert _start_event(ws, run_id)["params_given"] == ["learning_rate"]
    assert wb.get_run(run_id).params == {"learning_rate": 0.1, "max_depth": 3, "x_type": "ndarray"}


def test_a_rerun_injects_only_what_the_original_was_given(ws, expression_nb):
    original = wb.run(expression_nb, {"learning_rate": 0.2})
    again = wb.rerun(original.run_id)
    assert again.status == "finished", again.error
    assert _start_event(ws, again.run_id)["params_given"] == ["learning_rate"]
    injected = _injected(again)
    assert "learning_rate = 0.2" in injected and "max_depth" not in injected and "x =" not in injected
    assert again.params["x_type"] == "ndarray"  # the expression default stayed an array
    assert again.params == original.params


def test_a_rerun_of_a_run_recorded_before_params_given_injects_its_params(ws, expression_nb):
    from workbench.runs.launch import rerun_params
    from workbench.runs.lifecycle import create_run, given_params

    record = create_run(ws, experiment="old", kind="notebook", params={"learning_rate": 0.3})
    record.end("finished")
    record.sync()
    assert given_params(ws, record.run_id) is None
    assert rerun_params(wb.get_run(record.run_id), ws) == {"learning_rate": 0.3}


def test_sweep_runs_record_their_defaults_and_which_parameters_were_swept(ws, expression_nb):
    result = wb.sweep(expression_nb, {"max_depth": [1, 2]}, parallel=1)
    for run_id in result.run_ids:
        run = wb.get_run(run_id)
        assert run.status == "finished", run.error
        assert run.params["learning_rate"] == 0.05 and run.params["max_depth"] in (1, 2)
        assert _start_event(ws, run_id)["params_given"] == ["max_depth"]


# -- 5. kernels that are slow to start ------------------------------------------------------------------


@pytest.fixture()
def slow_ipython(tmp_path, monkeypatch):
    """An IPython startup file that makes every kernel take `seconds` before it first answers."""

    def make(seconds: float) -> None:
        startup = tmp_path / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-slow.py").write_text(f"import time\ntime.sleep({seconds})\n")
        monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    return make


def test_a_kernel_slower_than_a_second_to_answer_is_waited_for(ws, notebook, slow_ipython):
    """It used to fail after 60 s with "Kernel didn't respond in 60 seconds": the client polled once a
    second and only accepted the reply to its latest request, which the kernel answered last."""
    slow_ipython(2.5)
    run = wb.run(notebook("slow", "n = 1", "import workbench as wb\nwb.log_metric('n', n)"))
    assert run.status == "finished", run.error
    assert run.metrics == {"n": 1.0}


def test_a_kernel_that_does_not_start_is_retried_once_as_a_plain_kernel(ws, notebook):
    nb = notebook("retry", "n = 1", "import workbench as wb\nwb.log_metric('n', n)")
    calls: list[list[str] | None] = []

    def first_never_ready(env: dict[str, str], log: Path, preload: list[str] | None) -> type:
        calls.append(preload)
        return kernel_manager_with_env(env, log, preload) if len(calls) > 1 else _never_ready(env, log, preload)

    prepared = prepare(nb, fast=True)
    record = queue(ws, prepared)
    assert execute(ws, prepared, record, kernel_manager_factory=first_never_ready) == "finished"
    assert calls[0] and calls[1] is None  # a fork-server kernel first, then a plain one
    assert "Trying once more with a plain kernel" in (run_dir(ws, record.run_id) / "kernel.log").read_text()


def test_a_kernel_that_never_starts_fails_the_run_with_one_line(ws, notebook):
    nb = notebook("never", "n = 1", "print(n)")
    prepared = prepare(nb, fast=True)
    record = queue(ws, prepared)
    assert execute(ws, prepared, record, kernel_manager_factory=_never_ready) == "failed"
    error = wb.get_run(record.run_id).error
    assert error["ename"] == "KernelStartError" and error["cell_index"] is None
    assert "did not answer" in error["evalue"] and len(error["traceback"]) == 1


def test_the_cli_reports_a_kernel_that_does_not_start_in_one_line(cli, notebook, slow_ipython, monkeypatch):
    slow_ipython(6)
    monkeypatch.setenv("WORKBENCH_KERNEL_START_TIMEOUT", "1")
    proc = cli("run", str(notebook("late", "n = 1", "print(n)")))
    assert proc.returncode == 1, proc.stderr
    assert "KernelStartError: The kernel did not answer within 1 s" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Error occurred while starting" not in proc.stderr  # papermill's log line, once per attempt


def _never_ready(env: dict[str, str], log: Path, preload: list[str] | None) -> type:
    """A kernel manager whose client gives up on the kernel at once, as after a start timeout."""
    base = kernel_manager_with_env(env, log, preload)

    class NeverReady(base):  # type: ignore[misc, valid-type]
        def client(self, **kw):
            kc = super().client(**kw)

            async def fail(timeout: float | None = None) -> None:
                raise KernelStartError("The kernel did not answer within 1 s of starting.")

            kc.wait_for_ready = fail
            return kc

    return NeverReady


BUSY = "while True: pass"


@pytest.fixture()
def first_use_in_a_notebook(ws, monkeypatch):
    """As `wb.sweep` in a notebook on first use: JPY_PARENT_PID set (the runner is inside a kernel) and
    no fork server yet for the notebook's imports (a preload set of its own), so both sweep workers
    start one at once and the one that loses the race exits."""
    import uuid

    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    ws.set_setting("preload", [f"first_use_{uuid.uuid4().hex}"])


@pytest.mark.slow
def test_kernels_outlive_a_fork_server_that_lost_the_start_race(ws, notebook, first_use_in_a_notebook):
    """Both first runs of the demo's sweep died mid-run ("Parent appears to have exited", DeadKernelError):
    ipykernel, told by JPY_PARENT_PID to watch its parent, exited when its fork server did."""
    nb = notebook("race", "n = 1", "import time\nimport workbench as wb\ntime.sleep(2)\nwb.log_metric('sq', n * n)")
    result = wb.sweep(nb, {"n": [1, 2, 3, 4]}, parallel=2)
    assert not result.failed, [wb.get_run(run_id).error for run_id in result.failed]


@pytest.mark.slow
def test_a_sweep_on_an_oversubscribed_machine_starts_every_kernel(ws, notebook, first_use_in_a_notebook):
    """`workbench demo` failed on first use with "Kernel didn't respond in 60 seconds" at load 4-5."""
    nb = notebook("tiny", "n = 1", "import workbench as wb\nwb.log_metric('sq', n * n)")
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(4)]
    try:
        started = time.monotonic()
        result = wb.sweep(nb, {"n": list(range(8))}, parallel=2)
        elapsed = time.monotonic() - started
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert not result.failed, [wb.get_run(run_id).error for run_id in result.failed]
    assert elapsed < 120


# -- 6. nothing from the kernel on the user's terminal ------------------------------------------------------

CHILD = """
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGINT, lambda *a: marker.write_text("SIGINT"))
pathlib.Path(sys.argv[1] + ".ready").write_text("")
time.sleep(20)
"""


def test_no_keyboard_interrupt_lines_on_the_terminal(cli, ws, notebook):
    proc = cli("run", str(notebook("quiet", "n = 1", "print(n)")), check=True)
    assert "KeyboardInterrupt caught" not in proc.stderr + proc.stdout
    for log in ws.runs_dir.glob("*/kernel.log"):
        assert "KeyboardInterrupt caught" not in log.read_text()


def test_a_kernel_gets_no_sigint_on_its_way_to_shutdown(ws, notebook, tmp_path):
    """jupyter_client interrupts every kernel before shutting it down; ipykernel logged
    "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." when that SIGINT landed in a handler.
    A child in the kernel's process group sees the same signals as the kernel."""
    marker = tmp_path / "sigint"
    cell = (f"import subprocess, sys, time, pathlib\nchild = subprocess.Popen([sys.executable, '-c', {CHILD!r}, "
            f"{str(marker)!r}])\npathlib.Path({str(tmp_path / 'pid')!r}).write_text(str(child.pid))\n"
            f"while not pathlib.Path({str(marker) + '.ready'!r}).exists():\n    time.sleep(0.02)")  # fmt: skip
    try:
        run = wb.run(notebook("child", None, cell))
        assert run.status == "finished", run.error
        time.sleep(0.5)
        assert not marker.exists(), "the kernel's process group was sent SIGINT"
    finally:
        pid_file = tmp_path / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- 7. papermill's own test notebooks ------------------------------------------------------------------

PAPERMILL_NOTEBOOKS = Path(__import__("papermill").__file__).parent / "tests" / "notebooks"
#: binder shells out to papermill on paths of papermill's repository; keyboard_interrupt sleeps 60 s to be interrupted
SKIPPED = {"binder.ipynb", "keyboard_interrupt.ipynb"}
PYTHON3 = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _generated(folder: Path) -> dict[str, Path]:
    """Kinds papermill's folder lacks: no metadata at all, raw and markdown cells, stderr output."""
    cells = {
        "gen_no_metadata": [_params_cell("n = 1"), new_code_cell("print(n)")],
        "gen_raw_cell": [new_raw_cell("raw *text*"), new_code_cell("x = 1")],
        "gen_markdown_only": [new_markdown_cell("# Title")],
        "gen_stderr": [new_code_cell("import sys\nprint('warn', file=sys.stderr)")],
    }
    return {name: _write(folder / f"{name}.ipynb", content, None if name == "gen_no_metadata" else PYTHON3)
            for name, content in cells.items()}  # fmt: skip


def _cases() -> list[str]:
    shipped = sorted(p.name for p in PAPERMILL_NOTEBOOKS.glob("*.ipynb")) if PAPERMILL_NOTEBOOKS.is_dir() else []
    return [name for name in shipped if name not in SKIPPED] + ["gen_no_metadata", "gen_raw_cell",
                                                                  "gen_markdown_only", "gen_stderr"]  # fmt: skip


def _papermill_ok(path: Path, folder: Path) -> bool:
    """Bare papermill's outcome; with no kernelspec it is given the default kernel, as nbclient and nbconvert use."""
    import papermill

    has_kernel = bool(json.loads(path.read_text()).get("metadata", {}).get("kernelspec", {}).get("name"))
    try:
        papermill.execute_notebook(str(path), str(folder / f"{path.stem}.papermill.ipynb"), cwd=str(folder),
                                   kernel_name=None if has_kernel else "python3", progress_bar=False)  # fmt: skip
    except Exception:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("name", _cases())
def test_papermill_test_notebooks_have_the_same_outcome_as_with_papermill(ws, tmp_path, capsys, name):
    folder = tmp_path / "nbs"
    folder.mkdir()
    (folder / "check.txt").write_text("read_check.ipynb looks for this file in its working directory")
    if name.startswith("gen_"):
        path = _generated(folder)[name]
    else:
        path = Path(shutil.copy(PAPERMILL_NOTEBOOKS / name, folder / name))
    proc = run_cli_in_process(capsys, "run", str(path))
    assert proc.returncode in (0, 1, 2), proc
    workbench_ok = proc.returncode == 0
    assert workbench_ok == _papermill_ok(path, folder), (name, proc.stdout, proc.stderr)
    if proc.returncode == 2:  # refused: a one-line reason, nothing recorded
        assert "Traceback" not in proc.stderr and not any(ws.runs_dir.glob("*/events.jsonl"))
