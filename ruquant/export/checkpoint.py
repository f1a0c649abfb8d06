"""Write a model quantized in memory as a low-bit ``ruquant`` checkpoint that transformers loads.

The folder gets the safetensors weights (``ruquant.export.files``), ``config.json`` with the
``quantization_config`` (``ruquant.export.format``), the generation config and the tokenizer.
Loading it needs ``import ruquant`` first (``ruquant.integration``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ruquant.config import QuantConfig
from ruquant.export.files import INDEX_FILE, write_shards
from ruquant.export.format import CheckpointConfig
from ruquant.export.tensors import collect_checkpoint_tensors, resolve_float_dtype

__all__ = ["DEFAULT_MAX_SHARD_BYTES", "CheckpointSummary", "save_quantized_checkpoint", "weight_files"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 4 * 1024**3


@dataclass
class CheckpointSummary:
    """Files, sizes and configuration written by ``save_quantized_checkpoint``."""

    folder: Path
    config: CheckpointConfig
    weight_files: list[Path]
    tensor_count: int
    weight_bytes: int
    parameter_count: int
    dtype_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def float16_bytes(self) -> int:
        """Bytes of the same model's parameters in float16 (2 bytes each, file headers left out)."""
        return 2 * self.parameter_count

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable summary (file names relative to the folder)."""
        return {
            "format": self.config.format,
            "format_version": self.config.format_version,
            "weight_files": [path.name for path in self.weight_files],
            "tensor_count": self.tensor_count,
            "parameter_count": self.parameter_count,
            "sizes": {
                "checkpoint_bytes": self.weight_bytes,
                "float16_bytes": self.float16_bytes,
                "ratio_to_float16": self.weight_bytes / max(self.float16_bytes, 1),
            },
            "bytes_by_dtype": self.dtype_bytes,
            "float_dtype": self.config.float_dtype,
        }


def weight_files(folder: Path) -> list[Path]:
    """Return the safetensors weight files of a folder, sorted."""
    return sorted(folder.glob("model*.safetensors"))


def _clear_old_weights(folder: Path) -> None:
    for path in [*weight_files(folder), folder / INDEX_FILE]:
        if path.is_file():
            logger.info("removing %s from an earlier save", path)
            path.unlink()


def _write_config(model: nn.Module, folder: Path, config: CheckpointConfig, dtype: torch.dtype) -> None:
    data = model.config.to_dict()
    for key in ("_attn_implementation", "_attn_implementation_autoset", "attn_implementation"):
        data.pop(key, None)
    data["dtype"] = str(dtype).removeprefix("torch.")
    data["quantization_config"] = config.model_dump(mode="json")
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def save_quantized_checkpoint(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase | None,
    output_dir: str | Path,
    quant: QuantConfig,
    *,
    float_dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> CheckpointSummary:
    """Write ``model`` (quantized by ``quantize_model``) as a ``ruquant`` checkpoint folder.

    Args:
        model: The quantized causal LM; its unquantized tensors should already be rounded with
            ``round_float_tensors(model, float_dtype)``, or the checkpoint reproduces it only up to
            that rounding.
        tokenizer: Saved next to the weights when given.
        output_dir: Target folder; weight files of an earlier save in it are replaced.
        quant: The configuration the model was quantized with.
        float_dtype: Storage dtype of unquantized tensors; defaults to ``resolve_float_dtype``.
        max_shard_bytes: Largest weight file before the checkpoint is split into shards.

    Returns:
        The files written and their sizes.
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model_dtype = next(model.parameters()).dtype
    float_dtype = float_dtype or resolve_float_dtype(model_dtype)
    collected = collect_checkpoint_tensors(model, quant, float_dtype)
    _clear_old_weights(folder)
    files = write_shards(collected.tensors, folder, max_shard_bytes)
    _write_config(model, folder, collected.config, model_dtype)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        generation_config.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    dtype_bytes: dict[str, int] = {}
    for tensor in collected.tensors.values():
        key = str(tensor.dtype).removeprefix("torch.")
        dtype_bytes[key] = dtype_bytes.get(key, 0) + tensor.numel() * tensor.element_size()
    summary = CheckpointSummary(
        folder=folder,
        config=collected.config,
        weight_files=files,
        tensor_count=len(collected.tensors),
        weight_bytes=sum(path.stat().st_size for path in files),
        parameter_count=collected.parameter_count,
        dtype_bytes=dtype_bytes,
    )
    logger.info(
        "saved %s checkpoint to %s: %d tensors, %.1f MiB of weights",
        collected.config.preset, folder, summary.tensor_count, summary.weight_bytes / 2**20,
    )
    return summary
