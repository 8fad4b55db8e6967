"""The syntax tree of the run filter language, and the fields a filter or an order-by may name.

The parser (`workbench.runs.filters`) builds these nodes and the SQL compiler
(`workbench.runs.query`) reads them; keeping them in their own module lets both depend on the
tree without depending on each other. Field rules (which run columns exist, their types, the
`params.` / `metrics.` / `tags.` namespaces, `.min` / `.max` on metrics) and the value
conversions both sides must agree on (`to_float`, `to_time`) live here for the same reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

from workbench.runs.filter_tokens import NUMBER


@dataclass(frozen=True)
class Field:
    """A filterable / sortable field: a run column, or a key of params / metrics / tags."""

    source: str  # "column" | "params" | "metrics" | "tags"
    name: str  # column name, or the key
    agg: str = "last"  # metrics only: last | min | max

    @property
    def label(self) -> str:
        if self.source == "column":
            return self.name
        suffix = f".{self.agg}" if self.source == "metrics" and self.agg != "last" else ""
        return f"{self.source}.{self.name}{suffix}"


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str  # = != < <= > >= like ilike in isnull
    values: tuple[Any, ...] = ()  # float | str | bool
    negate: bool = False  # not like / not in / is not null


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Union[Compare, BoolOp, Not]

#: Run columns a filter may name -> (SQL column, type)
COLUMNS: dict[str, tuple[str, str]] = {
    "status": ("status", "text"),
    "experiment": ("experiment", "text"),
    "run_id": ("run_id", "text"),
    "kind": ("kind", "text"),
    "sweep_id": ("sweep_id", "text"),
    "parent_run_id": ("parent_run_id", "text"),
    "notebook": ("notebook", "text"),
    "duration": ("duration_s", "number"),
    "duration_s": ("duration_s", "number"),
    "created_at": ("created_at", "time"),
    "started_at": ("started_at", "time"),
    "ended_at": ("ended_at", "time"),
}
_NAMESPACES = {"params": "params", "param": "params", "metrics": "metrics", "metric": "metrics",
               "tags": "tags", "tag": "tags"}  # fmt: skip
_AGGS = ("last", "min", "max")


def field_from_segments(segments: list[tuple[str, bool]]) -> Field | str:
    """A Field, or a message saying what is wrong with the path."""
    head, head_quoted = segments[0]
    namespace = head.lower()
    if head_quoted:
        return "a field such as params.<key>, metrics.<key>, tags.<key> or a run column"
    if namespace == "attributes" and len(segments) == 2 and not segments[1][1]:
        namespace, segments = segments[1][0].lower(), segments[1:]
    if len(segments) == 1:
        if namespace in COLUMNS:
            return Field("column", namespace)
        if namespace in _NAMESPACES:
            return f"a key after '{head}.'"
        return f"a known field (unknown field '{head}'; run columns are {', '.join(sorted(COLUMNS))})"
    if namespace not in _NAMESPACES:
        return f"a field starting with params., metrics. or tags. (not '{head}.')"
    source = _NAMESPACES[namespace]
    rest = segments[1:]
    agg = "last"
    if source == "metrics" and len(rest) > 1 and not rest[-1][1] and rest[-1][0].lower() in _AGGS:
        agg = rest[-1][0].lower()
        rest = rest[:-1]
    return Field(source, ".".join(s for s, _ in rest), agg)


def value_kind(fld: Field) -> str:
    """How a field's values compare: "number", "text", "time", or "params"/"tags" (either)."""
    if fld.source == "metrics":
        return "number"
    if fld.source == "column":
        return COLUMNS[fld.name][1]
    return fld.source  # params | tags: both numbers and text


def to_float(value: str) -> float | None:
    """A filter value as a number, or None when it is not one (text compares as text)."""
    text = value.strip()
    if not NUMBER.fullmatch(text):
        return None
    number = float(text)
    return None if math.isinf(number) else number


def to_time(value: str) -> datetime | None:
    """A quoted ISO timestamp as an aware datetime (UTC when no offset is given), or None."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class OrderKey:
    """One key of an order-by spec (`metrics.rmse desc`)."""

    field: Field
    descending: bool
