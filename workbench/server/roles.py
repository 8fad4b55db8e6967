"""The roles of the team server, least to most: viewer < editor < maintainer < admin.

Each role may do everything the ones before it may:

- viewer reads: runs, snapshots, models, the audit log;
- editor also writes: registers snapshots and runs, logs, moves aliases that are not protected;
- maintainer also moves protected aliases (by default `production`), rolls back and edits gates;
- admin also manages users.

Which aliases are protected: `workbench server --protect-alias NAME` (repeatable) for that server,
else the workspace setting `protected_aliases` (a list in `config.json`), else `production`. The
checks themselves happen in one place, the request dependency of `workbench.server.auth`.
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.errors import ValidationError
from workbench.names import validate_name
from workbench.workspace import Workspace

ROLES = ("viewer", "editor", "maintainer", "admin")
VIEWER, EDITOR, MAINTAINER, ADMIN = ROLES
DEFAULT_PROTECTED_ALIASES = ("production",)
PROTECTED_SETTING = "protected_aliases"


def check_role(role: object) -> str:
    """`role` if it is one of `ROLES`, else a ValidationError listing them."""
    if not isinstance(role, str) or role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}.", f"Roles, least to most: {', '.join(ROLES)}.")
    return role


def allows(role: str, needed: str) -> bool:
    """Whether `role` may do what `needed` may (roles are ordered; unknown roles may nothing)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def refusal(what: str, needed: str, role: str) -> str:
    """The message of a 403: what was refused, the role it needs and the user's."""
    return f"{what} needs role {needed}; you are {role}."


def protected_aliases(ws: Workspace, given: Sequence[str] | None = None) -> tuple[str, ...]:
    """The aliases only a maintainer may move: `given` (the server's --protect-alias), else the
    workspace setting, else `production`; each a legal alias name."""
    source = "--protect-alias"
    if not given:
        given, source = ws.setting(PROTECTED_SETTING), f"workspace setting {PROTECTED_SETTING!r}"
        if given is None:
            return DEFAULT_PROTECTED_ALIASES
        if isinstance(given, str) or not isinstance(given, list):
            raise ValidationError(f"The {source} must be a list of alias names, not {given!r}.",
                                  'E.g. "protected_aliases": ["production", "champion"].')  # fmt: skip
    return tuple(dict.fromkeys(validate_name(alias, f"alias in {source}") for alias in given))


def alias_role(alias: str, protected: Sequence[str]) -> str:
    """The role moving `alias` needs."""
    return MAINTAINER if alias in protected else EDITOR
