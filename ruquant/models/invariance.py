"""Rotation-only check: with every transform applied and no quantization, outputs must not change.

The check runs a few calibration windows through two streams: the float layers as loaded
(reference) and the transformed layers with every quantizer off (rotated). Each site's linear
outputs, each layer's output and the final logits are compared by relative Frobenius error
||rotated - reference|| / ||reference||.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ruquant.calibration.capture import SiteRecorder, run_layer
from ruquant.errors import InvarianceError
from ruquant.models.mappings import ArchitectureMapping
from ruquant.transforms.site import Site, SiteTransform

__all__ = ["InvarianceChecker", "invariance_tolerance"]

# Relative error bounds per storage dtype. Float32 transforms are folded in float64 and applied
# in float32, so errors stay near float32 rounding (about 1e-6 per layer on SmolLM2-135M); 16-bit
# storage rounds the folded weights, which costs about 1e-3 to 1e-2.
_TOLERANCES = {
    torch.float32: {"site": 1e-4, "layer": 1e-4, "logits": 1e-3},
    torch.float64: {"site": 1e-9, "layer": 1e-9, "logits": 1e-8},
    torch.bfloat16: {"site": 3e-2, "layer": 3e-2, "logits": 1e-1},
    torch.float16: {"site": 1e-2, "layer": 1e-2, "logits": 5e-2},
}


def invariance_tolerance(dtype: torch.dtype) -> dict[str, float]:
    """Return the relative error bounds (site, layer, logits) for a storage dtype."""
    return _TOLERANCES.get(dtype, _TOLERANCES[torch.float32])


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    diff = torch.linalg.vector_norm((actual - expected).to(torch.float64))
    base = torch.linalg.vector_norm(expected.to(torch.float64)).clamp(min=1e-30)
    return float(diff / base)


# Tokens per lm_head call in the logits check: [64, vocab] in float64 is 25 MB for a 49k vocabulary.
_LOGITS_CHUNK = 64

class InvarianceChecker:
    """Runs the reference and rotated streams and raises ``InvarianceError`` past the tolerance."""

    def __init__(self, hidden: torch.Tensor, dtype: torch.dtype) -> None:
        self.reference = hidden
        self.rotated = hidden.clone()
        self.tolerance = invariance_tolerance(dtype)
        self._reference_out: torch.Tensor | None = None
        self._linears: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._site_inputs: dict[Site, torch.Tensor] = {}

    def record_reference(
        self,
        layer: nn.Module,
        layer_kwargs: dict[str, Any],
        device: torch.device,
        mapping: ArchitectureMapping,
        recorder: SiteRecorder,
    ) -> None:
        """Run the float layer on the reference stream and keep its linear weights and site inputs."""
        self._reference_out = run_layer(layer, self.reference, layer_kwargs, device)
        self._linears = {}
        for path in mapping.linear_names():
            linear = layer.get_submodule(path)
            bias = None if linear.bias is None else linear.bias.detach().clone()
            self._linears[path] = (linear.weight.detach().clone(), bias)
        self._site_inputs = {site: recorder.sample[mapping.site_consumers(site)[0]] for site in Site}

    def _site_errors(
        self, layer: nn.Module, mapping: ArchitectureMapping, transforms: dict[Site, SiteTransform], device: torch.device
    ) -> dict[str, float]:
        # Output channels of a producer were divided by the smoothing scale of the site it feeds.
        output_scale: dict[str, torch.Tensor] = {}
        for site, transform in transforms.items():
            if transform.smooth_scale is not None and not transform.smooth_online:
                output_scale[mapping.site_producer(site)] = transform.smooth_scale
        errors: dict[str, float] = {}
        for site, transform in transforms.items():
            x = self._site_inputs[site].to(device)
            if transform.smooth_scale is not None and not transform.smooth_online:
                x_in = x / transform.smooth_scale.to(device=device, dtype=x.dtype)
            else:
                x_in = x
            worst = 0.0
            for path in mapping.site_consumers(site):
                weight, bias = self._linears[path]
                expected = F.linear(x.to(torch.float64), weight.to(torch.float64), None if bias is None else bias.to(torch.float64))
                actual = layer.get_submodule(path)(x_in.to(weight.dtype)).to(torch.float64)
                if path in output_scale:
                    scale = output_scale[path].to(device=device, dtype=torch.float64)
                    actual = actual * scale  # the fold divided rows and bias by the scale
                worst = max(worst, _relative_error(actual, expected))
            errors[site.value] = worst
        return errors

    def check_layer(
        self,
        index: int,
        layer: nn.Module,
        layer_kwargs: dict[str, Any],
        device: torch.device,
        mapping: ArchitectureMapping,
        transforms: dict[Site, SiteTransform],
    ) -> dict[str, float]:
        """Compare the rotation-only ``layer`` with the float layer recorded before; advance both streams."""
        if self._reference_out is None:
            raise RuntimeError("record_reference must run before check_layer")
        errors = self._site_errors(layer, mapping, transforms, device)
        worst_site = max(errors, key=lambda site: math.inf if math.isnan(errors[site]) else errors[site])
        if not errors[worst_site] <= self.tolerance["site"]:
            raise InvarianceError(
                f"rotation-only check failed at decoder layer {index}, site {worst_site}: relative output "
                f"error {errors[worst_site]:.3e} exceeds {self.tolerance['site']:.1e} with quantization off"
            )
        rotated_out = run_layer(layer, self.reference, layer_kwargs, device)
        errors["layer"] = _relative_error(rotated_out, self._reference_out)
        if not errors["layer"] <= self.tolerance["layer"]:
            raise InvarianceError(
                f"rotation-only check failed at decoder layer {index} (worst site {worst_site}): relative "
                f"layer output error {errors['layer']:.3e} exceeds {self.tolerance['layer']:.1e}"
            )
        self.rotated = run_layer(layer, self.rotated, layer_kwargs, device)
        self.reference = self._reference_out
        self._reference_out = None
        return errors

    @torch.no_grad()
    def check_logits(self, model: nn.Module, mapping: ArchitectureMapping, device: torch.device) -> dict[str, Any]:
        """Compare the final logits of both streams, ``_LOGITS_CHUNK`` tokens at a time to bound memory."""
        norm = model.get_submodule(mapping.final_norm)
        head = model.get_submodule(mapping.lm_head)
        norm_device = next(norm.parameters()).device
        diff_sq = 0.0
        base_sq = 0.0
        ref = self.reference.reshape(-1, self.reference.shape[-1])  # [W*T, C]
        rot = self.rotated.reshape(-1, self.rotated.shape[-1])
        for start in range(0, ref.shape[0], _LOGITS_CHUNK):
            expected = head(norm(ref[start : start + _LOGITS_CHUNK].to(norm_device))).to(torch.float64)
            actual = head(norm(rot[start : start + _LOGITS_CHUNK].to(norm_device))).to(torch.float64)
            diff_sq += float((actual - expected).pow(2).sum())
            base_sq += float(expected.pow(2).sum())
        error = (diff_sq / max(base_sq, 1e-30)) ** 0.5
        if not error <= self.tolerance["logits"]:
            raise InvarianceError(
                f"rotation-only check failed at the logits: relative error {error:.3e} exceeds "
                f"{self.tolerance['logits']:.1e} with quantization off"
            )
        return {"logits_rel_error": error, "tolerance": dict(self.tolerance), "windows": int(self.reference.shape[0])}
