"""The linear layer of a loaded checkpoint: packed integer weights, the site transform, activation codes.

``PackedQuantLinear`` computes what a finalized ``ruquant.quant.modules.QuantLinear`` computes,
linear(Q_a(T(x)), W_hat, b), from the stored codes instead of a float weight. The site transform
T and the activation quantizer Q_a are shared by the linear layers that read one site and live
in the decoder layer's ``ruquant_sites`` module, so they are neither stored nor run once per
consumer.
"""

from __future__ import annotations

import weakref
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ruquant.config import FLOAT_BITS
from ruquant.export.packing import packed_width, unpack_codes
from ruquant.integration.kernels import int_mm_supported, integer_linear
from ruquant.quant.modules import ActivationQuantizer
from ruquant.quant.primitives import asymmetric_qparams, dequantize, quantize
from ruquant.transforms.site import SiteTransform

__all__ = ["Kernel", "PackedQuantLinear", "RecordingActivationQuantizer"]

Kernel = Literal["auto", "dequantize", "int"]


class RecordingActivationQuantizer(ActivationQuantizer):
    """Per-token activation quantizer that keeps the codes of its latest output for integer matmuls.

    ``forward`` returns the same dequantized values as ``ActivationQuantizer`` (the primitives
    run in the same order), so the float path is unchanged.
    """

    def __init__(self, num_bits: int, clip_ratio: float = 1.0) -> None:
        super().__init__(num_bits, clip_ratio)
        self._codes: tuple[weakref.ref[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` ([..., C]) per token and keep its codes, scales and zero points."""
        if not self.enabled:
            return x
        scale, zero_point = asymmetric_qparams(x.detach(), self.num_bits, self.clip_ratio, dim=-1)
        codes = quantize(x, scale, zero_point, self.num_bits)
        out = dequantize(codes, scale, zero_point).to(x.dtype)
        self._codes = (weakref.ref(out), codes, scale, zero_point)
        return out

    def codes_of(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Return (codes, scale, zero_point) when ``output`` is this quantizer's latest output."""
        if self._codes is None or self._codes[0]() is not output:
            return None
        return self._codes[1], self._codes[2], self._codes[3]

    def clear_cache(self) -> None:
        """Drop the cached output and its codes."""
        super().clear_cache()
        self._codes = None


class PackedQuantLinear(nn.Module):
    """A linear layer with packed per-channel integer weights and online transformed, quantized inputs.

    Buffers (the checkpoint tensors): ``weight_packed`` (uint8 ``[out, packed_width]``),
    ``weight_scale`` and ``weight_zero_point`` (float32 ``[out, 1]``); ``bias`` is a parameter.
    With ``w_bits`` 16 the layer stores a float ``weight`` ``[out, in]`` instead.
    ``kernel`` picks the matmul: ``dequantize`` expands the codes to the input's dtype and calls
    ``F.linear`` (bit-identical to the in-memory model); ``int`` multiplies integer codes with
    ``torch._int_mm``; ``auto`` is ``int`` on CUDA when weights and activations have at most
    8 bits, else ``dequantize``.
    """

    weight_packed: torch.Tensor | None
    weight_scale: torch.Tensor | None
    weight_zero_point: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool,
        w_bits: int,
        transform: SiteTransform,
        act_quantizer: ActivationQuantizer,
        dtype: torch.dtype,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.w_bits = w_bits
        self.kernel: Kernel = "auto"
        # Shared with the site's other consumers and owned by the decoder layer's ruquant_sites
        # module, so they are kept out of this module's children (and its state dict).
        self.__dict__["transform"] = transform
        self.__dict__["act_quantizer"] = act_quantizer
        factory = {"device": device}
        if w_bits == FLOAT_BITS:
            self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype, **factory), requires_grad=False)
            self.register_buffer("weight_packed", None)
            self.register_buffer("weight_scale", None)
            self.register_buffer("weight_zero_point", None)
        else:
            width = packed_width(in_features, w_bits)
            self.register_buffer("weight_packed", torch.empty(out_features, width, dtype=torch.uint8, **factory))
            self.register_buffer("weight_scale", torch.empty(out_features, 1, dtype=torch.float32, **factory))
            self.register_buffer("weight_zero_point", torch.empty(out_features, 1, dtype=torch.float32, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype, **factory), requires_grad=False) if bias else None

    transform: SiteTransform
    act_quantizer: ActivationQuantizer

    def weight_codes(self) -> torch.Tensor:
        """Return the unpacked uint8 weight codes ``[out, in]``."""
        if self.weight_packed is None:
            raise RuntimeError("this layer contains float weights, not packed codes: call it only on a loaded checkpoint layer")
        return unpack_codes(self.weight_packed, self.w_bits, self.in_features)

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """Return the weight ``[out, in]`` in ``dtype``: (codes - zero_point) * scale, as the pipeline rounds it."""
        if self.w_bits == FLOAT_BITS:
            return self.weight.to(dtype)
        assert self.weight_scale is not None and self.weight_zero_point is not None  # set in __init__
        return dequantize(self.weight_codes(), self.weight_scale, self.weight_zero_point).to(dtype)

    def _use_int(self, device: torch.device) -> bool:
        quantizer = self.act_quantizer
        integer_ready = (
            self.w_bits <= 8
            and quantizer.enabled
            and quantizer.num_bits <= 8
            and isinstance(quantizer, RecordingActivationQuantizer)
            and int_mm_supported(device, self.in_features, self.out_features)
        )
        if self.kernel == "int":
            return integer_ready
        return self.kernel == "auto" and integer_ready and device.type == "cuda"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer to ``x`` ([..., in]); returns ``[..., out]`` in ``x``'s dtype."""
        out_dtype = x.dtype
        y = self.act_quantizer.transform_and_quantize(x, self.transform)
        if self._use_int(y.device):
            assert isinstance(self.act_quantizer, RecordingActivationQuantizer)  # checked in _use_int
            recorded = self.act_quantizer.codes_of(y)
            if recorded is not None:
                return self._integer_forward(recorded, y.shape, out_dtype)
        weight = self.dequantized_weight(out_dtype)
        bias = None if self.bias is None else self.bias.to(weight.dtype)
        return F.linear(y.to(weight.dtype), weight, bias).to(out_dtype)

    def _integer_forward(
        self, recorded: tuple[torch.Tensor, torch.Tensor, torch.Tensor], shape: torch.Size, out_dtype: torch.dtype
    ) -> torch.Tensor:
        codes, scale, zero_point = recorded
        assert self.weight_scale is not None and self.weight_zero_point is not None  # w_bits <= 8
        out = integer_linear(
            codes.reshape(-1, self.in_features),  # [T, in]
            scale.reshape(-1, 1),  # [T, 1]
            zero_point.reshape(-1, 1),
            self.act_quantizer.num_bits,
            self.weight_codes(),
            self.weight_scale,
            self.weight_zero_point,
            self.w_bits,
        )  # [T, out], float32
        out = out.to(out_dtype)
        if self.bias is not None:
            out = out + self.bias.to(out_dtype)
        return out.reshape(*shape[:-1], self.out_features)  # [..., out]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, w_bits={self.w_bits}, kernel={self.kernel}"
        )
