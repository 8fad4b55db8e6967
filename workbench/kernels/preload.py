"""Which modules a notebook's kernel will import: the fork server preloads them.

The top-level `import x` / `from x.y import z` statements of the notebook's code cells (what
almost every notebook does first), plus `workbench` itself (its logging and autologging), plus
modules configured in the workspace setting `preload`. Relative imports, imports inside functions
and magics are ignored: missing one only costs speed.
"""

from __future__ import annotations

import ast
import sys
from typing import Any

ALWAYS = ("workbench", "workbench.tracking", "workbench.autologging.kernel", "workbench.autologging.record")


def notebook_imports(nb: Any) -> list[str]:
    found: dict[str, None] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found[alias.name] = None
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found[node.module] = None
    return [m for m in found if m.split(".")[0] not in ("__future__",) and m.split(".")[0] != "__main__"]


def preload_list(nb: Any, extra: list[str] | None = None) -> list[str]:
    modules = [*ALWAYS, *notebook_imports(nb), *(extra or [])]
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    return sorted({m for m in modules if m.split(".")[0] not in stdlib})
