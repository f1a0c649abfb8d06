"""The composite transform of one activation site and its weight-side fold.

Activation side:  x' = H_omega (I (x) M2) Pi (I (x) M1) diag(s)^-1 x
Weight side:      W' = W diag(s) (I (x) M1)^T Pi^T (I (x) M2)^T H_omega
so that W' x' = W x. Every part is optional (the `rtn` method uses none of them).

Because every factor after the smoothing is orthogonal, the weight side equals applying the same
chain to each row of W diag(s): row_i(W') = H_omega (I (x) M2) Pi (I (x) M1) row_i(W diag(s)).
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

from ruquant.transforms.blocks import apply_block_matrix
from ruquant.transforms.householder import reflect

__all__ = ["Site", "SiteTransform"]


class Site(str, Enum):
    """Position of a transform in a decoder layer, named after the input it transforms."""

    ATTN_IN = "attn-in"  # consumed by q_proj, k_proj, v_proj
    O_IN = "o-in"  # consumed by o_proj
    MLP_IN = "mlp-in"  # consumed by gate_proj, up_proj
    DOWN_IN = "down-in"  # consumed by down_proj


class SiteTransform(nn.Module):
    """Online activation transform of one site; shared by every linear layer that reads the site.

    ``smooth_online`` is True where the smoothing cannot be folded into a preceding module (o-in
    with grouped-query attention), so ``forward`` divides by ``smooth_scale`` itself.
    ``compute_dtype`` is the precision of the online transform (float32 by default).
    """

    smooth_scale: torch.Tensor | None
    m1: torch.Tensor | None
    perm: torch.Tensor | None
    m2: torch.Tensor | None
    omega: torch.Tensor | None

    def __init__(self, width: int, compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.width = width
        self.compute_dtype = compute_dtype
        self.smooth_online = False
        self.register_buffer("smooth_scale", None)
        self.register_buffer("m1", None)
        self.register_buffer("perm", None)
        self.register_buffer("m2", None)
        self.register_buffer("omega", None)

    @property
    def is_identity(self) -> bool:
        """True when the activation passes through unchanged (no online work)."""
        has_rotation = any(t is not None for t in (self.m1, self.perm, self.m2, self.omega))
        return not has_rotation and not self.smooth_online

    def set_omega(self, omega: torch.Tensor | None, *, trainable: bool = False) -> None:
        """Set the global Householder vector; ``trainable`` makes it an ``nn.Parameter`` (stage 2)."""
        if "omega" in self._parameters:
            del self._parameters["omega"]
        if "omega" in self._buffers:
            del self._buffers["omega"]
        if omega is None:
            self.register_buffer("omega", None)
        elif trainable:
            self.omega = nn.Parameter(omega.detach().clone())
        else:
            self.register_buffer("omega", omega.detach().clone())

    def rotate(self, x: torch.Tensor, *, include_omega: bool = True) -> torch.Tensor:
        """Apply the orthogonal chain H_omega (I (x) M2) Pi (I (x) M1) to each vector of ``x`` ([..., C])."""
        if self.m1 is not None:
            x = apply_block_matrix(x, self.m1)
        if self.perm is not None:
            x = x[..., self.perm.to(x.device)]
        if self.m2 is not None:
            x = apply_block_matrix(x, self.m2)
        if include_omega and self.omega is not None:
            x = reflect(x, self.omega)
        return x

    def _smooth_and_rotate(self, x: torch.Tensor, *, smooth: bool) -> torch.Tensor:
        y = x.to(self.compute_dtype)
        if smooth and self.smooth_scale is not None:
            y = y / self.smooth_scale.to(device=y.device, dtype=y.dtype)
        return self.rotate(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Transform activations ``[..., C]``; returns them in ``compute_dtype``."""
        return self._smooth_and_rotate(x, smooth=self.smooth_online)

    def transform_unfolded(self, x: torch.Tensor) -> torch.Tensor:
        """Transform activations ``[..., C]`` recorded before the smoothing was folded into their producer.

        ``forward`` skips a folded smoothing because its input is already smoothed. This method
        always divides by the smoothing scale, so it matches what the quantizer receives.
        """
        return self._smooth_and_rotate(x, smooth=True)

    def fold_weight(self, weight: torch.Tensor, *, include_omega: bool = True) -> torch.Tensor:
        """Return W' = W diag(s) (chain)^T for ``weight`` ([out, C]) computed in float64."""
        w64 = weight.detach().to(torch.float64)
        if self.smooth_scale is not None:
            w64 = w64 * self.smooth_scale.to(device=w64.device, dtype=torch.float64)
        return self.rotate(w64, include_omega=include_omega)
