"""RUQuant: rotation-based W4A4 / W6A6 post-training quantization for decoder-only LLMs.

Heavy modules (torch, transformers) load on first use of the names below, so
``import ruquant.config`` stays light enough for the API process.
"""

from __future__ import annotations

import importlib
from typing import Any

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
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ruquant' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
