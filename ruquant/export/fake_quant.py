"""Save a fake-quantized model: float weights already on the quantization grid, plus transforms.

The folder holds ``model.safetensors`` (the full state dict, including each site's transform
buffers once, with shared tensors stored under one name), the model's ``config.json``, the
tokenizer files and ``ruquant_config.json`` (the resolved configuration). It records what was
computed; the low-bit checkpoint that transformers loads directly is written by ``ruquant.export.checkpoint``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_model
from torch import nn
from transformers import PreTrainedTokenizerBase

__all__ = ["save_fake_quantized"]


def save_fake_quantized(
    model: nn.Module, tokenizer: PreTrainedTokenizerBase, output_dir: Path, report: dict[str, Any]
) -> None:
    """Write the fake-quantized ``model``, its config, tokenizer and resolved RUQuant config."""
    output_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(output_dir / "model.safetensors"), metadata={"format": "pt", "ruquant": "fake-quant"})
    config = model.config.to_dict()
    config["_attn_implementation"] = None
    config.pop("_attn_implementation_autoset", None)
    (output_dir / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    tokenizer.save_pretrained(str(output_dir))
    resolved = {
        "quant_config": report["quant_config"],
        "block_size": report["block_size"],
        "calibration": report["calibration"],
        "versions": report["versions"],
    }
    (output_dir / "ruquant_config.json").write_text(json.dumps(resolved, indent=2) + "\n")
