"""Check checkpoint files against the model layout before transformers loads them.

transformers only logs missing tensors and initializes them at random, and loads a corrupted
tensor without noticing. These checks run first and raise ``CheckpointError`` naming the file
and the tensor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ruquant.export.errors import CheckpointError
from ruquant.export.files import INDEX_FILE, ShardHeader, read_header, verify_shard
from ruquant.export.format import (
    ATTENTION_QUANTIZER_NAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    LINEAR_TENSORS,
    QUANT_METHOD,
    SITES_MODULE_NAME,
    CheckpointConfig,
)

__all__ = ["parse_checkpoint_config", "validate_checkpoint_files"]

logger = logging.getLogger(__name__)

_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int32: "I32",
    torch.int64: "I64",
}
_FLOAT_CODES = {"F64", "F32", "F16", "BF16"}
# Tensors whose dtype is part of the format; other float tensors may be stored in any float dtype.
_EXACT_DTYPE_MARKERS = (f".{SITES_MODULE_NAME}.", f".{ATTENTION_QUANTIZER_NAME}.", *(f".{name}" for name in LINEAR_TENSORS))


def parse_checkpoint_config(raw: dict[str, Any], source: str) -> CheckpointConfig:
    """Validate a ``quantization_config`` dict, checking the format name and version first.

    ``source`` names where the dict came from (the config.json path) in error messages.
    """
    if raw.get("quant_method") != QUANT_METHOD or raw.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{source}: quantization_config has quant_method {raw.get('quant_method')!r} and format "
            f"{raw.get('format')!r}, expected {QUANT_METHOD!r} and {FORMAT_NAME!r}"
        )
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: quantization_config.format_version {version!r} is not supported; this ruquant reads "
            f"{FORMAT_NAME} version {FORMAT_VERSION}: install the ruquant release that wrote the checkpoint"
        )
    fields = {key: value for key, value in raw.items() if key in CheckpointConfig.model_fields}
    try:
        return CheckpointConfig.model_validate(fields)
    except ValueError as err:
        raise CheckpointError(f"{source}: invalid quantization_config: {err}") from err


def _exact_dtype(name: str) -> bool:
    return any(marker in name or name.endswith(marker) for marker in _EXACT_DTYPE_MARKERS)


def _check_tensor(name: str, expected: torch.Tensor, header: ShardHeader) -> None:
    entry = header.tensors[name]
    shape = tuple(int(size) for size in entry.get("shape", []))
    if shape != tuple(expected.shape):
        raise CheckpointError(
            f"{header.path}: tensor {name} has shape {list(shape)}, expected {list(expected.shape)}"
        )
    stored = entry.get("dtype")
    wanted = _SAFETENSORS_DTYPES.get(expected.dtype)
    if _exact_dtype(name) or not expected.is_floating_point():
        if stored != wanted:
            raise CheckpointError(f"{header.path}: tensor {name} has dtype {stored}, expected {wanted}")
    elif stored not in _FLOAT_CODES:
        raise CheckpointError(f"{header.path}: tensor {name} has dtype {stored}, expected a float dtype")


def validate_checkpoint_files(model: nn.Module, checkpoint_files: list[str], *, check_data: bool = True) -> None:
    """Check every shard's format, size and checksums, and that it contains exactly the model's tensors.

    ``model`` must already have the quantized layout (its state dict names the expected tensors,
    with their shapes and dtypes). Tied weights (``lm_head.weight`` of a tied model) may be absent.
    """
    if not checkpoint_files:
        raise CheckpointError("the checkpoint has no safetensors weight files")
    headers = [read_header(Path(path)) for path in checkpoint_files]
    owner: dict[str, ShardHeader] = {}
    for header in headers:
        verify_shard(header, check_data=check_data)
        for name in header.tensors:
            if name in owner:
                raise CheckpointError(f"tensor {name} is stored twice: in {owner[name].path} and {header.path}")
            owner[name] = header
    folder = Path(checkpoint_files[0]).parent
    listing = INDEX_FILE if len(headers) > 1 else Path(checkpoint_files[0]).name
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    expected = model.state_dict()
    for name, tensor in expected.items():
        header = owner.get(name)
        if header is None:
            if name in tied:
                continue
            raise CheckpointError(f"{folder / listing}: tensor {name} is missing from the checkpoint")
        _check_tensor(name, tensor, header)
    unexpected = sorted(set(owner) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{owner[unexpected[0]].path}: tensor {unexpected[0]} is not part of this model's quantized layout"
            + (f" ({len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
        )
    logger.debug("checked %d tensors in %d file(s) under %s", len(owner), len(headers), folder)
