"""Asymmetric min-max uniform quantizers (per token, per output channel).

A b-bit asymmetric quantizer of a vector x with clip ratio c uses

    max_val = c * max(x),  min_val = c * min(x)
    scale = (max_val - min_val) / (2**b - 1),  zero_point = round(-min_val / scale)
    q = clamp(round(x / scale) + zero_point, 0, 2**b - 1),  x_hat = (q - zero_point) * scale

Every function follows the device of its input and computes in float32 (float64 inputs stay
float64), then casts the result back to the input dtype.
"""

from __future__ import annotations

import torch

__all__ = [
    "SCALE_EPS",
    "asymmetric_qparams",
    "dequantize",
    "fake_quantize",
    "quantize",
    "round_ste",
]

# Lower bound of a scale, so a constant row (max == min) quantizes to itself instead of NaN.
SCALE_EPS = 1e-8


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest with a straight-through gradient (d round(x)/dx := 1)."""
    return (x.round() - x).detach() + x


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def asymmetric_qparams(
    x: torch.Tensor, num_bits: int, clip_ratio: float = 1.0, dim: int = -1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(scale, zero_point)`` of a min-max quantizer reducing over ``dim``.

    Both outputs keep ``dim`` with size 1 so they broadcast against ``x``; ``zero_point`` holds
    integer values in a floating dtype.
    """
    xc = x.to(_compute_dtype(x))
    max_vals = xc.amax(dim=dim, keepdim=True) * clip_ratio
    min_vals = xc.amin(dim=dim, keepdim=True) * clip_ratio
    qmax = 2**num_bits - 1
    scale = ((max_vals - min_vals) / qmax).clamp(min=SCALE_EPS)
    zero_point = (-min_vals / scale).round()
    return scale, zero_point


def quantize(
    x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int, *, ste: bool = False
) -> torch.Tensor:
    """Map ``x`` to integer codes in [0, 2**num_bits - 1], returned in the compute dtype."""
    xc = x.to(scale.dtype)
    rounded = round_ste(xc / scale) if ste else (xc / scale).round()
    return (rounded + zero_point).clamp(0, 2**num_bits - 1)


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Map integer codes back to real values: ``(codes - zero_point) * scale``."""
    return (codes.to(scale.dtype) - zero_point) * scale


def fake_quantize(
    x: torch.Tensor, num_bits: int, clip_ratio: float = 1.0, dim: int = -1, *, ste: bool = False
) -> torch.Tensor:
    """Quantize and dequantize ``x`` with min-max parameters reduced over ``dim``.

    With ``dim=-1`` on activations shaped ``[..., C]`` this is per-token quantization; on a weight
    shaped ``[out_features, in_features]`` it is per-output-channel quantization. ``ste=True``
    passes gradients straight through the rounding (used by stage-2 training).
    """
    scale, zero_point = asymmetric_qparams(x.detach() if not ste else x, num_bits, clip_ratio, dim)
    codes = quantize(x, scale, zero_point, num_bits, ste=ste)
    return dequantize(codes, scale, zero_point).to(x.dtype)
