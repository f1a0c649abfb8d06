"""Register the transformers integration as soon as transformers can take it, without importing torch.

``import ruquant`` must stay light (the API process imports ``ruquant.config`` and never torch),
yet ``AutoModelForCausalLM.from_pretrained`` must know the ``ruquant`` quantization method
afterwards. So ``install()`` registers at once when ``transformers.quantizers.auto`` is loaded
already, and otherwise adds a meta path finder that registers right after that module first
finishes executing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["TARGET_MODULE", "install"]

logger = logging.getLogger(__name__)

# The module that contains transformers' quantizer registries.
TARGET_MODULE = "transformers.quantizers.auto"


def _register() -> None:
    importlib.import_module("ruquant.integration.registration").register()


class _RegisteringLoader(importlib.abc.Loader):
    """Wraps the target module's loader and registers once the module has executed."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _register()


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds ``TARGET_MODULE`` through the other finders and wraps its loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TARGET_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Register now if transformers' quantizer registry is loaded, else on its first import (idempotent)."""
    if TARGET_MODULE in sys.modules:
        _register()
        return
    if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
        logger.debug("the ruquant quantization method registers when %s is imported", TARGET_MODULE)
