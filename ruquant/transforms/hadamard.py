"""Normalised Hadamard matrices and seeded random orthogonal matrices."""

from __future__ import annotations

import torch

__all__ = ["hadamard_matrix", "is_power_of_two", "random_hadamard", "random_orthogonal"]


def is_power_of_two(n: int) -> bool:
    """Return True when ``n`` is a positive power of two."""
    return n > 0 and n & (n - 1) == 0


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Build the Sylvester Hadamard matrix of size ``n`` (a power of two), scaled to be orthogonal."""
    if not is_power_of_two(n):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power-of-two size, got {n}")
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return (h / n**0.5).to(dtype)


def random_hadamard(n: int, generator: torch.Generator) -> torch.Tensor:
    """Build H * diag(signs) with seeded random signs: an orthogonal float64 matrix."""
    signs = torch.randint(0, 2, (n,), generator=generator, dtype=torch.int64) * 2 - 1
    return hadamard_matrix(n) * signs.to(torch.float64)


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw a Haar-random orthogonal float64 matrix (QR of a Gaussian matrix, signs fixed)."""
    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)
