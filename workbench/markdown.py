"""Markdown that shows user text exactly as typed: nothing in it becomes markup.

Model cards and the explainability/fairness sections are Markdown built from user text (reasons,
parameter values, class and group labels, column names) and get published: pasted into pull
requests, wikis and CI pages, and rendered to HTML. One escaping rule for all of them.
"""

from __future__ import annotations

import re
from typing import Any

#: An `&` that would start an HTML entity (`&lt;`, `&#60;`): escaped so it shows as typed.
_ENTITY_LIKE = re.compile(r"&(?=#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
#: Markdown punctuation that can start markup mid-line: escapes, code, emphasis, links, table
#: cells, strikethrough; `_` only at a word edge (`n_estimators` stays readable, and CommonMark
#: never treats an intraword `_` as emphasis).
_MARKUP = re.compile(r"[\\`*\[\]|~]|(?<![^\W_])_|_(?![^\W_])")


def md_text(value: Any) -> str:
    """`value` as inert Markdown inline text that shows exactly as typed, also inside a table cell.

    Line breaks become spaces (a newline would end a table row or list item and let the rest
    start a heading, a quote or a table of its own); `<` becomes `&lt;` (no raw HTML, no
    `<javascript:...>` autolinks); markup punctuation gets a backslash.
    """
    text = " ".join(str(value).splitlines())
    text = _ENTITY_LIKE.sub("&amp;", text).replace("<", "&lt;")
    return _MARKUP.sub(lambda match: "\\" + match.group(), text)


def inert_section(text: str) -> str:
    """A section's Markdown (tables, lists, code) without raw HTML, links or images.

    Sections are written by code but may embed user data, so every `<` and `[` becomes an entity:
    HTML, autolinks, links, images and reference definitions all need one of them, and an entity
    never counts as structure in CommonMark (even after a backslash).
    """
    return text.replace("<", "&lt;").replace("[", "&#91;")


def table(header: list[Any], rows: list[list[Any]]) -> str:
    """A Markdown table whose every cell is escaped user text."""
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(md_text(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
