"""Integer matmul of per-token activation codes with per-channel weight codes (``torch._int_mm``).

With activation codes a (zero point za and scale sa per token) and weight codes w (zero point
zw and scale sw per output channel), both asymmetric and at most 8 bits:

    y[t, n] = sa[t] sw[n] sum_k (a[t, k] - za[t]) (w[n, k] - zw[n])

Shifting both to signed int8 (a' = a - oa, w' = w - ow with o = 2**(bits - 1)) and writing
za' = za - oa, zw' = zw - ow, the sum expands to

    sum_k a' w'  -  zw' sum_k a'  -  za' sum_k w'  +  K za' zw'

The first term is one int8 x int8 -> int32 matmul; the rest are exact int64 corrections, so
the result differs from the float computation only by the final float32 scaling.
"""

from __future__ import annotations

import torch

__all__ = ["int_mm_supported", "integer_linear", "to_signed_codes"]

# cuBLASLt int8 matmul needs more than 16 rows and inner and outer sizes divisible by 8.
# NOTE: the CUDA branch (padding and size checks) has not run under test; the tests run on CPU.
_CUDA_MIN_ROWS = 17
_CUDA_ALIGN = 8


def to_signed_codes(codes: torch.Tensor, num_bits: int) -> tuple[torch.Tensor, int]:
    """Return ``codes - 2**(num_bits - 1)`` as int8 and that offset."""
    if not 1 <= num_bits <= 8:
        raise ValueError(f"integer matmul needs codes of 1 to 8 bits, got {num_bits}")
    offset = 2 ** (num_bits - 1)
    return (codes.to(torch.int16) - offset).to(torch.int8), offset


def int_mm_supported(device: torch.device, in_features: int, out_features: int) -> bool:
    """Return True when ``torch._int_mm`` runs on ``device`` for these sizes (CPU: always)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return in_features % _CUDA_ALIGN == 0 and out_features % _CUDA_ALIGN == 0
    return False


def integer_linear(
    act_codes: torch.Tensor,
    act_scale: torch.Tensor,
    act_zero_point: torch.Tensor,
    act_bits: int,
    weight_codes: torch.Tensor,
    weight_scale: torch.Tensor,
    weight_zero_point: torch.Tensor,
    weight_bits: int,
) -> torch.Tensor:
    """Return the float32 product ``[T, N]`` of dequantized activations and weights, via integers.

    Args:
        act_codes: Activation codes ``[T, K]`` (integer values in any dtype).
        act_scale: Per-token scales ``[T, 1]``.
        act_zero_point: Per-token zero points ``[T, 1]`` (integer values).
        act_bits: Activation bit width (at most 8).
        weight_codes: Weight codes ``[N, K]`` (uint8).
        weight_scale: Per-channel scales ``[N, 1]``.
        weight_zero_point: Per-channel zero points ``[N, 1]`` (integer values).
        weight_bits: Weight bit width (at most 8).
    """
    a_signed, a_offset = to_signed_codes(act_codes, act_bits)  # [T, K]
    w_signed, w_offset = to_signed_codes(weight_codes, weight_bits)  # [N, K]
    rows, inner = a_signed.shape
    padded_rows = rows
    if a_signed.device.type == "cuda" and rows < _CUDA_MIN_ROWS:
        padded_rows = _CUDA_MIN_ROWS
        a_signed = torch.cat([a_signed, a_signed.new_zeros(padded_rows - rows, inner)])
    acc = torch._int_mm(a_signed.contiguous(), w_signed.t())[:rows].to(torch.int64)  # [T, N]

    za = act_zero_point.to(torch.int64) - a_offset  # [T, 1]
    zw = weight_zero_point.to(torch.int64).reshape(1, -1) - w_offset  # [1, N]
    a_sum = a_signed[:rows].to(torch.int64).sum(dim=1, keepdim=True)  # [T, 1]
    w_sum = w_signed.to(torch.int64).sum(dim=1).reshape(1, -1)  # [1, N]
    exact = acc - zw * a_sum - za * w_sum + inner * za * zw  # [T, N]
    scale = act_scale.to(torch.float32) * weight_scale.to(torch.float32).reshape(1, -1)  # [T, N]
    return exact.to(torch.float32) * scale
