"""Reference quantization errors for the Lloyd-Max argument: uniform and Gaussian tokens.

A b-bit min-max quantizer reconstructs each interval at its midpoint, which is the MSE-optimal
point only when values spread evenly inside the interval. The per-token error MSE / signal power
of uniformly spread tokens is therefore the floor a transform can push real activations towards;
Gaussian tokens of the same width are the typical starting point.
"""

from __future__ import annotations

import torch

from ruquant.quant.primitives import fake_quantize

__all__ = ["reference_error"]


def reference_error(width: int, num_bits: int, clip_ratio: float, *, kind: str, tokens: int = 2048, seed: int = 0) -> float:
    """Return the mean per-token MSE / signal power of ``kind`` ("uniform" or "gaussian") tokens of ``width``."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        x = torch.rand(tokens, width, generator=generator, dtype=torch.float64) * 2 - 1
    elif kind == "gaussian":
        x = torch.randn(tokens, width, generator=generator, dtype=torch.float64)
    else:
        raise ValueError(f"kind must be 'uniform' or 'gaussian', got {kind!r}")
    error = (fake_quantize(x, num_bits, clip_ratio) - x).pow(2).mean(dim=-1)
    return float((error / x.pow(2).mean(dim=-1)).mean())
