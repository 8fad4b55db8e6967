"""What the JupyterLab Run dialog needs: a notebook's defaults, and checks whose errors name their field.

The dialog keeps itself open and marks the input a refusal is about, so every check here raises a
`FieldError` carrying the dialog's name for that input (`experiment`, `parallel`, `params.<name>`);
the REST layer passes `field` on in its `{"error", "hint", "field"}` reply.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ValidationError, WorkbenchError
from workbench.names import NAME_PATTERN, derive_name, validate_name

if TYPE_CHECKING:
    import nbformat

    from workbench.workspace import Workspace


class FieldError(ValidationError):
    """A refused form value; `field` names the input it is about (e.g. "params.lr")."""

    def __init__(self, field: str, error: WorkbenchError) -> None:
        super().__init__(error.message, error.hint)
        self.field = field


@contextmanager
def about(field: str) -> Iterator[None]:
    """Re-raise a user-facing error from the block as a `FieldError` about `field`."""
    try:
        yield
    except FieldError:
        raise
    except WorkbenchError as exc:
        raise FieldError(field, exc) from exc


# --------------------------------------------------------------------------------------------
# Defaults


def _code_without_magics(source: str) -> str:
    """Cell source that `ast` can parse: IPython magics and shell lines blanked (line numbers kept)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _experiment_call(node: ast.AST) -> str | None:
    """The literal name in a `set_experiment("name")` / `wb.set_experiment(name="name")` call."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called != "set_experiment":
        return None
    values = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "name")]
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    return None


def notebook_experiment(nb: nbformat.NotebookNode) -> str | None:
    """The experiment the notebook files its interactive runs under (`wb.set_experiment("...")` in a
    code cell), when that is a legal name: a tracked run of it then lands next to them."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_code_without_magics(cell.source))
        except SyntaxError:
            continue  # a cell the kernel would refuse too: nothing to learn from it
        for node in ast.walk(tree):
            name = _experiment_call(node)
            if name and NAME_PATTERN.match(name) and ".." not in name:
                return name
    return None


def default_experiment(path: Path, nb: nbformat.NotebookNode) -> str:
    """The notebook's own experiment, else a legal name derived from its file name (`02_train` -> `nb-02_train`)."""
    return notebook_experiment(nb) or derive_name(path.stem)


def run_form(path: Path) -> dict[str, Any]:
    """What the Run dialog is prefilled with: the parameters cell and a valid default experiment."""
    from workbench.runs.params import notebook_parameters, read_notebook

    experiment = default_experiment(path, read_notebook(path))
    return {"parameters": notebook_parameters(path), "default_experiment": experiment}


# --------------------------------------------------------------------------------------------
# Checks


def check_run_form(notebook: Path, params: dict[str, Any], experiment: str | None, kernel: str | None = None) -> None:
    """Refuse a bad experiment name, kernel or parameter value before anything is queued, naming its field."""
    from workbench.runs.params import read_notebook, validate_params
    from workbench.runs.runner import check_kernel

    if experiment is not None:
        with about("experiment"):
            validate_name(experiment, "experiment name")
    if kernel is not None:
        with about("kernel"):
            check_kernel(kernel)
    nb = read_notebook(notebook)
    for name, value in params.items():
        with about(f"params.{name}"):
            validate_params(nb, {name: value}, from_text=True, label=notebook.name)


def check_sweep_form(notebook: Path, grid: dict[str, list[Any]], params: dict[str, Any], experiment: str | None,
                     parallel: Any, ws: Workspace, kernel: str | None = None) -> int:  # fmt: skip
    """`check_run_form` plus the sweep's parallelism, size and grid values; returns the number of runs.

    The size is checked before any value, so a grid of 10,000 values is refused without walking it.
    """
    from workbench.runs.params import read_notebook, validate_params
    from workbench.sweeps import check_parallel, check_sweep_size

    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise FieldError(f"params.{name}", ValidationError(f"grid[{name!r}] must be a non-empty list of values."))
    with about("parallel"):
        check_parallel(parallel, ws)
    total = check_sweep_size(grid, None, ws)
    check_run_form(notebook, params, experiment, kernel)
    nb = read_notebook(notebook)
    for name, values in grid.items():
        for value in values:
            with about(f"params.{name}"):
                validate_params(nb, {name: value}, from_text=True, label=notebook.name)
    return total
