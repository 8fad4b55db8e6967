"""Notebook parameters: read the `parameters` cell, validate and coerce what users pass.

Types are inferred from the defaults in the parameters cell (`lr = 0.1` is a float), or taken
from an annotation (`n: int = 5`). A default that is not a literal (`x = np.arange(3)`) only
exists once the cell runs: its type is "any" and its source text is never a value (not injected,
not recorded). Validation happens before any kernel starts, so a typo in a parameter name or a
value of the wrong type is a one-line error instead of a failed run.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import ValidationError, WorkbenchError

if TYPE_CHECKING:
    import nbformat

TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def read_notebook(path: str | os.PathLike[str]) -> nbformat.NotebookNode:
    """Load and validate a notebook file, with one-line errors for the usual mistakes."""
    import nbformat

    nb_path = Path(path)
    if not nb_path.is_file():
        raise WorkbenchError(f"Notebook not found: {nb_path}.", "Check the path.")
    if nb_path.suffix != ".ipynb":
        raise WorkbenchError(f"{nb_path.name} is not a notebook (.ipynb).", "Pass a Jupyter notebook file.")
    try:
        nb = nbformat.read(nb_path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises JSON, validation and reader errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WorkbenchError(
            f"{nb_path.name} is not a valid notebook: {first}", "Open and save it in JupyterLab to repair it."
        ) from exc
    return nb


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    """The cell tagged `parameters` (papermill's convention), or None."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


NotebookSource = "str | os.PathLike[str] | nbformat.NotebookNode"


def _as_notebook(notebook: NotebookSource) -> tuple[nbformat.NotebookNode, str]:
    if not isinstance(notebook, (str, os.PathLike)):
        return notebook, "the notebook"
    return read_notebook(notebook), Path(notebook).name


def notebook_parameters(notebook: NotebookSource) -> dict[str, dict[str, Any]]:
    """name -> {"default": value, "type": "int"|"float"|...|"any", "help": comment} from the parameters cell.

    For an expression default (`x = np.arange(3)`) `default` is its source text, for display
    only, and `type` is "any" (unless annotated): the value only exists in the kernel, so any value
    may replace it. `literal_defaults` holds the defaults that are values.
    """
    return {name: {k: v for k, v in spec.items() if k != "literal"} for name, spec in _declared(notebook).items()}


def _declared(notebook: NotebookSource) -> dict[str, dict[str, Any]]:
    """`notebook_parameters` plus "literal": whether the default is a plain value."""
    nb, label = _as_notebook(notebook)
    cell = parameters_cell(nb)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise WorkbenchError(f"The parameters cell of {label} has a syntax error: {exc.msg}.") from exc
    lines = cell.source.splitlines()
    found: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        target, annotation, value = None, None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
            annotation = ast.unparse(node.annotation)
        if target is None:
            continue
        default, literal = _default_of(value)
        inferred = TYPE_NAMES.get(type(default), "any") if literal else "any"
        type_name = annotation if annotation in TYPE_NAMES.values() else inferred
        line = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
        help_text = line.split("#", 1)[1].strip() if "#" in line else ""
        found[target] = {"default": default, "type": type_name, "help": help_text, "literal": literal}
    return found


def _default_of(value: ast.expr | None) -> tuple[Any, bool]:
    """(default, is_literal): a literal's value, else the expression's source text (for display)."""
    if value is None:  # `n: int` without a value
        return None, False
    try:
        return ast.literal_eval(value), True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return ast.unparse(value), False


def literal_defaults(notebook: NotebookSource) -> dict[str, Any]:
    """The parameters cell's plain-value defaults: what a run records for the parameters it was not given.

    A parameters cell with a syntax error has none (the run then fails in that cell, as with
    papermill): only passing parameters to such a notebook is refused up front.
    """
    try:
        declared = _declared(notebook)
    except WorkbenchError:
        return {}
    return {name: spec["default"] for name, spec in declared.items() if spec["literal"]}


def coerce_text(name: str, raw: str, type_name: str) -> Any:
    """A parameter value typed as text (CLI, sweep grids, widgets) converted to the parameter's type."""
    import yaml

    try:
        if type_name == "str":
            return raw
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError(raw)
        value = yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        raise ValidationError(f"Parameter {name!r} expects {type_name}, got {raw[:80]!r}.") from exc
    if type_name == "any" and isinstance(value, str):
        value = _python_literal(raw, value)
    if type_name in ("list", "dict") and type(value).__name__ != type_name:
        raise ValidationError(f"Parameter {name!r} expects a {type_name}, got {raw!r}.")
    return value


def _python_literal(raw: str, fallback: str) -> Any:
    """What YAML reads as text may be a Python literal (`(1, 2)`, `1e-3`, `None`): take that, else the text."""
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return fallback
    return list(value) if isinstance(value, tuple) else value


def _check_value(name: str, value: Any, type_name: str) -> Any:
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "list": lambda v: isinstance(v, (list, tuple)),
        "dict": lambda v: isinstance(v, dict),
    }.get(type_name, lambda v: True)
    if hasattr(value, "item"):  # numpy scalars from sweeps
        value = value.item()
    if not ok(value):
        raise ValidationError(
            f"Parameter {name!r} expects {type_name}, got {type(value).__name__} {value!r}.",
            "Pass a value of the type of the default in the notebook's parameters cell.",
        )
    return list(value) if isinstance(value, tuple) else value


def validate_params(
    notebook: NotebookSource,
    params: dict[str, Any] | None,
    *,
    allow_new: bool = False,
    from_text: bool = False,
    label: str | None = None,
) -> dict[str, Any]:
    """Check `params` against the notebook's parameters cell; coerce text values (CLI) to types."""
    params = dict(params or {})
    if not params:
        return {}
    nb, default_label = _as_notebook(notebook)
    label = label or default_label
    declared = notebook_parameters(nb)
    if not declared and not allow_new:
        raise ValidationError(
            f"{label} has no cell tagged 'parameters', so it takes no parameters.",
            "Tag the cell holding the defaults with 'parameters' (JupyterLab: property inspector).",
        )
    result: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValidationError(f"Invalid parameter name {name!r}.", "Use a Python identifier.")
        spec = declared.get(name)
        if spec is None:
            if not allow_new:
                known = ", ".join(sorted(declared)) or "none"
                raise ValidationError(
                    f"Unknown parameter {name!r} for {label} (known: {known}).",
                    "Fix the name, or pass --allow-new-params to inject it anyway.",
                )
            result[name] = coerce_text(name, value, "any") if from_text and isinstance(value, str) else value
            continue
        type_name = spec["type"]
        if from_text and isinstance(value, str):
            result[name] = coerce_text(name, value, type_name)
        else:
            result[name] = _check_value(name, value, type_name)
    return result


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parameters from a YAML (or JSON) mapping file."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ValidationError(f"Cannot read parameters file {file}: {exc.strerror}.") from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"Parameters file {file} is not valid YAML: {exc}.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValidationError(f"Parameters file {file} must hold a mapping of name: value.")
    return data
