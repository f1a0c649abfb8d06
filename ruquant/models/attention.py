"""Quantized attention through transformers' attention-function registry.

Registered as the ``ruquant_sdpa`` attention implementation, so no modeling file is forked.
Inside attention (after RoPE), Q and K get a per-head Hadamard matrix Hd of size head_dim, which
cancels in Q K^T because (Q Hd)(K Hd)^T = Q K^T, and both are quantized per (token, head) at the
activation bit width with the activation clip ratio. V is quantized per (token, head) with no
clip and no rotation. The softmax output stays in floating point.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ruquant.config import FLOAT_BITS
from ruquant.quant.primitives import fake_quantize
from ruquant.transforms.hadamard import hadamard_matrix, is_power_of_two, random_orthogonal

__all__ = ["ATTENTION_IMPLEMENTATION", "AttentionQuantizer", "register_attention", "use_quantized_attention"]

logger = logging.getLogger(__name__)

ATTENTION_IMPLEMENTATION = "ruquant_sdpa"
# Attribute under which an attention module carries its AttentionQuantizer.
QUANTIZER_ATTRIBUTE = "ruquant_attention"


class AttentionQuantizer(nn.Module):
    """Per-(token, head) fake quantization of Q, K and V, with the per-head rotation of Q and K."""

    head_rotation: torch.Tensor

    def __init__(self, head_dim: int, num_bits: int, clip_ratio: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.clip_ratio = clip_ratio
        self.enabled = num_bits != FLOAT_BITS
        self.ste = False
        if is_power_of_two(head_dim):
            rotation = hadamard_matrix(head_dim)
        else:
            # NOTE: no Hadamard matrix of this size is built here; a random orthogonal matrix also
            # cancels in Q K^T but spreads outliers less evenly.
            logger.warning("head_dim %d is not a power of two: rotating Q and K with a random orthogonal matrix", head_dim)
            rotation = random_orthogonal(head_dim, generator or torch.Generator().manual_seed(0))
        self.register_buffer("head_rotation", rotation.to(torch.float32))

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize ``query`` [B, H, T, D], ``key`` and ``value`` [B, KVH, T, D]; same shapes out."""
        if not self.enabled:
            return query, key, value
        rotation = self.head_rotation.to(device=query.device, dtype=torch.float32)
        q = fake_quantize(query.to(torch.float32) @ rotation, self.num_bits, self.clip_ratio, ste=self.ste)
        k = fake_quantize(key.to(torch.float32) @ rotation, self.num_bits, self.clip_ratio, ste=self.ste)
        v = fake_quantize(value.to(torch.float32), self.num_bits, 1.0, ste=self.ste)
        return q.to(query.dtype), k.to(key.dtype), v.to(value.dtype)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, clip_ratio={self.clip_ratio}, enabled={self.enabled}"


def _quantized_sdpa(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    quantizer = getattr(module, QUANTIZER_ATTRIBUTE, None)
    if quantizer is not None:
        query, key, value = quantizer(query, key, value)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_attention() -> None:
    """Register ``ruquant_sdpa`` with transformers' attention and mask registries (idempotent)."""
    AttentionInterface.register(ATTENTION_IMPLEMENTATION, _quantized_sdpa)
    AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, sdpa_mask)


def use_quantized_attention(model: nn.Module) -> None:
    """Switch ``model`` to the ``ruquant_sdpa`` attention implementation."""
    register_attention()
    set_impl = getattr(model, "set_attn_implementation", None)
    if callable(set_impl):
        set_impl(ATTENTION_IMPLEMENTATION)
    else:
        model.config._attn_implementation = ATTENTION_IMPLEMENTATION
