"""The IBiT variants in timm's registry, without importing timm (and torch) before anyone asks for timm.

``import ibit_deploy`` calls :func:`register_with_timm`. Where timm is already imported, the variants are registered
at once (:mod:`ibit_deploy.models.registry`); otherwise a finder on ``sys.meta_path`` waits for the first
``import timm`` and registers them the moment timm's own module has run. So ``import ibit_deploy`` stays light (the
device side has no torch or timm at all, and a command's Ctrl-C handling is in place before the heavy imports),
and ``timm.create_model("ibit_tiny_patch16_224")`` works after it wherever timm is installed.

Standard library only at import time.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

TIMM = "timm"
REGISTRY = "ibit_deploy.models.registry"  # importing it registers the ibit_* entry points


class TimmImportHook:
    """A ``sys.meta_path`` finder (the protocol, not the ABC: importlib.abc is slow to import) that finds nothing itself: on ``import timm`` it asks the finders after it for timm's spec and arranges for the
    IBiT registry to be imported right after timm's module has executed; then it leaves ``sys.meta_path``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != TIMM:
            return None
        spec = _spec_from_other_finders(self, fullname, path, target)
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_timm = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            del loader.exec_module  # the loader's own method again: this runs once
            run_timm(module)
            uninstall()
            importlib.import_module(REGISTRY)

        # an attribute of this one loader object (made for this spec), so the loader keeps its type and resources
        loader.exec_module = exec_module
        return spec


def _spec_from_other_finders(hook: TimmImportHook, fullname: str, path: Sequence[str] | None,
                             target: ModuleType | None) -> ModuleSpec | None:
    for finder in list(sys.meta_path):
        if finder is hook or not hasattr(finder, "find_spec"):
            continue
        spec = finder.find_spec(fullname, path, target)
        if spec is not None:
            return spec
    return None


def installed() -> bool:
    """Whether a hook is waiting for ``import timm``."""
    return any(isinstance(f, TimmImportHook) for f in sys.meta_path)


def uninstall() -> None:
    """Remove the waiting hook(s), if any."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, TimmImportHook)]


def register_with_timm() -> None:
    """Register the IBiT variants with timm now if timm is imported, else on its first import (idempotent)."""
    if TIMM in sys.modules:
        importlib.import_module(REGISTRY)
    elif not installed():
        sys.meta_path.insert(0, TimmImportHook())
