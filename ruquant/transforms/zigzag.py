"""Zigzag channel permutation that spreads large channels evenly over the blocks."""

from __future__ import annotations

import torch

__all__ = ["zigzag_permutation"]


def zigzag_permutation(channel_absmax: torch.Tensor, block_size: int) -> torch.Tensor:
    """Return ``perm`` ([C], int64) so that ``x[..., perm]`` is the zigzag-permuted activation.

    Channels sorted by max |value| (descending) are dealt to the C/B blocks in the order
    1, 2, ..., n, n, ..., 2, 1, 1, 2, ...; each block is then sorted by max |value| (descending).
    """
    width = channel_absmax.shape[0]
    num_blocks = width // block_size
    order = torch.argsort(channel_absmax.detach().cpu(), descending=True, stable=True).tolist()
    blocks: list[list[int]] = [[] for _ in range(num_blocks)]
    for rank, channel in enumerate(order):
        sweep, offset = divmod(rank, num_blocks)
        block = offset if sweep % 2 == 0 else num_blocks - 1 - offset
        blocks[block].append(channel)
    # Dealing in sorted order keeps each block's channels sorted by descending max already.
    perm = [channel for block in blocks for channel in block]
    return torch.tensor(perm, dtype=torch.int64, device=channel_absmax.device)
