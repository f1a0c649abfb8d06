"""PNG figures for the model card (matplotlib, Agg backend, no display needed).

* ``activation_bins.png``: one site's activations placed on their per-token quantization grid,
  before and after the transform. A b-bit min-max quantizer maps value x of a token to the
  grid position u = x / scale + zero_point. Bin k contains u in [k - 0.5, k + 0.5) and is
  reconstructed at its midpoint k. The top row shows how the tokens' values fill the bins; the
  bottom row shows each bin's centroid minus its midpoint, the bias a uniform grid pays where
  values are not spread evenly inside a bin (zero for the Lloyd-Max reconstruction).
* ``layer_errors.png``: per-layer quantization error (MSE / signal power) of activations and
  weights, before and after the transforms.
* ``perplexity.png``: float and quantized perplexity.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ruquant.quant.primitives import asymmetric_qparams

__all__ = [
    "ACTIVATION_BINS_FILE",
    "LAYER_ERRORS_FILE",
    "PERPLEXITY_FILE",
    "bin_positions",
    "plot_activation_bins",
    "plot_layer_errors",
    "plot_perplexity",
]

logger = logging.getLogger(__name__)

ACTIVATION_BINS_FILE = "activation_bins.png"
LAYER_ERRORS_FILE = "layer_errors.png"
PERPLEXITY_FILE = "perplexity.png"
_BEFORE = "#c0504d"
_AFTER = "#4a7bd0"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bin_positions(x: torch.Tensor, num_bits: int, clip_ratio: float) -> torch.Tensor:
    """Return each value's position u = x / scale + zero_point on its token's grid ([T, C] -> [T*C]).

    Values beyond the clipped range fall outside [-0.5, 2**num_bits - 0.5] and are clamped into
    the end bins by the quantizer.
    """
    x = x.to(torch.float64)
    scale, zero_point = asymmetric_qparams(x, num_bits, clip_ratio, dim=-1)  # [T, 1] each
    return (x / scale + zero_point).reshape(-1)


def _centroid_offsets(positions: torch.Tensor, num_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (bin index, centroid - midpoint) for every non-empty bin, after clamping to the grid."""
    levels = 2**num_bits
    codes = positions.round().clamp(0, levels - 1)
    inside = positions.clamp(-0.5, levels - 0.5)
    offsets = torch.zeros(levels, dtype=torch.float64)
    counts = torch.zeros(levels, dtype=torch.float64)
    offsets.index_add_(0, codes.long(), inside - codes)
    counts.index_add_(0, codes.long(), torch.ones_like(codes))
    filled = counts > 0
    return torch.arange(levels)[filled], offsets[filled] / counts[filled]


def plot_activation_bins(
    raw: torch.Tensor,
    transformed: torch.Tensor,
    num_bits: int,
    clip_ratio: float,
    path: Path,
    *,
    title: str,
) -> Path:
    """Draw ``raw`` and ``transformed`` activations ([T, C]) inside their quantization bins."""
    plt = _pyplot()
    levels = 2**num_bits
    figure, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex="col", sharey="row")
    for column, (label, values, color) in enumerate(
        (("before the transform", raw, _BEFORE), ("after the transform", transformed, _AFTER))
    ):
        positions = bin_positions(values, num_bits, clip_ratio)
        bins = torch.linspace(-0.5, levels - 0.5, levels * 8 + 1).tolist()
        top = axes[0][column]
        top.hist(positions.clamp(-0.5, levels - 0.5).numpy(), bins=bins, color=color, alpha=0.85)
        for edge in range(levels + 1):
            top.axvline(edge - 0.5, color="#999999", linewidth=0.5)
        top.set_yscale("log")
        top.set_title(f"{label} ({values.shape[0]} tokens x {values.shape[1]} channels)")
        top.set_ylabel("values")
        indices, offsets = _centroid_offsets(positions, num_bits)
        bottom = axes[1][column]
        bottom.bar(indices.numpy(), offsets.numpy(), color=color, width=0.8)
        bottom.axhline(0.0, color="black", linewidth=0.6)
        bottom.set_ylim(-0.5, 0.5)
        bottom.set_xlabel(f"position on the {num_bits}-bit grid (code)")
        bottom.set_ylabel("centroid - midpoint (codes)")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_layer_errors(layers: list[dict[str, Any]], path: Path) -> Path | None:
    """Plot per-layer activation and weight quantization errors, averaged over sites (log scale).

    Returns None when the layers carry no error metrics (float activations and weights).
    """
    series: dict[str, list[float]] = {}
    for record in layers:
        sites = record.get("sites") or {}
        weights = record.get("weight_errors") or {}
        for key, source, field in (
            ("activations before", sites, "act_error_before"),
            ("activations after", sites, "act_error_after"),
            ("weights before", weights, "before"),
            ("weights after", weights, "after"),
        ):
            values = [metrics[field] for metrics in source.values() if metrics.get(field) is not None]
            if values:
                series.setdefault(key, []).append(sum(values) / len(values))
    if not series:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(9, 4.5))
    styles = {
        "activations before": (_BEFORE, "-"),
        "activations after": (_AFTER, "-"),
        "weights before": (_BEFORE, "--"),
        "weights after": (_AFTER, "--"),
    }
    for key, values in series.items():
        color, line = styles[key]
        axis.plot(range(len(values)), values, line, color=color, marker="o", markersize=3, label=key)
    axis.set_yscale("log")
    axis.set_xlabel("decoder layer")
    axis.set_ylabel("quantization MSE / signal power (mean over sites)")
    axis.set_title("Per-layer quantization error before and after the transforms")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_perplexity(baseline: float, quantized: float, preset: str, data: str, path: Path) -> Path:
    """Draw a bar chart of float and quantized perplexity."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    bars = axis.bar(["float (baseline)", preset], [baseline, quantized], color=["#888888", _AFTER])
    for bar, value in zip(bars, (baseline, quantized), strict=True):
        axis.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom")
    axis.set_ylabel("perplexity (lower is better)")
    axis.set_title(f"Perplexity on {data}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
