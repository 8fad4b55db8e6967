"""The run filter language: tokenizer, syntax tree, recursive-descent parser, order-by specs.

Users write filters such as ``metrics.rmse < 0.3 and params.depth >= 5`` in notebooks, the CLI
and the UI, so the language is parsed here by a hand-written tokenizer and recursive-descent
parser rather than passed to SQL: user text never becomes SQL text (`workbench.runs.query`
compiles the tree into SQL whose keys and values are all bound parameters).

Semantics, chosen to match what people expect from MLflow-style filters:

* a comparison on ``params.k``, ``metrics.k`` or ``tags.k`` only holds for runs that have the key
  (so ``params.model != 'rf'`` does not match runs without a ``model`` param), while
  ``not (...)`` is plain logical negation and does match them;
* numbers compare numerically (params by their numeric view, metrics by their summary value),
  strings compare with the text form of the value (``params.depth = '5'`` matches ``5``);
* ``= null`` means ``is null`` and ``!= null`` means ``is not null``; ``is null`` holds when the
  key is absent or its value is null.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

from workbench.errors import ValidationError

# --------------------------------------------------------------------------------------------
# Tokens

#: Longest filter accepted: keeps parsing, SQL size and DuckDB's expression depth bounded.
MAX_FILTER_LENGTH = 10_000
#: Deepest nesting of parentheses / `not` accepted (the parser is recursive).
MAX_DEPTH = 64
#: Most comparisons in one filter (each becomes one subquery).
MAX_PREDICATES = 256

FILTER_HINT = (
    "Filters look like: metrics.rmse < 0.3 and params.depth >= 5; params.model = 'rf' or "
    "(tags.team != 'ml' and status = 'finished'); not params.fast = true; params.name like 'lr%'; "
    "params.depth in (3, 5); metrics.loss is null; metrics.rmse.min < 0.2. Fields: params.<key>, "
    "metrics.<key>[.last|.min|.max], tags.<key>, status, experiment, run_id, duration, created_at, kind, "
    "sweep_id, parent_run_id (quote odd keys with backticks: params.`my key`). Operators: = != < <= > >= "
    "like, not like, ilike, in (...), not in (...), is null, is not null, combined with and / or / not."
)
ORDER_HINT = (
    "Order by a field and an optional direction, e.g. 'metrics.rmse', 'metrics.rmse desc', "
    "['params.depth asc', 'created_at desc']."
)

KEYWORDS = frozenset({"and", "or", "not", "like", "ilike", "in", "is", "null", "true", "false"})
COMPARISONS = ("<=", ">=", "<>", "!=", "==", "=", "<", ">")
_OPERATOR_RUN = re.compile(r"[<>=!]+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BARE_SEGMENT = re.compile(r"[A-Za-z0-9_\-/]+")
_WORD_START = re.compile(r"[A-Za-z_`]")
_KEY_CHAR = re.compile(r"[A-Za-z0-9_\-./`]")


@dataclass(frozen=True)
class Token:
    kind: str  # "field" | "kw" | "op" | "num" | "str" | "(" | ")" | "," | "end"
    text: str  # source text, for messages
    pos: int  # 0-based offset in the filter
    value: Any = None  # keyword name, operator, float, str, or list of (segment, quoted) for fields


class _Error(Exception):
    """Internal: a parse error at a position; turned into a ValidationError by `parse_filter`."""

    def __init__(self, pos: int, near: str, expected: str) -> None:
        super().__init__(expected)
        self.pos, self.near, self.expected = pos, near, expected


def _near(text: str, pos: int) -> str:
    rest = text[pos:].strip()
    if not rest:
        return "end of filter"
    snippet = rest.split()[0] if rest.split() else rest
    return snippet[:20] + ("..." if len(snippet) > 20 else "")


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; raises `_Error` at the first character that fits nothing."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch in "<>=!":
            op = _OPERATOR_RUN.match(text, i).group()
            if op not in COMPARISONS:
                raise _Error(i, op, "an operator such as = != <> < <= > >=")
            tokens.append(Token("op", op, i, "!=" if op == "<>" else "=" if op == "==" else op))
            i += len(op)
        elif ch in "'\"":
            j, chars = i + 1, []
            while True:
                if j >= n:
                    raise _Error(i, _near(text, i), f"a closing {ch} to end the string")
                c = text[j]
                if c == "\\" and j + 1 < n and text[j + 1] in f"\\{ch}":
                    chars.append(text[j + 1])
                    j += 2
                elif c == ch:
                    if j + 1 < n and text[j + 1] == ch:  # doubled quote: SQL-style escape
                        chars.append(ch)
                        j += 2
                    else:
                        j += 1
                        break
                else:
                    chars.append(c)
                    j += 1
            tokens.append(Token("str", text[i:j], i, "".join(chars)))
            i = j
        elif ch.isdigit() or (ch in "+-." and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == ".")):
            match = _NUMBER.match(text, i)
            if match is None or (match.end() < n and _KEY_CHAR.match(text[match.end()])):
                raise _Error(i, _near(text, i), "a number")
            number = float(match.group())
            if math.isinf(number):
                raise _Error(i, _near(text, i), "a number that fits in a double")
            tokens.append(Token("num", match.group(), i, number))
            i = match.end()
        elif _WORD_START.match(ch):
            i = _read_word(text, i, tokens)
        else:
            raise _Error(i, _near(text, i), "a field, value, operator or parenthesis")
    tokens.append(Token("end", "", n))
    return tokens


def _read_word(text: str, start: int, tokens: list[Token]) -> int:
    """A keyword or a dotted field path whose segments are bare or `backtick-quoted`."""
    segments: list[tuple[str, bool]] = []
    i, n = start, len(text)
    while True:
        if i < n and text[i] == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise _Error(i, _near(text, i), "a closing backtick for the quoted key")
            if end == i + 1:
                raise _Error(i, _near(text, i), "a non-empty key between the backticks")
            segments.append((text[i + 1 : end], True))
            i = end + 1
        else:
            match = _BARE_SEGMENT.match(text, i)
            if match is None:
                raise _Error(i, _near(text, i), "a field name")
            segments.append((match.group(), False))
            i = match.end()
        if i < n and text[i] == "." and i + 1 < n and (text[i + 1] == "`" or _BARE_SEGMENT.match(text, i + 1)):
            i += 1
            continue
        if i < n and (text[i] == "." or text[i] == "`"):
            raise _Error(i, _near(text, start), "a key after the dot")
        break
    word = text[start:i]
    if len(segments) == 1 and not segments[0][1] and word.lower() in KEYWORDS:
        tokens.append(Token("kw", word, start, word.lower()))
    else:
        tokens.append(Token("field", word, start, segments))
    return i


# --------------------------------------------------------------------------------------------
# Syntax tree


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


class _Parser:
    """Recursive descent over the token list; each method consumes one grammar rule."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text, self.tokens, self.i, self.depth, self.predicates = text, tokens, 0, 0, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, token: Token | None = None) -> _Error:
        token = token or self.tok
        return _Error(token.pos, _near(self.text, token.pos) if token.kind != "end" else "end of filter", expected)

    def is_kw(self, *names: str) -> bool:
        return self.tok.kind == "kw" and self.tok.value in names

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def or_expr(self) -> Node:
        return self.joined("or", self.and_expr)

    def and_expr(self) -> Node:
        return self.joined("and", self.not_expr)

    def joined(self, keyword: str, operand: Callable[[], Node]) -> Node:
        """`operand (keyword operand)*`: one node, or a BoolOp of all of them."""
        items = [operand()]
        while self.is_kw(keyword):
            self.i += 1
            items.append(operand())
        return items[0] if len(items) == 1 else BoolOp(keyword, tuple(items))

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"at most {MAX_DEPTH} nested parentheses or 'not'")

    def not_expr(self) -> Node:
        if self.is_kw("not"):
            self.i += 1
            self.nest()
            node: Node = Not(self.not_expr())
            self.depth -= 1
            return node
        if self.tok.kind == "(":
            self.i += 1
            self.nest()
            node = self.or_expr()
            if self.tok.kind != ")":
                raise self.fail("')' to close the parenthesis")
            self.i += 1
            self.depth -= 1
            return node
        return self.predicate()

    def predicate(self) -> Compare:
        token = self.tok
        if token.kind != "field":
            raise self.fail("a field such as metrics.rmse, params.depth, tags.team or status")
        found = field_from_segments(token.value)
        if isinstance(found, str):
            raise self.fail(found)
        self.i += 1
        self.predicates += 1
        if self.predicates > MAX_PREDICATES:
            raise self.fail(f"at most {MAX_PREDICATES} comparisons in one filter", token)
        op_token = self.tok
        if op_token.kind == "op":
            self.i += 1
            value_token = self.tok
            value = self.value()
            if value is None:
                if op_token.value not in ("=", "!="):
                    raise self.fail("a value other than null (use 'is null' / 'is not null')", value_token)
                return self.check(Compare(found, "isnull", (), op_token.value == "!="), op_token)
            return self.check(Compare(found, op_token.value, (value,)), value_token)
        negate = False
        if self.is_kw("not"):
            negate = True
            self.i += 1
            if not self.is_kw("like", "ilike", "in"):
                raise self.fail("'like', 'ilike' or 'in' after 'not'")
        if self.is_kw("like", "ilike"):
            op = self.tok.value
            self.i += 1
            value_token = self.tok
            if value_token.kind != "str":
                raise self.fail("a quoted pattern such as 'lr%'")
            self.i += 1
            return self.check(Compare(found, op, (value_token.value,), negate), value_token)
        if self.is_kw("in"):
            self.i += 1
            if self.tok.kind != "(":
                raise self.fail("'(' starting a list of values")
            self.i += 1
            values = []
            while True:
                value_token = self.tok
                value = self.value()
                if value is None:
                    raise self.fail("a value other than null in the list (use 'is null')", value_token)
                values.append(value)
                if self.tok.kind == ",":
                    self.i += 1
                    continue
                if self.tok.kind == ")":
                    self.i += 1
                    break
                raise self.fail("',' or ')' in the list of values")
            if len(values) > MAX_PREDICATES:
                raise self.fail(f"at most {MAX_PREDICATES} values in a list", op_token)
            return self.check(Compare(found, "in", tuple(values), negate), op_token)
        if self.is_kw("is"):
            self.i += 1
            negate = False
            if self.is_kw("not"):
                negate = True
                self.i += 1
            if not self.is_kw("null"):
                raise self.fail("'null' after 'is'" if not negate else "'null' after 'is not'")
            self.i += 1
            return Compare(found, "isnull", (), negate)
        raise self.fail("an operator (= != < <= > >= like, in, is null)")

    def value(self) -> Any:
        """A literal; returns None for null. Strings stay str, numbers become float."""
        token = self.tok
        if token.kind in ("num", "str"):
            self.i += 1
            return token.value
        if token.kind == "kw" and token.value in ("true", "false", "null"):
            self.i += 1
            return None if token.value == "null" else token.value == "true"
        raise self.fail("a value (a number, a 'quoted string', true, false or null)")

    def check(self, node: Compare, token: Token) -> Compare:
        """Type rules that depend on the field: reported at the value, like syntax errors."""
        kind = _value_kind(node.field)
        for value in node.values:
            if isinstance(value, bool):
                if node.op not in ("=", "!=", "in") or kind in ("number", "time"):
                    raise self.fail(f"true/false only with = / != / in on params, tags or text columns "
                                    f"(not {node.field.label} {node.op})", token)  # fmt: skip
            elif kind == "number" and isinstance(value, str):
                if node.op in ("like", "ilike"):
                    raise self.fail(f"a number comparison: {node.field.label} is numeric, 'like' needs text", token)
                if to_float(value) is None:
                    raise self.fail(f"a number: {node.field.label} is numeric", token)
            elif kind == "time":
                if node.op in ("like", "ilike"):
                    raise self.fail(f"a time comparison: {node.field.label} is a timestamp, 'like' needs text", token)
                if not isinstance(value, str) or to_time(value) is None:
                    raise self.fail(f"a quoted ISO timestamp such as '2024-05-01T12:00:00' for {node.field.label}",
                                    token)  # fmt: skip
        return node


def _value_kind(fld: Field) -> str:
    if fld.source == "metrics":
        return "number"
    if fld.source == "column":
        return COLUMNS[fld.name][1]
    return fld.source  # params | tags: both numbers and text


def to_float(value: str) -> float | None:
    """A filter value as a number, or None when it is not one (text compares as text)."""
    text = value.strip()
    if not _NUMBER.fullmatch(text):
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


def _invalid(text: str, error: _Error, what: str = "filter", hint: str = FILTER_HINT) -> ValidationError:
    return ValidationError(
        f"Invalid {what} {text!r} at position {error.pos + 1} near {error.near!r}: expected {error.expected}.",
        hint,
        report={"position": error.pos + 1, "near": error.near, "expected": error.expected},
    )


def _check_text(text: object, what: str, hint: str) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"The {what} must be a string, not {type(text).__name__}.", hint)
    if len(text) > MAX_FILTER_LENGTH:
        raise ValidationError(f"The {what} is {len(text)} characters long (at most {MAX_FILTER_LENGTH}).", hint)
    bad = next((i for i, c in enumerate(text) if c == "\x00" or "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise ValidationError(f"Invalid {what} {text!r} at position {bad + 1}: it contains a NUL or unpaired "
                              "surrogate character.", hint)  # fmt: skip
    return text


def parse_filter(text: str) -> Node | None:
    """The syntax tree of a filter (None for an empty one); malformed input raises ValidationError."""
    text = _check_text(text, "filter", FILTER_HINT)
    try:
        tokens = tokenize(text)
        if tokens[0].kind == "end":
            return None
        return _Parser(text, tokens).parse()
    except _Error as error:
        raise _invalid(text, error) from None


@dataclass(frozen=True)
class OrderKey:
    field: Field
    descending: bool


def parse_order(spec: str | list[str] | tuple[str, ...] | None) -> list[OrderKey]:
    """`"metrics.rmse desc"` or a list of those; default newest first."""
    if spec is None or (isinstance(spec, (list, tuple)) and not spec):
        return [OrderKey(Field("column", "created_at"), True)]
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)):
        raise ValidationError(f"order_by must be a string or a list of strings, not {type(spec).__name__}.",
                              ORDER_HINT)  # fmt: skip
    keys = []
    for item in items:
        text = _check_text(item, "order_by", ORDER_HINT)
        try:
            tokens = tokenize(text)
            if tokens[0].kind != "field":
                raise _Error(tokens[0].pos, _near(text, tokens[0].pos), "a field such as metrics.rmse or created_at")
            found = field_from_segments(tokens[0].value)
            if isinstance(found, str):
                raise _Error(0, _near(text, 0), found)
            descending = False
            index = 1
            direction = tokens[1]
            if direction.kind == "field" and direction.text.lower() in ("asc", "desc"):
                descending = direction.text.lower() == "desc"
                index = 2
            if tokens[index].kind != "end":
                raise _Error(tokens[index].pos, _near(text, tokens[index].pos), "'asc', 'desc' or the end")
        except _Error as error:
            raise _invalid(text, error, "order_by", ORDER_HINT) from None
        keys.append(OrderKey(found, descending))
    return keys
