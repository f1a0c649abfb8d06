"""Bit packing of integer weight codes into uint8 storage.

A b-bit code occupies the narrowest container that fits it. When b divides 8 (2, 4 and 8
bits), 8 // b codes share one byte. Other widths (3, 5, 6 and 7 bits) take one byte per code.
Codes are packed along the input dimension of each row: code j of a row sits in byte
``j // per_byte`` at bit offset ``(j % per_byte) * b``, so the first code is in the low bits.
A row whose length is not a multiple of ``per_byte`` is padded with zero codes, and unpacking
drops the padding again.
"""

from __future__ import annotations

import torch

__all__ = ["codes_per_byte", "pack_codes", "packed_width", "unpack_codes"]

_MIN_BITS = 1
_MAX_BITS = 8


def codes_per_byte(num_bits: int) -> int:
    """Return how many ``num_bits``-wide codes one byte stores (1 unless ``num_bits`` divides 8)."""
    if not _MIN_BITS <= num_bits <= _MAX_BITS:
        raise ValueError(f"num_bits={num_bits} cannot be packed into uint8: use 1 to 8 bits")
    return 8 // num_bits if 8 % num_bits == 0 else 1


def packed_width(in_features: int, num_bits: int) -> int:
    """Return the number of bytes a row of ``in_features`` codes takes."""
    per_byte = codes_per_byte(num_bits)
    return -(-in_features // per_byte)


def pack_codes(codes: torch.Tensor, num_bits: int) -> torch.Tensor:
    """Pack integer codes ``[out, in]`` in [0, 2**num_bits - 1] into uint8 ``[out, packed_width]``.

    Raises ``ValueError`` when a code is outside the range of ``num_bits`` or not an integer.
    """
    if codes.dim() != 2:
        raise ValueError(f"codes must be a 2-D [out, in] tensor, got shape {tuple(codes.shape)}")
    per_byte = codes_per_byte(num_bits)
    as_int = codes.to(torch.int32)
    if codes.is_floating_point() and not torch.equal(as_int.to(codes.dtype), codes):
        raise ValueError("codes must hold integer values")
    if as_int.numel() and (int(as_int.min()) < 0 or int(as_int.max()) > 2**num_bits - 1):
        raise ValueError(
            f"codes range [{int(as_int.min())}, {int(as_int.max())}] does not fit {num_bits} bits "
            f"([0, {2**num_bits - 1}])"
        )
    rows, in_features = as_int.shape
    width = packed_width(in_features, num_bits)
    padded = torch.zeros(rows, width * per_byte, dtype=torch.int32, device=codes.device)
    padded[:, :in_features] = as_int
    groups = padded.view(rows, width, per_byte)  # [out, bytes, codes per byte]
    shifts = torch.arange(per_byte, dtype=torch.int32, device=codes.device) * num_bits
    packed = (groups << shifts).sum(dim=-1)  # [out, bytes]; the shifted fields do not overlap
    return packed.to(torch.uint8)


def unpack_codes(packed: torch.Tensor, num_bits: int, in_features: int) -> torch.Tensor:
    """Unpack uint8 ``[out, packed_width]`` into uint8 codes ``[out, in_features]``."""
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"packed codes must be a 2-D uint8 tensor, got {packed.dtype} {tuple(packed.shape)}")
    per_byte = codes_per_byte(num_bits)
    width = packed_width(in_features, num_bits)
    if packed.shape[1] != width:
        raise ValueError(
            f"packed codes have {packed.shape[1]} bytes per row, but {in_features} codes of "
            f"{num_bits} bits need {width}"
        )
    if per_byte == 1:
        return packed
    shifts = torch.arange(per_byte, dtype=torch.uint8, device=packed.device) * num_bits
    mask = (1 << num_bits) - 1
    fields = (packed.unsqueeze(-1) >> shifts) & mask  # [out, bytes, codes per byte]
    return fields.reshape(packed.shape[0], -1)[:, :in_features]  # [out, in]
