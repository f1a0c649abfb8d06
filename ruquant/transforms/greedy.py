"""RUQuant stage 1: a greedy composite orthogonal block transform towards uniform targets.

Starting from M = I, each of K steps
1. reflects the column x with the largest |entry| onto a random non-negative target of the same
   norm (a Householder step), then
2. λ times: permutes the B coordinates at random and rotates each coordinate pair (2i, 2i+1) of
   the new max column towards the matching pair of a fresh target (a Givens step).
Each factor is orthogonal, so M is orthogonal. Every factor is applied to the data as it is
built, at O(B) per column, and accumulated into M in float64.
"""

from __future__ import annotations

import torch

from ruquant.config import GivensConvention
from ruquant.transforms.householder import reflection_to_target, uniform_target

__all__ = ["candidate_columns", "givens_angles", "ruquant_block_transform"]


def candidate_columns(z: torch.Tensor) -> torch.Tensor:
    """Return the columns of ``z`` ([B, N]) that can ever hold the largest |entry| under rotations.

    Orthogonal transforms keep each column's norm, a column's entries never exceed its norm, and
    the column of largest norm always has an entry of at least max_norm / sqrt(B). A column with
    norm below max_norm / sqrt(B) can therefore never hold the maximum, so the greedy searches
    track only the others (often a small share of the tokens). The pruning is exact.
    """
    norms = torch.linalg.vector_norm(z, dim=0)
    if not torch.isfinite(norms).all():
        return z.clone()
    keep = norms >= norms.max() / z.shape[0] ** 0.5 * (1 - 1e-6)
    return z[:, keep].contiguous()


def _max_column(z: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Return a copy of the column of ``z`` ([B, N]) that contains the largest |entry|.

    ``scratch`` (same shape as ``z``) receives |z|, which saves an allocation per call.
    """
    magnitude = torch.abs(z, out=scratch) if scratch is not None else z.abs()
    flat_index = int(magnitude.argmax())
    return z[:, flat_index % z.shape[1]].clone()


def givens_angles(
    x: torch.Tensor, target: torch.Tensor, convention: GivensConvention
) -> torch.Tensor:
    """Return one rotation angle per coordinate pair (2i, 2i+1) that turns x's pair towards target's.

    ``exact`` gives theta_i = atan2(t_odd, t_even) - atan2(x_odd, x_even), which lands each pair on
    the target direction. ``reference`` gives -theta_i, the sign layout of the published code.
    """
    x64 = x.to(torch.float64)
    t64 = target.to(torch.float64)
    theta = torch.atan2(t64[1::2], t64[0::2]) - torch.atan2(x64[1::2], x64[0::2])
    return theta if convention is GivensConvention.EXACT else -theta


def _rotate_pairs(rows: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Apply the block-diagonal product of 2x2 rotations R(theta_i) to the rows of ``rows`` ([B, N]) in place."""
    cos = torch.cos(theta).to(rows.dtype).unsqueeze(1)  # [B/2, 1]
    sin = torch.sin(theta).to(rows.dtype).unsqueeze(1)
    pairs = rows.view(rows.shape[0] // 2, 2, -1)  # [B/2, 2, N]: rows 2i and 2i+1
    even, odd = pairs[:, 0], pairs[:, 1]
    even_before = even.clone()
    even.mul_(cos).addcmul_(odd, sin, value=-1.0)
    odd.mul_(cos).addcmul_(even_before, sin)
    return rows


def ruquant_block_transform(
    z: torch.Tensor,
    *,
    steps: int,
    givens_rounds: int,
    generator: torch.Generator,
    convention: GivensConvention = GivensConvention.REFERENCE,
) -> torch.Tensor:
    """Search the stage-1 block transform M (float64, [B, B]) for the columns ``z`` ([B, N]).

    All ``steps`` steps are kept (there is no keep-best rule). ``z`` is not modified.
    """
    block_size = z.shape[0]
    if block_size % 2:
        raise ValueError(f"the Givens step pairs coordinates, so the block size must be even, got {block_size}")
    work = candidate_columns(z)
    scratch = torch.empty_like(work)
    m = torch.eye(block_size, dtype=torch.float64, device=z.device)
    for _ in range(steps):
        x = _max_column(work, scratch)
        w = reflection_to_target(x, uniform_target(x, generator))
        if w is not None:
            scale = 2.0 / (w @ w)
            w_work = w.to(work.dtype)
            work -= torch.outer(w_work, (w_work @ work) * scale.to(work.dtype))
            m -= torch.outer(w, (w @ m) * scale)
        for _ in range(givens_rounds):
            perm = torch.randperm(block_size, generator=generator).to(z.device)
            work = work[perm]
            m = m[perm]
            x = _max_column(work, scratch)
            theta = givens_angles(x, uniform_target(x, generator), convention)
            _rotate_pairs(work, theta)
            _rotate_pairs(m, theta)
    return m
