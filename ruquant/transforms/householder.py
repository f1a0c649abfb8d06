"""Householder reflections towards random non-negative "uniform" targets.

A reflection H = I - 2 w w^T / ||w||^2 with w = x - t maps x exactly onto t when ||x|| = ||t||,
and it is symmetric and orthogonal (H = H^T = H^-1).
"""

from __future__ import annotations

import torch

__all__ = [
    "MIN_REFLECTION_NORM_SQ",
    "householder_matrix",
    "reflect",
    "reflection_to_target",
    "uniform_target",
]

# A reflection vector with a smaller squared norm means x already equals its target: skip it.
MIN_REFLECTION_NORM_SQ = 1e-10


def uniform_target(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw t = ||x|| * u / ||u|| with u ~ U[0, 1)^n: a non-negative target of the same norm as x.

    The draw happens on the generator's device (CPU) in float64 so results do not depend on
    the compute device; the target is returned on ``x``'s device in float64.
    """
    u = torch.rand(x.shape[-1], generator=generator, dtype=torch.float64)
    u = u.to(x.device)
    x64 = x.to(torch.float64)
    return torch.linalg.vector_norm(x64) * u / torch.linalg.vector_norm(u)


def reflection_to_target(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """Return the float64 reflection vector w = x - t, or None when x is already on t."""
    w = x.to(torch.float64) - target.to(torch.float64)
    if float(w @ w) < MIN_REFLECTION_NORM_SQ:
        return None
    return w


def householder_matrix(w: torch.Tensor) -> torch.Tensor:
    """Build H = I - 2 w w^T / ||w||^2 (n x n) in ``w``'s dtype."""
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    return eye - 2.0 * torch.outer(w, w) / (w @ w)


def reflect(x: torch.Tensor, w: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Apply H = I - 2 w w^T / ||w||^2 to every vector of ``x`` along ``dim`` as a rank-1 update.

    Costs O(n) per vector instead of the O(n^2) of a dense matmul. ``w`` is cast to ``x``'s dtype.
    """
    wc = w.to(device=x.device, dtype=x.dtype)
    xm = x.movedim(dim, -1)
    coeff = (xm @ wc) * (2.0 / (wc @ wc))  # [...]: projection of each vector on w
    out = xm - coeff.unsqueeze(-1) * wc
    return out.movedim(-1, dim)
