"""Fake-quantized modules: a per-token activation quantizer and a transformed linear layer."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ruquant.config import FLOAT_BITS
from ruquant.quant.primitives import asymmetric_qparams, dequantize, fake_quantize, quantize
from ruquant.transforms.householder import reflect
from ruquant.transforms.site import SiteTransform

__all__ = ["ActivationQuantizer", "QuantLinear"]

# Weight dtypes that represent every point of a grid of up to 8 bits exactly.
_EXACT_GRID_DTYPES = (torch.float32, torch.float64)


class ActivationQuantizer(nn.Module):
    """Dynamic per-token asymmetric min-max quantizer over the last dimension.

    ``num_bits=16`` (or ``enabled=False``) passes activations through unchanged.
    """

    def __init__(self, num_bits: int, clip_ratio: float = 1.0) -> None:
        super().__init__()
        self.num_bits = num_bits
        self.clip_ratio = clip_ratio
        self.enabled = num_bits != FLOAT_BITS
        self.ste = False
        self.share_outputs = False
        self._cache: tuple[weakref.ref[torch.Tensor], int, torch.Tensor] | None = None

    def transform_and_quantize(
        self, x: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Return ``self(transform(x))``, reusing the result when the same ``x`` comes again.

        The linear layers of one site (q/k/v, gate/up) share this quantizer and read the same
        input tensor, so the online transform and quantization run once per site, not once per
        consumer. Sharing is on only while ``share_outputs`` is True, which the decoder layer's
        forward hooks (``share_site_inputs``) set for the length of one layer forward pass and
        then clear with the cache, so no output outlives the pass or misses a changed setting.
        """
        if not self.share_outputs:
            return self(transform(x))
        # Inference-mode tensors keep no version counter; nothing modifies a site input in place.
        version = -1 if x.is_inference() else x._version
        cached = self._cache
        if cached is not None and cached[0]() is x and cached[1] == version:
            return cached[2]
        out = self(transform(x))
        self._cache = (weakref.ref(x), version, out)
        return out

    def clear_cache(self) -> None:
        """Drop the cached output (after weights or transforms change)."""
        self._cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` ([..., C]) per token."""
        if not self.enabled:
            return x
        return fake_quantize(x, self.num_bits, self.clip_ratio, dim=-1, ste=self.ste)

    def extra_repr(self) -> str:
        return f"num_bits={self.num_bits}, clip_ratio={self.clip_ratio}, enabled={self.enabled}"


class QuantLinear(nn.Module):
    """A linear layer that reads transformed, per-token quantized activations.

    forward(x) = linear(Q_a(T(x)), Q_w(W'), b), where T is the site's online transform, W' the
    weight with the transform's weight side folded in, Q_a the activation quantizer and Q_w the
    per-output-channel weight quantizer. Until ``finalize`` runs, ``weight`` contains the float W'
    (without the global Householder while ``omega_folded`` is False, as in stage-2 training),
    and the weight is fake-quantized on each forward when ``quantize_weight`` is True.
    After ``finalize``, ``weight_codes`` (uint8, [out, in]), ``weight_scale`` and
    ``weight_zero_point`` ([out, 1], float32) hold the quantized weight exactly, and ``weight``
    holds its dequantized values rounded to the storage dtype (a 16-bit dtype cannot hold every
    8-bit grid value, so there the product can differ from the exact grid by up to one step).
    """

    weight_scale: torch.Tensor | None
    weight_zero_point: torch.Tensor | None
    weight_codes: torch.Tensor | None

    def __init__(
        self,
        linear: nn.Linear,
        transform: SiteTransform,
        act_quantizer: ActivationQuantizer,
        *,
        w_bits: int,
        w_clip_ratio: float,
    ) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.transform = transform
        self.act_quantizer = act_quantizer
        self.w_bits = w_bits
        self.w_clip_ratio = w_clip_ratio
        self.quantize_weight = w_bits != FLOAT_BITS
        self.omega_folded = True
        self.finalized = False
        # Set by stage 2 while several token chunks of one step share the weight it computed once.
        self.step_weight: torch.Tensor | None = None
        self.register_buffer("weight_scale", None)
        self.register_buffer("weight_zero_point", None)
        self.register_buffer("weight_codes", None)

    def effective_weight(self, *, ste: bool = False) -> torch.Tensor:
        """Return the weight the forward pass multiplies with ([out, in])."""
        weight = self.weight
        if not self.omega_folded and self.transform.omega is not None:
            weight = reflect(weight.to(torch.float32), self.transform.omega.to(torch.float32))
        if self.quantize_weight and not self.finalized:
            weight = fake_quantize(weight, self.w_bits, self.w_clip_ratio, dim=-1, ste=ste)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_dtype = x.dtype
        y = self.act_quantizer.transform_and_quantize(x, self.transform)
        weight = self.step_weight if self.step_weight is not None else self.effective_weight(ste=self.act_quantizer.ste)
        bias = self.bias
        y = F.linear(y.to(weight.dtype), weight, None if bias is None else bias.to(weight.dtype))
        return y.to(out_dtype)

    @torch.no_grad()
    def fold_omega(self) -> None:
        """Fold the site's global Householder into ``weight`` in float64 (after stage 2)."""
        if self.omega_folded:
            return
        if self.transform.omega is not None:
            folded = reflect(self.weight.to(torch.float64), self.transform.omega.to(torch.float64))
            self.weight.data = folded.to(self.weight.dtype)
        self.omega_folded = True

    @torch.no_grad()
    def finalize(self) -> None:
        """Quantize ``weight`` in place and keep its per-channel ``scale`` and ``zero_point``."""
        self.fold_omega()
        if not self.quantize_weight or self.finalized:
            self.finalized = True
            return
        scale, zero_point = asymmetric_qparams(self.weight, self.w_bits, self.w_clip_ratio, dim=-1)
        codes = quantize(self.weight, scale, zero_point, self.w_bits)
        self.weight.data = dequantize(codes, scale, zero_point).to(self.weight.dtype)
        # float32 and float64 represent every grid value exactly, so ``codes()`` recovers the codes
        # from the weight and no code buffer (a quarter of the weight's size) is kept. Narrower
        # dtypes round the grid values, so their codes are kept.
        self.weight_codes = None if self.weight.dtype in _EXACT_GRID_DTYPES else codes.to(torch.uint8)
        self.weight_scale = scale.to(torch.float32)
        self.weight_zero_point = zero_point.to(torch.float32)
        self.finalized = True

    @torch.no_grad()
    def codes(self) -> torch.Tensor:
        """Return the integer weight codes ``[out, in]`` (uint8) of a finalized weight."""
        if not self.finalized or not self.quantize_weight or self.weight_scale is None or self.weight_zero_point is None:
            raise ValueError("weight codes are missing: call finalize() on a QuantLinear with quantized weights first")
        if self.weight_codes is not None:
            return self.weight_codes
        scale = self.weight_scale.to(self.weight.dtype)
        zero_point = self.weight_zero_point.to(self.weight.dtype)
        return quantize(self.weight.detach(), scale, zero_point, self.w_bits).to(torch.uint8)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, w_bits={self.w_bits}, w_clip_ratio={self.w_clip_ratio}"
        )
