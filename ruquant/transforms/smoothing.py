"""SmoothQuant-style per-channel scales that move activation outliers into the weights."""

from __future__ import annotations

import torch

__all__ = ["SMOOTH_EPS", "smoothing_scales"]

SMOOTH_EPS = 1e-5


def smoothing_scales(act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha), clamped to >= 1e-5 (float64, [C]).

    The activation is divided by s and the consuming weights' columns are multiplied by s, so
    (W diag(s)) (diag(s)^-1 x) = W x.
    """
    act = act_absmax.to(torch.float64).clamp(min=SMOOTH_EPS)
    wgt = weight_absmax.to(torch.float64).clamp(min=SMOOTH_EPS)
    return (act.pow(alpha) / wgt.pow(1.0 - alpha)).clamp(min=SMOOTH_EPS)
