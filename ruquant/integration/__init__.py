"""Loading ``ruquant`` checkpoints with ``transformers.AutoModelForCausalLM.from_pretrained``.

``import ruquant`` calls ``install_hook()``, which registers the ``ruquant`` quantization method
with transformers when transformers loads its quantizer registry (this package imports no
torch until then). ``register()`` does it at once. ``set_kernel`` switches the matmul kernel of
a loaded model.
"""

from __future__ import annotations

import importlib
from typing import Any

from ruquant.integration.hook import install as install_hook

__all__ = ["install_hook", "register", "set_kernel"]

_LAZY = {
    "register": "ruquant.integration.registration",
    "set_kernel": "ruquant.integration.skeleton",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ruquant.integration' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
