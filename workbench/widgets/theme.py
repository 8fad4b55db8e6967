"""The HTML pieces the widgets draw (tables, status pills, error and note lines), themed by JupyterLab.

Every colour is a JupyterLab CSS variable (`var(--jp-...)`), or a mix of two of them, so the same
HTML reads well in the light and the dark theme: a hard-coded light background with the theme's
light text is white-on-white in the dark theme. Coloured text is avoided for the same reason;
status and errors get a coloured border on a tint of the theme's own background instead (the
JupyterLab extension does the same, and its browser tests check the contrast).
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Sequence
from typing import Any

import pandas as pd

#: Height of one table row, in pixels: the checkbox column of `RunTable` uses it too so that each
#: checkbox sits beside its row (it is also the height of an ipywidgets input).
ROW_PX = 28


def _tint(colour: str, percent: int) -> str:
    """A theme colour mixed into the theme's background: light in the light theme, dark in the dark one."""
    return f"color-mix(in srgb, var({colour}) {percent}%, var(--jp-layout-color1))"


#: Status -> the theme colour of its border and tint.
STATUS_COLOURS = {"finished": "--jp-success-color1", "failed": "--jp-error-color1", "killed": "--jp-error-color1",
                  "running": "--jp-brand-color1", "queued": "--jp-warn-color1"}  # fmt: skip

#: The stylesheet of `html_table` (shipped with every table: a widget's HTML may be shown alone).
STYLE = (
    "<style>"
    ".wb-w-table{border-collapse:separate;border-spacing:0;margin:0;"
    "font-size:var(--jp-ui-font-size1);color:var(--jp-ui-font-color1);background:var(--jp-layout-color1)}"
    f".wb-w-table th,.wb-w-table td{{height:{ROW_PX}px;padding:0 8px;line-height:20px;text-align:left;"
    "white-space:nowrap;border:none;box-shadow:inset 0 -1px 0 var(--jp-border-color2)}"
    ".wb-w-table th{background:var(--jp-layout-color2);color:var(--jp-ui-font-color0);font-weight:600}"
    ".wb-w-table td.wb-w-num{text-align:right;font-variant-numeric:tabular-nums}"
    ".wb-w-status{padding:0 6px;border-radius:8px;border:1px solid var(--jp-border-color1);"
    "color:var(--jp-ui-font-color0);background:var(--jp-layout-color2)}"
    + "".join(f".wb-w-status-{status}{{border-color:var({colour});background:{_tint(colour, 22)}}}"
              for status, colour in STATUS_COLOURS.items())
    + "</style>"
)  # fmt: skip


#: Inline styles of the one-line messages (inline, so a message needs no stylesheet shown before it).
LINE = "display:inline-block;padding:0 6px;line-height:22px;color:var(--jp-ui-font-color0);"
ERROR_STYLE = f"{LINE}border-left:3px solid var(--jp-error-color1);background:{_tint('--jp-error-color1', 18)}"
OK_STYLE = f"{LINE}border-left:3px solid var(--jp-success-color1)"
NOTE_STYLE = "color:var(--jp-ui-font-color2)"
HEAD_STYLE = "color:var(--jp-ui-font-color1);font-weight:600"


def error_html(error: BaseException | str, field: str | None = None) -> str:
    """An error as one line (message and hint), the way every shell shows them, naming its `field` if any.

    Shown in the widget rather than raised: an exception in a button callback only reaches the
    browser console, where nobody looks.
    """
    where = f"<b>{html.escape(field)}</b>: " if field else ""
    return f'<span class="wb-w-error" style="{ERROR_STYLE}">{where}{html.escape(str(error))}</span>'


def ok_html(text: str) -> str:
    """A success line; `text` is trusted HTML (callers escape what came from users)."""
    return f'<span class="wb-w-ok" style="{OK_STYLE}">{text}</span>'


def note_html(text: str) -> str:
    """Muted help text beside a field (the comment of its line in the parameters cell)."""
    return f'<span class="wb-w-note" style="{NOTE_STYLE}">{html.escape(text)}</span>' if text else ""


def head_html(text: str) -> str:
    """A column heading of a form."""
    return f'<span class="wb-w-head" style="{HEAD_STYLE}">{html.escape(text)}</span>'


def format_value(value: Any) -> str:
    """Cell text: short floats, a dash for missing, escaped (values come from user notebooks)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "—"
    if isinstance(value, float):
        return html.escape(f"{value:.6g}")
    if isinstance(value, pd.Timestamp):
        return html.escape(value.strftime("%Y-%m-%d %H:%M:%S"))
    return html.escape(str(value))


def status_html(status: str) -> str:
    """A status as a pill: the theme's text on a tint, since coloured text fails contrast in one theme or the other."""
    known = status if status in STATUS_COLOURS else "other"
    return f'<span class="wb-w-status wb-w-status-{known}">{html.escape(status)}</span>'


def _cell(column: str, value: Any) -> str:
    if column == "status":
        return f"<td>{status_html(str(value))}</td>"
    numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return f"<td class='wb-w-num'>{format_value(value)}</td>" if numeric else f"<td>{format_value(value)}</td>"


def html_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """Rows of `frame` as an HTML table, one fixed-height line per row; headers drop the params./metrics. prefix."""
    if frame.empty:
        return "<i>No runs.</i>"
    head = "".join(f"<th title='{html.escape(c)}'>{html.escape(c.split('.', 1)[-1])}</th>" for c in columns)
    body = "".join(f"<tr>{''.join(_cell(c, row.get(c)) for c in columns)}</tr>" for _, row in frame.iterrows())
    return f"{STYLE}<table class='wb-w-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


__all__ = ["ROW_PX", "STATUS_COLOURS", "STYLE", "error_html", "format_value", "head_html", "html_table",
           "note_html", "ok_html", "status_html"]  # fmt: skip
