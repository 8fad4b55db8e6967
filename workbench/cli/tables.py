"""Every table the CLI prints, fitted to where it goes.

A rich table left to itself folds every column of a wide table into one-character strips at 80
columns, and the box drawing makes piped output useless to `cut`, `sort` or a spreadsheet. So:

- **Not a terminal** (a pipe, a file, a CI log): plain tab-separated lines, a header first, no
  title and no styling, every value whole. `--json` (handled by the commands) stays the format
  for programs that want types.
- **A terminal**: columns are chosen to fit its width. Id columns (run ids, snapshot refs,
  versions) are never dropped, wrapped or truncated; other columns are shown in the caller's
  priority order, text columns may be cut short with an ellipsis (numbers and dates never are: a
  cut number reads as a different number), and what does not fit is dropped and named in a note.
  Lines never wrap, so a row is always one line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from workbench.cli.app import console

GAP = 3  # between two columns: padding, the (blank) divider, padding
MIN_TEXT = 10  # a text column is not cut below this many cells (or its own width)
MIN_HEADER = 6  # nor a header below this many


@dataclass(frozen=True)
class Column:
    """One column's header and how narrow it may get."""

    header: str
    natural: int  # cells needed to show the header and every value whole
    minimum: int  # cells below which it is dropped instead of cut
    is_id: bool


@dataclass(frozen=True)
class Layout:
    """Which columns to show (in their original order) and how wide each is."""

    shown: list[int]
    widths: dict[int, int]
    hidden: list[int]


def cell(value: Any) -> Text:
    """A value as display text; strings are never read as rich markup (a param `[draft]` stays)."""
    if isinstance(value, Text):
        return value
    return Text("" if value is None else str(value))


def plain(value: Any) -> str:
    """A value as one TSV field: no styling, no tabs or line breaks inside."""
    text = cell(value).plain
    return text.replace("\t", " ").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


NUMBER_LIKE = re.compile(r"[-+]?[\d.,:/ T]*\d[\d.,:/ TZ%e+-]*")  # 1,234  0.5  1e-05  2026-01-31 12:00


def is_number(text: str) -> bool:
    """Numbers, dates and times: cut short they would read as other values, so they are never cut."""
    return NUMBER_LIKE.fullmatch(text.strip()) is not None


def ranked(columns: Sequence[str], *wanted: str) -> list[int]:
    """Column indexes in the order of `wanted` (a name, or a prefix ending in '.'), then the rest."""
    order: list[int] = []
    for name in wanted:
        order += [i for i, c in enumerate(columns) if (c.startswith(name) if name.endswith(".") else c == name)]
    return list(dict.fromkeys([*order, *range(len(columns))]))


def describe(headers: Sequence[str], rows: Sequence[Sequence[Text]], ids: Collection[int]) -> list[Column]:
    """Natural and minimum width of every column, from its header and values."""
    columns = []
    for index, header in enumerate(headers):
        values = [row[index].plain for row in rows]
        body = max((cell_len(v) for v in values), default=0)
        head = cell_len(header)
        natural = max(body, head)
        if index in ids or all(is_number(v) for v in values if v):
            minimum = natural  # ids, numbers and dates (and their headers) are whole or not shown
        else:
            minimum = max(min(body, MIN_TEXT), min(head, MIN_HEADER))
        columns.append(Column(header, natural, minimum, index in ids))
    return columns


def fit(columns: Sequence[Column], width: int, priority: Sequence[int]) -> Layout:
    """Choose columns by priority until the width is used up, then widen them in the same order.

    Id columns are always shown at full width, even if that alone is wider than the terminal:
    a broken id is worse than a long line.
    """
    order = [i for i in priority if i < len(columns)] + [i for i in range(len(columns)) if i not in priority]
    shown = [i for i in order if columns[i].is_id]
    for index in order:
        if index in shown:
            continue
        candidate = [*shown, index]
        if sum(columns[i].minimum for i in candidate) + GAP * (len(candidate) - 1) <= width:
            shown.append(index)
    widths = {i: columns[i].minimum for i in shown}
    spare = width - sum(widths.values()) - GAP * max(len(shown) - 1, 0)
    for index in (i for i in order if i in shown):
        extra = max(0, min(spare, columns[index].natural - widths[index]))
        widths[index] += extra
        spare -= extra
    return Layout(sorted(shown), widths, sorted(set(range(len(columns))) - set(shown)))


def fits(headers: Sequence[str], rows: Iterable[Sequence[Any]], ids: Collection[int] = (0,),
         width: int | None = None) -> bool:  # fmt: skip
    """Whether every column can be shown whole (callers with another layout in reserve ask this)."""
    texts = [[cell(v) for v in row] for row in rows]
    columns = describe(headers, texts, set(ids))
    return sum(c.natural for c in columns) + GAP * (len(columns) - 1) <= (width or console.width)


def is_terminal(stream: TextIO | None = None) -> bool:
    """The stream's own answer, not rich's guess (FORCE_COLOR must not turn a pipe into a table)."""
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


def write_tsv(headers: Sequence[str], rows: Iterable[Sequence[Any]], stream: TextIO | None = None) -> None:
    """Header line, then one line per row, fields separated by tabs."""
    stream = stream or sys.stdout
    lines = ["\t".join(plain(h) for h in headers)]
    lines += ["\t".join(plain(v) for v in row) for row in rows]
    stream.write("\n".join(lines) + "\n")


def wide_enough(width: int) -> Console:
    """The console, or, when the ids alone are wider than it, one as wide as them (rich would cut them)."""
    if width <= console.width:
        return console
    return Console(file=console.file, width=width, color_system=console.color_system,
                   force_terminal=console.is_terminal, no_color=console.no_color)  # fmt: skip


def render(title: str | None, headers: Sequence[str], rows: list[list[Text]], layout: Layout) -> None:
    """The fitted table on the console: one line per row, a title line and a note on hidden columns."""
    if title:
        console.print(Text(title, style="bold"))
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for index in layout.shown:
        width = layout.widths[index]
        table.add_column(headers[index], width=width, min_width=width, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[i] for i in layout.shown))
    needed = sum(layout.widths.values()) + GAP * (len(layout.shown) - 1)
    wide_enough(needed).print(table)
    if layout.hidden:
        names = ", ".join(headers[i] for i in layout.hidden)
        console.print(Text(f"({len(layout.hidden)} column(s) hidden to fit: {names}; --json shows all)", style="dim"))


def print_table(
    title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
    ids: Collection[int] = (0,), priority: Sequence[int] | None = None,
) -> None:  # fmt: skip
    """Print rows under headers: TSV when stdout is not a terminal, else a table fitted to its width.

    `ids` are the indexes of columns never cut or dropped (default: the first); `priority` orders
    the other columns from most to least wanted (default: left to right). Values are plain text;
    pass a rich `Text` to style one (the style is dropped in TSV).
    """
    rows = [list(row) for row in rows]
    if not is_terminal(console.file):
        write_tsv(headers, rows, console.file)
        return
    texts = [[cell(v) for v in row] for row in rows]
    columns = describe(headers, texts, set(ids))
    layout = fit(columns, console.width, list(priority) if priority is not None else list(range(len(headers))))
    render(title, headers, texts, layout)
