"""Start-up cost control for the processes Workbench owns (CLI, background and sweep workers).

`jsonschema` (imported by nbformat, so by papermill) imports the optional `rfc3987_syntax`
package when it is installed, which compiles a grammar for ~2 s on every start; nbformat's
notebook validation never checks the IRI formats it serves. Our own processes skip it. The
user's own processes (notebook kernels, scripts calling `wb.run`) are left alone.
"""

from __future__ import annotations

import sys

SKIPPED_OPTIONAL_MODULES = ("rfc3987_syntax",)


def skip_slow_optional_imports() -> None:
    for name in SKIPPED_OPTIONAL_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  (None makes `import` raise ImportError)
