"""DuQuant's greedy outlier rotation (the `duquant` comparison method).

Each step finds the coordinate j holding the largest |entry| of the block columns, swaps it to
coordinate 0, applies a random orthogonal matrix to coordinates 1..B-1, then a fixed reflection E
whose first row and column are the constant 1/sqrt(B), which spreads a lone spike at coordinate 0
evenly over the block. The prefix of steps that gave the smallest max |entry| is kept.
"""

from __future__ import annotations

import torch

from ruquant.transforms.greedy import candidate_columns
from ruquant.transforms.hadamard import random_orthogonal
from ruquant.transforms.householder import householder_matrix

__all__ = ["duquant_block_transform", "spreading_reflection"]


def spreading_reflection(block_size: int) -> torch.Tensor:
    """Build E (float64, [B, B]): a symmetric reflection with E e_0 = (1, ..., 1) / sqrt(B)."""
    e0 = torch.zeros(block_size, dtype=torch.float64)
    e0[0] = 1.0
    w = e0 - torch.full((block_size,), block_size**-0.5, dtype=torch.float64)
    return householder_matrix(w)


def duquant_block_transform(z: torch.Tensor, *, max_steps: int, generator: torch.Generator) -> torch.Tensor:
    """Search DuQuant's block rotation (float64, [B, B]) for the columns ``z`` ([B, N])."""
    block_size = z.shape[0]
    spread = spreading_reflection(block_size).to(z.device)
    work = candidate_columns(z)  # exact: pruned columns never hold the maximum
    m = torch.eye(block_size, dtype=torch.float64, device=z.device)
    best_m = m.clone()
    best_max = float(work.abs().max())
    for _ in range(max_steps):
        row = int(work.abs().argmax()) // work.shape[1]
        step = torch.eye(block_size, dtype=torch.float64, device=z.device)
        step[[0, row]] = step[[row, 0]]  # swap coordinate `row` to position 0
        inner = torch.eye(block_size, dtype=torch.float64, device=z.device)
        inner[1:, 1:] = random_orthogonal(block_size - 1, generator).to(z.device)
        step = spread @ inner @ step
        work = step.to(work.dtype) @ work
        m = step @ m
        current = float(work.abs().max())
        if current < best_max:
            best_max = current
            best_m = m.clone()
    return best_m
