"""Tokens of the run filter language: the tokenizer shared by filters and order-by specs.

Kept apart from the parser (`workbench.runs.filters`) because it is the only code that looks at
characters: everything after it works on `Token`s, so quoting, escapes, number syntax and
backtick-quoted keys are decided in one place for both filters and `order_by`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

KEYWORDS = frozenset({"and", "or", "not", "like", "ilike", "in", "is", "null", "true", "false"})
COMPARISONS = ("<=", ">=", "<>", "!=", "==", "=", "<", ">")
_OPERATOR_RUN = re.compile(r"[<>=!]+")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_BARE_SEGMENT = re.compile(r"[A-Za-z0-9_\-/]+")
_WORD_START = re.compile(r"[A-Za-z_`]")
_KEY_CHAR = re.compile(r"[A-Za-z0-9_\-./`]")


@dataclass(frozen=True)
class Token:
    kind: str  # "field" | "kw" | "op" | "num" | "str" | "(" | ")" | "," | "end"
    text: str  # source text, for messages
    pos: int  # 0-based offset in the filter
    value: Any = None  # keyword name, operator, float, str, or list of (segment, quoted) for fields


class ParseError(Exception):
    """A syntax error at a position; `parse_filter` / `parse_order` turn it into a ValidationError
    (with the position, so the UI can point at it)."""

    def __init__(self, pos: int, near: str, expected: str) -> None:
        super().__init__(expected)
        self.pos, self.near, self.expected = pos, near, expected


def near(text: str, pos: int) -> str:
    """The word at `pos`, shortened, for "near ..." in error messages."""
    rest = text[pos:].strip()
    if not rest:
        return "end of filter"
    snippet = rest.split()[0] if rest.split() else rest
    return snippet[:20] + ("..." if len(snippet) > 20 else "")


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens; raises `ParseError` at the first character that fits nothing."""
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
                raise ParseError(i, op, "an operator such as = != <> < <= > >=")
            tokens.append(Token("op", op, i, "!=" if op == "<>" else "=" if op == "==" else op))
            i += len(op)
        elif ch in "'\"":
            j, chars = i + 1, []
            while True:
                if j >= n:
                    raise ParseError(i, near(text, i), f"a closing {ch} to end the string")
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
            match = NUMBER.match(text, i)
            if match is None or (match.end() < n and _KEY_CHAR.match(text[match.end()])):
                raise ParseError(i, near(text, i), "a number")
            number = float(match.group())
            if math.isinf(number):
                raise ParseError(i, near(text, i), "a number that fits in a double")
            tokens.append(Token("num", match.group(), i, number))
            i = match.end()
        elif _WORD_START.match(ch):
            i = _read_word(text, i, tokens)
        else:
            raise ParseError(i, near(text, i), "a field, value, operator or parenthesis")
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
                raise ParseError(i, near(text, i), "a closing backtick for the quoted key")
            if end == i + 1:
                raise ParseError(i, near(text, i), "a non-empty key between the backticks")
            segments.append((text[i + 1 : end], True))
            i = end + 1
        else:
            match = _BARE_SEGMENT.match(text, i)
            if match is None:
                raise ParseError(i, near(text, i), "a field name")
            segments.append((match.group(), False))
            i = match.end()
        if i < n and text[i] == "." and i + 1 < n and (text[i + 1] == "`" or _BARE_SEGMENT.match(text, i + 1)):
            i += 1
            continue
        if i < n and (text[i] == "." or text[i] == "`"):
            raise ParseError(i, near(text, start), "a key after the dot")
        break
    word = text[start:i]
    if len(segments) == 1 and not segments[0][1] and word.lower() in KEYWORDS:
        tokens.append(Token("kw", word, start, word.lower()))
    else:
        tokens.append(Token("field", word, start, segments))
    return i
