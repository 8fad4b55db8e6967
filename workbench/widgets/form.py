"""The aligned parameter form of `RunLauncher`: one grid, one row per field, the same four columns for all.

Column 1 is the field's name, 2 its value (what a single run uses), 3 an optional list of values
to sweep over, 4 a note: the help comment from the parameters cell, or what is wrong with the
field. Everything sits in one `GridBox`, so labels and inputs line up whatever their length,
and a sweep is described on the run's own form instead of a second copy of every field.
"""

from __future__ import annotations

import html
import os
from typing import Any

import ipywidgets as widgets

from workbench.runs.params import literal_defaults
from workbench.widgets.theme import head_html, note_html

#: The grid's columns: name, value, sweep values, note. Every row of the form uses them.
FORM_COLUMNS = "minmax(7em, max-content) 16em 18em minmax(12em, 1fr)"
#: Types typed as YAML text in the form (lists, dicts, and expression defaults).
YAML_TYPES = ("list", "dict", "any")
#: Placeholder of a sweep field, by parameter type.
SWEEP_HINTS = {"bool": "true, false", "str": "a, b", "int": "1, 2, 4 or randint(1, 9)",
               "float": "0.01, 0.1 or loguniform(1e-3, 1)"}  # fmt: skip


def cell_layout() -> widgets.Layout:
    """Every input fills its grid cell, with no margin of its own: the grid does the aligning."""
    return widgets.Layout(width="auto", margin="0")


def literal_parameters(notebook: str | os.PathLike[str]) -> set[str]:
    """Names in the parameters cell whose default is a plain literal (recorded by every run as is).

    A default such as `x = np.arange(3)` comes back from `notebook_parameters` as the text
    "np.arange(3)"; passing that text would replace the array with a string, so such a field is
    only passed when the user edits it.
    """
    return set(literal_defaults(notebook))


def yaml_text(value: Any) -> str:
    """A list or dict default as one line of YAML flow text, the way the field is edited."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def input_for(name: str, spec: dict[str, Any]) -> widgets.Widget:
    """The value input of one parameter, typed like its default; the help text is its tooltip.

    No description: the name is the row's first cell, so every input starts at the same x.
    """
    default, type_name = spec["default"], spec["type"]
    common = {"tooltip": spec.get("help") or f"{name} ({type_name})", "layout": cell_layout()}
    if type_name == "float":
        return widgets.FloatText(value=float(default) if isinstance(default, (int, float)) else 0.0, **common)
    if type_name == "int":
        return widgets.IntText(value=default if isinstance(default, int) else 0, **common)
    if type_name == "bool":
        return widgets.Checkbox(value=bool(default), indent=False, **common)
    if type_name == "str":
        return widgets.Text(value="" if default is None else str(default), **common)
    return widgets.Text(value=yaml_text(default), placeholder="YAML, e.g. [1, 2] or {a: 1}", **common)


def sweep_input_for(name: str, spec: dict[str, Any]) -> widgets.Text | None:
    """The optional "values to sweep over" field of one parameter (empty: the value column is used).

    None for a list or dict parameter: sweep values are comma-separated, like `--grid`, so they
    cannot hold lists.
    """
    if spec["type"] in ("list", "dict"):
        return None
    hint = SWEEP_HINTS.get(spec["type"], "1, 2, 3")
    return widgets.Text(placeholder=hint, tooltip=f"Values of {name} to sweep over, comma-separated",
                        layout=cell_layout())  # fmt: skip


def label_for(name: str, tooltip: str = "") -> widgets.Label:
    """A row's name cell (a Label, not a description, so the column takes the longest name's width)."""
    return widgets.Label(value=name, tooltip=tooltip or None, layout=cell_layout())


class FormGrid(widgets.GridBox):
    """The grid of form rows; `rows[field]` is that row's (label, value, sweep, note) widgets."""

    def __init__(self) -> None:
        super().__init__([], layout=widgets.Layout(grid_template_columns=FORM_COLUMNS, grid_gap="4px 10px",
                                                   align_items="center", overflow="visible"))  # fmt: skip
        self.rows: dict[str, tuple[widgets.Widget, ...]] = {}
        self.notes: dict[str, widgets.HTML] = {}
        self._help: dict[str, str] = {}

    def add_header(self, *titles: str) -> None:
        """A row of column headings (blank where a column needs none)."""
        self.children = [*self.children, *(widgets.HTML(head_html(t), layout=cell_layout()) for t in titles)]

    def add_row(self, field: str, value: widgets.Widget | None, sweep: widgets.Widget | None = None,
                help_text: str = "", label: str | None = None) -> None:  # fmt: skip
        """One field: its name, value input and sweep input (blank cells where it has none) and its note."""
        cells = (label_for(field if label is None else label, help_text), value or _blank(), sweep or _blank(),
                 widgets.HTML(note_html(help_text), layout=cell_layout()))  # fmt: skip
        self.rows[field] = cells
        self.notes[field] = cells[3]  # type: ignore[assignment]
        self._help[field] = help_text
        self.children = [*self.children, *cells]

    def show_error(self, field: str, error_html: str | None) -> None:
        """Put what is wrong with `field` in its note (or its help text back, with None)."""
        self.notes[field].value = error_html if error_html is not None else note_html(self._help[field])


def _blank() -> widgets.HTML:
    """An empty grid cell (keeps the next widget in its column)."""
    return widgets.HTML("", layout=cell_layout())


def title_html(notebook_name: str, has_parameters: bool) -> str:
    """The form's heading: the notebook's name, and a note when it takes no parameters."""
    return f"<b>{html.escape(notebook_name)}</b>" + ("" if has_parameters else " <i>(no parameters cell)</i>")


__all__ = ["FORM_COLUMNS", "FormGrid", "YAML_TYPES", "cell_layout", "input_for", "label_for", "literal_parameters",
           "sweep_input_for", "title_html", "yaml_text"]  # fmt: skip
