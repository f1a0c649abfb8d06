"""Install transforms and quantizers into one decoder layer, and fold smoothing into producers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ruquant.config import FLOAT_BITS, QuantConfig
from ruquant.models.attention import QUANTIZER_ATTRIBUTE, AttentionQuantizer
from ruquant.models.mappings import ArchitectureMapping
from ruquant.quant.modules import ActivationQuantizer, QuantLinear
from ruquant.transforms.site import Site, SiteTransform

__all__ = [
    "attach_attention_quantizer",
    "can_fold_smoothing",
    "install_site",
    "quant_linears",
    "set_quantization",
    "share_site_inputs",
    "sharing_site_inputs",
]


def _parent_and_name(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, name = path.rpartition(".")
    return (root.get_submodule(parent_path) if parent_path else root), name


def can_fold_smoothing(layer: nn.Module, mapping: ArchitectureMapping, site: Site) -> bool:
    """Return True when the smoothing of ``site`` can be folded into the module that produces its input.

    The o-in fold scales v_proj's output rows, which only works when every query head has its
    own value head (no grouped-query attention).
    """
    if site is not Site.O_IN:
        return True
    q_out = layer.get_submodule(mapping.q_proj).weight.shape[0]
    v_out = layer.get_submodule(mapping.v_proj).weight.shape[0]
    return q_out == v_out


@torch.no_grad()
def _fold_inverse_scale(module: nn.Module, scale: torch.Tensor) -> None:
    """Divide ``module``'s output channels by ``scale`` (norm weight, or linear rows and bias) in float64."""
    inv = 1.0 / scale.to(torch.float64)
    weight = module.weight
    if weight.dim() == 1:
        weight.data = (weight.data.to(torch.float64) * inv).to(weight.dtype)
    else:
        weight.data = (weight.data.to(torch.float64) * inv.unsqueeze(1)).to(weight.dtype)
    bias = getattr(module, "bias", None)
    if bias is not None:
        bias.data = (bias.data.to(torch.float64) * inv).to(bias.dtype)


@torch.no_grad()
def install_site(
    layer: nn.Module,
    mapping: ArchitectureMapping,
    site: Site,
    transform: SiteTransform,
    config: QuantConfig,
) -> None:
    """Replace the site's consumers with ``QuantLinear`` modules carrying the folded weights.

    Where ``transform`` has a smoothing scale that is not applied online, 1/s is folded into the
    producer (the preceding RMSNorm, v_proj rows or up_proj rows).
    """
    if transform.smooth_scale is not None and not transform.smooth_online:
        producer = layer.get_submodule(mapping.site_producer(site))
        if isinstance(producer, QuantLinear):
            raise RuntimeError(f"{mapping.site_producer(site)} is already quantized; install {site.value} first")
        _fold_inverse_scale(producer, transform.smooth_scale)
    act_quantizer = ActivationQuantizer(config.a_bits, config.resolved_a_clip_ratio)
    for path in mapping.site_consumers(site):
        linear = layer.get_submodule(path)
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected nn.Linear at {path}, found {type(linear).__name__}")
        quant_linear = QuantLinear(
            linear, transform, act_quantizer, w_bits=config.w_bits, w_clip_ratio=config.resolved_w_clip_ratio
        )
        quant_linear.weight.data = transform.fold_weight(linear.weight).to(linear.weight.dtype)
        parent, name = _parent_and_name(layer, path)
        setattr(parent, name, quant_linear)


def attach_attention_quantizer(
    layer: nn.Module, mapping: ArchitectureMapping, config: QuantConfig, head_dim: int, generator: torch.Generator
) -> AttentionQuantizer:
    """Give the layer's attention module its Q/K/V quantizer."""
    attention = layer.get_submodule(mapping.attention)
    quantizer = AttentionQuantizer(head_dim, config.a_bits, config.resolved_a_clip_ratio, generator)
    attention.add_module(QUANTIZER_ATTRIBUTE, quantizer)
    return quantizer


def quant_linears(layer: nn.Module) -> list[QuantLinear]:
    """Return the layer's ``QuantLinear`` modules."""
    return [m for m in layer.modules() if isinstance(m, QuantLinear)]


def set_quantization(layer: nn.Module, enabled: bool, *, ste: bool = False) -> None:
    """Turn every quantizer of the layer on (at its configured bits) or off (rotation only)."""
    for module in layer.modules():
        if isinstance(module, (ActivationQuantizer, AttentionQuantizer)):
            module.enabled = enabled and module.num_bits != FLOAT_BITS
            module.ste = ste
            if isinstance(module, ActivationQuantizer):
                module.clear_cache()
        elif isinstance(module, QuantLinear):
            module.quantize_weight = enabled and module.w_bits != FLOAT_BITS


def _set_sharing(module: nn.Module, enabled: bool) -> None:
    # The quantizers are looked up on each call, not captured once, so a deep copy of the layer
    # (whose hooks are the same function objects) switches its own quantizers.
    for quantizer in module.modules():
        if isinstance(quantizer, ActivationQuantizer):
            quantizer.share_outputs = enabled
            if not enabled:
                quantizer.clear_cache()


@contextmanager
def sharing_site_inputs(module: nn.Module) -> Iterator[None]:
    """Share each site's transformed, quantized input among its linear layers inside the block.

    Use it where code calls a layer's submodules (attention, MLP) directly, which skips the layer
    hooks that ``share_site_inputs`` installs. Cached outputs are dropped on exit.
    """
    _set_sharing(module, True)
    try:
        yield
    finally:
        _set_sharing(module, False)


def share_site_inputs(layer: nn.Module) -> None:
    """Let the linear layers of each site share one transformed, quantized input per forward pass.

    Forward hooks on the decoder layer turn sharing on at the start of each pass and drop every
    cached output at the end, so cached activations never outlive the pass (idempotent).
    """
    if getattr(layer, "_ruquant_sharing", False):
        return

    def start(module: nn.Module, _args: object) -> None:
        _set_sharing(module, True)

    def stop(module: nn.Module, _args: object, _output: object) -> None:
        _set_sharing(module, False)

    layer.register_forward_pre_hook(start)
    layer.register_forward_hook(stop, always_call=True)
    layer._ruquant_sharing = True
