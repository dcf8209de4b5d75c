"""Patch an optional dependency's modules right after Python imports them (private).

``import snntorch_egru`` registers EGRU with Norse and NeuroBench without importing either (both are
optional and slow to import): a :class:`PostImportHook` on ``sys.meta_path`` runs a patch function on
each watched module as soon as it is imported, while the hook is active.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any, Callable, Dict, Optional


class PostImportHook(importlib.abc.MetaPathFinder):
    """Runs ``patches[name](module)`` right after module ``name`` is imported, while :attr:`active`.

    Args:
        patches: module name -> function patching that module (called with the module object).
    """

    def __init__(self, patches: Dict[str, Callable[[Any], None]]) -> None:
        self.patches = patches
        self.active = False

    def install(self) -> None:
        """Watch the imports (idempotent); modules imported already are the caller's to patch."""
        self.active = True
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        """Stop watching; later imports run unpatched."""
        self.active = False
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in self.patches or not self.active:
            return None
        for finder in sys.meta_path:  # the regular finders, skipping this hook
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            if self.active:
                self.patches[fullname](module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec
