"""Calling back once a package's import completes, without importing it (a post-import hook).

Autologging is on in every tracked run, including the many that never use scikit-learn, so it
must not import scikit-learn itself (a second or more on a cold machine): it patches what is
already imported, and this hook tells it when more arrives. A finder at the front of
`sys.meta_path` answers only for the watched package's modules: it asks the other finders for the
module's spec and wraps its loader, whose `exec_module` calls back when the outermost import of the
package completes (`import sklearn.ensemble` loads dozens of modules: one callback, at the end).
After executing, a module gets its own loader back, so nothing of the hook stays on it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any


class ImportWatcher(MetaPathFinder):
    """Calls `on_import()` after each outermost import of `package` (or one of its modules)."""

    def __init__(self, package: str, on_import: Callable[[], None]) -> None:
        self.package = package
        self.on_import = on_import
        self._local = threading.local()  # per thread: the import depth, and "finding" (no recursion)

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def remove(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname.partition(".")[0] != self.package or getattr(self._local, "finding", False):
            return None
        self._local.finding = True
        try:
            spec = _spec_from_others(self, fullname, path, target)
        finally:
            self._local.finding = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _WatchedLoader(spec.loader, self)
        return spec

    def _enter(self) -> None:
        self._local.depth = getattr(self._local, "depth", 0) + 1

    def _leave(self) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            self.on_import()


def _spec_from_others(watcher: ImportWatcher, fullname: str, path: Any, target: Any) -> ModuleSpec | None:
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if finder is watcher or find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec
    return None


class _WatchedLoader:
    """The module's own loader (every attribute passes through), with a callback around `exec_module`."""

    def __init__(self, loader: Any, watcher: ImportWatcher) -> None:
        self._loader = loader
        self._watcher = watcher

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_loader", "_watcher"):  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._watcher._enter()
        try:
            self._loader.exec_module(module)
        finally:
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self._loader
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self._loader
            self._watcher._leave()
