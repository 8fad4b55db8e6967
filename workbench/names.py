"""Validation of user-supplied names and `name@version` references.

Names end up in file paths, SQL identifiers and URLs, so they are checked once, here, against a
strict pattern instead of being escaped in each place that uses them.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from workbench.errors import InvalidNameError

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
_NAME_RULE = "Names start with a letter and use only letters, digits, '_', '-' and '.' (at most 128 characters)."


def validate_name(name: object, kind: str = "name") -> str:
    """Return `name` if it is a legal object name, else raise `InvalidNameError`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise InvalidNameError(f"Invalid {kind} {name!r}.", _NAME_RULE)
    return name


def derive_name(text: str, prefix: str = "nb", fallback: str = "default") -> str:
    """A legal name made from free text such as a file name, for defaults a user can accept as they are.

    Characters outside the rule become '-' (runs of them collapse), '..' shrinks to '.', and a name
    that does not start with a letter gets `prefix-` in front, so nothing of the text is lost:
    `02_train` -> `nb-02_train`, `my notebook (v2)` -> `my-notebook-v2`.
    """
    cleaned = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.-]+", "-", text)).strip("-._") or fallback
    if cleaned[0] not in string.ascii_letters:
        cleaned = f"{prefix}-{cleaned}"
    return validate_name(cleaned[:128].rstrip("-._"))


@dataclass(frozen=True)
class Ref:
    """A parsed `name[@version|@alias]`; `version is None` and `alias is None` mean latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: object, kind: str = "snapshot", allow_alias: bool = False) -> Ref:
    """Parse `name`, `name@latest`, `name@3` (and `name@alias` when aliases are allowed)."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidNameError(f"Empty {kind} reference.", "Use NAME or NAME@VERSION, e.g. 'wine@2'.")
    name, sep, spec = text.strip().partition("@")
    validate_name(name, kind)
    if not sep or spec == "latest":
        return Ref(name)
    if spec.isdigit() and int(spec) > 0 and len(spec) < 10:
        return Ref(name, version=int(spec))
    if allow_alias and NAME_PATTERN.match(spec):
        return Ref(name, alias=spec)
    expected = "a positive version number, 'latest'" + (" or an alias" if allow_alias else "")
    raise InvalidNameError(
        f"Invalid version {spec!r} in {kind} reference {text!r}.",
        f"After '@' use {expected}, e.g. '{name}@1'.",
    )
