"""Doctor check for the registry: alias files that model servers watch must match the catalog.

They can only disagree if a process died between writing the file and committing the alias move;
`--fix` rewrites them from the catalog. Model files that are missing or whose bytes no longer
match their hash (the server would refuse to load them) are errors.
"""

from __future__ import annotations

from collections.abc import Iterator

from workbench import blobs
from workbench.catalog import connect
from workbench.doctor import Finding, check, damaged_files, damaged_message
from workbench.models.registry import alias_file_state, write_alias_file
from workbench.workspace import Workspace


@check("models")
def _models(ws: Workspace, fix: bool) -> Iterator[Finding]:
    with connect(ws) as con:
        names = [n for (n,) in con.execute("SELECT name FROM models ORDER BY name").fetchall()]
        aliases = con.execute("SELECT name, alias, version FROM model_aliases").fetchall()
        latest = dict(con.execute("SELECT name, max(version) FROM model_versions GROUP BY name").fetchall())
        labelled = con.execute(
            "SELECT blob, 'model ' || name || '@' || version FROM model_versions ORDER BY name, version"
        ).fetchall()
    files = [blob for blob, _ in labelled]
    expected: dict[str, dict[str, int]] = {name: {} for name in names}
    for name, alias, version in aliases:
        expected[name][alias] = version
    stale = [name for name in names if latest.get(name) is not None and (alias_file_state(ws, name) or {}).get(
        "aliases") != expected[name]]  # fmt: skip
    if stale:
        if fix:
            for name in stale:
                write_alias_file(ws, name)
        yield Finding("models", "warning", f"alias file out of date for: {', '.join(stale)}", fixable=True, fixed=fix)
    missing = [b for b in files if not blobs.exists(ws, b)]
    if missing:
        yield Finding("models", "error", f"{len(missing)} model file(s) missing from the blob store")
    damaged = damaged_files(ws, labelled)
    if damaged:
        yield Finding("models", "error", damaged_message(damaged, "model"))
    yield Finding("models", "ok", f"{len(names)} model(s), {len(files)} version(s)")
