"""Build the transform of one site for each method from its calibration statistics."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ruquant.config import Method, QuantConfig
from ruquant.transforms.blocks import apply_block_matrix, block_columns
from ruquant.transforms.duquant import duquant_block_transform
from ruquant.transforms.greedy import ruquant_block_transform
from ruquant.transforms.hadamard import random_hadamard
from ruquant.transforms.householder import reflection_to_target, uniform_target
from ruquant.transforms.site import SiteTransform
from ruquant.transforms.smoothing import smoothing_scales
from ruquant.transforms.zigzag import zigzag_permutation

__all__ = ["SiteStatistics", "build_site_transform", "global_householder_vector"]


@dataclass
class SiteStatistics:
    """Calibration statistics of one site's input activations.

    ``absmax``: max |x_j| over every calibration token ([C]). ``mean``: the position-wise mean
    over calibration windows ([T, C], float64). ``weight_absmax``: max |W_ij| over the rows of
    every consuming weight ([C]).
    """

    absmax: torch.Tensor
    mean: torch.Tensor
    weight_absmax: torch.Tensor


def global_householder_vector(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
    """Return omega = x* - t for the token x* ([C]) holding the largest |entry| of ``x`` ([T, C]).

    The reflection H_omega maps x* onto a random non-negative target t of the same norm.
    """
    row = int(x.abs().argmax()) // x.shape[1]
    token = x[row]
    return reflection_to_target(token, uniform_target(token, generator))


def _block_search(x: torch.Tensor, config: QuantConfig, block_size: int, generator: torch.Generator) -> torch.Tensor:
    z = block_columns(x, block_size)  # [B, T*C/B]
    if config.method is Method.DUQUANT:
        return duquant_block_transform(z, max_steps=config.duquant_max_steps, generator=generator)
    return ruquant_block_transform(
        z,
        steps=config.greedy_steps,
        givens_rounds=config.givens_rounds,
        generator=generator,
        convention=config.givens_convention,
    )


def build_site_transform(
    stats: SiteStatistics,
    config: QuantConfig,
    *,
    block_size: int,
    generator: torch.Generator,
    smooth_online: bool,
    compute_dtype: torch.dtype = torch.float32,
) -> SiteTransform:
    """Search the transform of one site for ``config.method``.

    ``smooth_online`` marks a site whose smoothing cannot be folded into a preceding module.
    The block searches run on the smoothed position-wise mean in float32; the matrices they
    return are float64 and exactly orthogonal up to rounding.
    """
    width = stats.mean.shape[1]
    transform = SiteTransform(width, compute_dtype=compute_dtype)
    method = config.method
    if method is Method.RTN:
        return transform
    if method is Method.HADAMARD:
        transform.m1 = random_hadamard(block_size, generator)
        return transform

    scale = smoothing_scales(stats.absmax, stats.weight_absmax, config.smooth_alpha)
    transform.smooth_scale = scale
    transform.smooth_online = smooth_online
    if method is Method.SMOOTHQUANT:
        return transform

    x = (stats.mean / scale).to(torch.float32)  # [T, C], smoothed
    transform.m1 = _block_search(x, config, block_size, generator)
    x = apply_block_matrix(x, transform.m1)
    transform.perm = zigzag_permutation(x.abs().amax(dim=0), block_size)
    x = x[:, transform.perm]
    transform.m2 = _block_search(x, config, block_size, generator)
    if method is Method.RUQUANT:
        x = apply_block_matrix(x, transform.m2)
        transform.set_omega(global_householder_vector(x, generator))
    return transform
