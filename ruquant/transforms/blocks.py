"""Helpers for block-diagonal transforms (I (x) M) acting on B-wide slices of each token."""

from __future__ import annotations

import torch

__all__ = ["apply_block_matrix", "block_columns", "resolve_block_size"]


def block_columns(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """Reshape activations ``[T, C]`` so every B-wide slice of every token is one column: ``[B, T*C/B]``."""
    tokens, width = x.shape
    blocks = x.reshape(tokens * (width // block_size), block_size)  # [T*n, B]
    return blocks.t().contiguous()  # [B, T*n]


def apply_block_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Return ``(I (x) M) x`` for every vector of ``x`` (``[..., C]``), i.e. z' = M z on each block."""
    block_size = matrix.shape[0]
    shape = x.shape
    blocks = x.reshape(*shape[:-1], shape[-1] // block_size, block_size)  # [..., n, B]
    out = blocks @ matrix.to(device=x.device, dtype=x.dtype).t()  # [..., n, B]
    return out.reshape(shape)


def resolve_block_size(widths: dict[str, int], block_size: int | str, max_auto: int = 128) -> int:
    """Return the block size to use for sites of the given widths.

    ``"auto"`` picks the largest power of two up to ``max_auto`` dividing every width. An
    explicit size that does not divide a width raises ``BlockSizeError`` listing the widths and
    the sizes that would work.
    """
    from ruquant.errors import BlockSizeError

    values = sorted(set(widths.values()))
    candidates = [2**k for k in range(1, 14) if all(w % 2**k == 0 for w in values)]
    listing = ", ".join(f"{site}={width}" for site, width in widths.items())
    if block_size == "auto":
        fitting = [b for b in candidates if b <= max_auto]
        if not fitting:
            raise BlockSizeError(f"no power-of-two block size >= 2 divides every width ({listing})")
        return fitting[-1]
    size = int(block_size)
    if any(w % size for w in values):
        working = ", ".join(str(b) for b in candidates) or "none"
        raise BlockSizeError(
            f"block size {size} does not divide every transformed width ({listing}); "
            f"block sizes that would work: {working} (or use 'auto')"
        )
    return size
