"""RUQuant: rotation-based W4A4 / W6A6 post-training quantization for decoder-only LLMs.

Heavy modules (torch, transformers) load on first use of the names below, so
``import ruquant.config`` stays light enough for the API process. Importing the package also
registers the ``ruquant`` quantization method with transformers, deferred until transformers
loads its quantizer registry, so ``AutoModelForCausalLM.from_pretrained`` loads ruquant
checkpoints after ``import ruquant``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ruquant.integration.hook import install as _install_transformers_hook

__version__ = "0.1.0"

_LAZY = {
    "QuantConfig": "ruquant.config",
    "CalibrationConfig": "ruquant.config",
    "EvaluationConfig": "ruquant.config",
    "RunConfig": "ruquant.config",
    "Method": "ruquant.config",
    "quantize_model": "ruquant.pipeline",
    "QuantizationResult": "ruquant.pipeline",
    "evaluate_perplexity": "ruquant.evaluate",
    "load_calibration_windows": "ruquant.calibration.data",
    "save_quantized_checkpoint": "ruquant.export.checkpoint",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ruquant' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


_install_transformers_hook()
