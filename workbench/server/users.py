"""Users of the team server and their tokens.

A token is `wbt_` plus 256 random bits (`secrets.token_urlsafe(32)`), shown once when the user is
added and never stored: the catalog keeps its sha256 (a fast hash is enough for a random secret
of that size; nothing to brute-force) in the `server_users` table. A request's token is hashed
and compared with every active user's hash with `hmac.compare_digest`. Revoking keeps the user's
row (so the audit log still names them) and stops the token at the next request; adding a revoked
name again issues a new token. Every change is audited, by whoever made it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from workbench import audit
from workbench.catalog import connect, transaction
from workbench.errors import NotFoundError, ValidationError
from workbench.identity import current_user
from workbench.names import validate_name
from workbench.server.roles import check_role
from workbench.workspace import Workspace

TOKEN_PREFIX = "wbt_"
#: Longest text accepted as a token (a real one is 47 characters): longer is refused unhashed.
MAX_TOKEN_CHARS = 256
_COLUMNS = "name, role, created_at, created_by, revoked_at"


@dataclass(frozen=True)
class User:
    """A user of the team server (never their token)."""

    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "created_at": self.created_at.isoformat(),
                "created_by": self.created_by, "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
                "active": self.active}  # fmt: skip


def new_token() -> str:
    """A fresh token: `wbt_` and 256 random bits, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the catalog keeps of a token: its sha256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(name: str, role: str, ws: Workspace) -> tuple[User, str]:
    """Add user `name` with `role` (or give a revoked user a new start); returns the user and their
    token, which exists nowhere else: show it once."""
    validate_name(name, "user name")
    role = check_role(role)
    token = new_token()
    now = datetime.now(timezone.utc)
    actor = current_user()
    with transaction(ws) as con:
        row = con.execute("SELECT revoked_at FROM server_users WHERE name = ?", [name]).fetchone()
        if row is not None and row[0] is None:
            raise ValidationError(f"User {name!r} already exists.",
                                  f"To give them a new token: revoke {name} first, then add them again.")  # fmt: skip
        if row is None:
            con.execute("INSERT INTO server_users VALUES (?, ?, ?, ?, ?, NULL)",
                        [name, role, token_hash(token), now, actor])  # fmt: skip
        else:
            con.execute("UPDATE server_users SET role = ?, token_hash = ?, created_at = ?, created_by = ?, "
                        "revoked_at = NULL WHERE name = ?", [role, token_hash(token), now, actor, name])  # fmt: skip
        audit.record(con, "user.added", f"user:{name}", {"role": role, "again": row is not None})
    _forget_users(ws)
    return User(name, role, now, actor), token


def list_users(ws: Workspace) -> list[User]:
    """Every user, active or revoked, by name."""
    with connect(ws) as con:
        rows = con.execute(f"SELECT {_COLUMNS} FROM server_users ORDER BY name").fetchall()
    return [User(*row) for row in rows]


def revoke_user(name: str, ws: Workspace) -> User:
    """Stop `name`'s token from now on (their row and history stay)."""
    validate_name(name, "user name")
    now = datetime.now(timezone.utc)
    with transaction(ws) as con:
        row = con.execute(f"SELECT {_COLUMNS} FROM server_users WHERE name = ?", [name]).fetchone()
        if row is None:
            raise NotFoundError(f"No user named {name!r}.", "See 'workbench server user list'.")
        user = User(*row)
        if not user.active:
            return user
        con.execute("UPDATE server_users SET revoked_at = ? WHERE name = ?", [now, name])
        audit.record(con, "user.revoked", f"user:{name}", {"role": user.role})
    _forget_users(ws)
    return User(user.name, user.role, user.created_at, user.created_by, now)


#: The active users' (token hash, user) of each catalog, read once and dropped by every change to the
#: users (`_forget_users`). Sound because the users table only changes through this module in the one
#: process holding the catalog (the team server; `server user add` needs it stopped), and it keeps a
#: request's token check off the catalog, where under load it queued behind every write.
#: A read that overlapped a change (its generation moved on meanwhile) is used once, never kept.
_ACTIVE: dict[str, list[tuple[str, User]]] = {}
_ACTIVE_LOCK = threading.Lock()
_generation = 0


def _forget_users(ws: Workspace) -> None:
    global _generation
    with _ACTIVE_LOCK:
        _generation += 1
        _ACTIVE.pop(str(ws.catalog_path), None)


def _active_users(ws: Workspace) -> list[tuple[str, User]]:
    key = str(ws.catalog_path)
    with _ACTIVE_LOCK:
        known, generation = _ACTIVE.get(key), _generation
    if known is not None:
        return known
    with connect(ws) as con:
        rows = con.execute(f"SELECT token_hash, {_COLUMNS} FROM server_users WHERE revoked_at IS NULL").fetchall()
    known = [(stored, User(*user)) for stored, *user in rows]
    with _ACTIVE_LOCK:
        if generation == _generation:
            _ACTIVE[key] = known
    return known


def authenticate(token: str | None, ws: Workspace) -> User | None:
    """The active user whose token this is, else None (unknown, revoked, malformed or missing)."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
        return None
    given = token_hash(token)
    found = None
    for stored, user in _active_users(ws):  # every hash compared in constant time, whichever matches
        if hmac.compare_digest(stored, given):
            found = user
    return found
