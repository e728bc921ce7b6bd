"""Run a function right after a given module is imported, without importing it ourselves.

The plugin runs inside ``import verl`` in every process veRL starts, including the many Ray actors that never
build a model. Importing veRL's trainer or engine there would cost seconds per process; instead each patch or
registration is attached to the module it needs and runs only in processes that import that module.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable
from types import ModuleType

_pending: dict[str, list[Callable[[ModuleType], None]]] = {}
_lock = threading.Lock()


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of a watched module so that its callbacks run once it has executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                spec.loader = _CallbackLoader(spec.loader)
                return spec
        return None


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        with _lock:
            callbacks = _pending.pop(module.__name__, [])
        for callback in callbacks:
            callback(module)


_finder = _AfterImportFinder()


def call_after_import(module_name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported (at once if it already is)."""
    module = sys.modules.get(module_name)
    if module is not None:
        callback(module)
        return
    with _lock:
        _pending.setdefault(module_name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
