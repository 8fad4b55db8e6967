"""The run filter language: its parser, for filters and order-by specs.

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

The tokenizer is in `workbench.runs.filter_tokens` and the syntax tree (with the fields a filter
may name) in `workbench.runs.filter_tree`; their public names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workbench.errors import ValidationError
from workbench.runs.filter_tokens import COMPARISONS, KEYWORDS, ParseError, Token, near, tokenize
from workbench.runs.filter_tree import (
    COLUMNS,
    BoolOp,
    Compare,
    Field,
    Node,
    Not,
    OrderKey,
    field_from_segments,
    to_float,
    to_time,
    value_kind,
)

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


class _Parser:
    """Recursive descent over the token list; each method consumes one grammar rule."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text, self.tokens, self.i, self.depth, self.predicates = text, tokens, 0, 0, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, token: Token | None = None) -> ParseError:
        token = token or self.tok
        return ParseError(token.pos, near(self.text, token.pos) if token.kind != "end" else "end of filter", expected)

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
        kind = value_kind(node.field)
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


def _invalid(text: str, error: ParseError, what: str = "filter", hint: str = FILTER_HINT) -> ValidationError:
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
    except ParseError as error:
        raise _invalid(text, error) from None


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
                raise ParseError(tokens[0].pos, near(text, tokens[0].pos), "a field such as metrics.rmse or created_at")
            found = field_from_segments(tokens[0].value)
            if isinstance(found, str):
                raise ParseError(0, near(text, 0), found)
            descending = False
            index = 1
            direction = tokens[1]
            if direction.kind == "field" and direction.text.lower() in ("asc", "desc"):
                descending = direction.text.lower() == "desc"
                index = 2
            if tokens[index].kind != "end":
                raise ParseError(tokens[index].pos, near(text, tokens[index].pos), "'asc', 'desc' or the end")
        except ParseError as error:
            raise _invalid(text, error, "order_by", ORDER_HINT) from None
        keys.append(OrderKey(found, descending))
    return keys


__all__ = [
    "COLUMNS",
    "COMPARISONS",
    "FILTER_HINT",
    "KEYWORDS",
    "MAX_DEPTH",
    "MAX_FILTER_LENGTH",
    "MAX_PREDICATES",
    "ORDER_HINT",
    "BoolOp",
    "Compare",
    "Field",
    "Node",
    "Not",
    "OrderKey",
    "Token",
    "field_from_segments",
    "parse_filter",
    "parse_order",
    "to_float",
    "to_time",
    "tokenize",
]
