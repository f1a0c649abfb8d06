"""Turn a freshly built transformers model into the module layout of a ``ruquant`` checkpoint.

Called by the transformers quantizer before the weights load (the model is on the meta device
then). For each decoder layer it adds a ``ruquant_sites`` module with one ``SiteTransform`` per site
and a ``ruquant_act_quantizers`` module with one activation quantizer per site, replaces each quantized ``nn.Linear`` with a
``PackedQuantLinear`` that reads its site's transform, attaches an ``AttentionQuantizer`` to the
attention module, and lets each site's consumers share one transformed input per forward pass
(``share_site_inputs``), exactly as ``quantize_model`` leaves a model in memory.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ruquant.export.format import (
    ATTENTION_QUANTIZER_NAME,
    HEAD_ROTATION_TENSOR,
    SITES_MODULE_NAME,
    CheckpointConfig,
    site_key,
)
from ruquant.integration.linear import Kernel, PackedQuantLinear, RecordingActivationQuantizer
from ruquant.models.attention import AttentionQuantizer
from ruquant.models.layer_surgery import share_site_inputs
from ruquant.models.mappings import get_mapping, site_widths
from ruquant.transforms.hadamard import hadamard_matrix
from ruquant.transforms.site import Site, SiteTransform

__all__ = [
    "ACT_QUANTIZERS_MODULE_NAME",
    "align_cpu_tensors",
    "build_quantized_layers",
    "restore_head_rotations",
    "set_kernel",
]

logger = logging.getLogger(__name__)

# Submodule of a decoder layer that contains each site's activation quantizer (no tensors).
ACT_QUANTIZERS_MODULE_NAME = "ruquant_act_quantizers"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _site_transform(config: CheckpointConfig, site: Site, layer_index: int, width: int, device: torch.device) -> SiteTransform:
    layout = config.sites[site.value]
    transform = SiteTransform(width, compute_dtype=_DTYPES[config.transform_dtype])
    transform.smooth_online = layout.smooth_online
    block = config.block_size or 0
    shapes = {"smooth_scale": (width,), "m1": (block, block), "perm": (width,), "m2": (block, block), "omega": (width,)}
    for part in layout.parts:
        if layer_index in layout.absent.get(part, []):
            continue
        dtype = torch.int32 if part == "perm" else transform.compute_dtype
        transform.register_buffer(part, torch.empty(shapes[part], dtype=dtype, device=device))
    return transform


def _replace_linear(layer: nn.Module, path: str, packed: PackedQuantLinear) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = layer.get_submodule(parent_path) if parent_path else layer
    setattr(parent, name, packed)


def build_quantized_layers(model: nn.Module, config: CheckpointConfig, dtype: torch.dtype) -> None:
    """Give ``model`` the quantized module layout that ``config`` describes, in place.

    ``dtype`` is the dtype the model is loaded in (of biases and float weights).
    Raises ``ValueError`` when the model does not match the checkpoint's layout.
    """
    mapping = get_mapping(model)
    if mapping.layers != config.layers_path or mapping.attention != config.attention_path:
        raise ValueError(
            f"checkpoint layout (layers {config.layers_path!r}, attention {config.attention_path!r}) does not "
            f"match {type(model).__name__} (layers {mapping.layers!r}, attention {mapping.attention!r})"
        )
    layers: nn.ModuleList = model.get_submodule(config.layers_path)
    if len(layers) != config.num_layers:
        raise ValueError(f"checkpoint has {config.num_layers} decoder layers, the model config {len(layers)}")
    widths = site_widths(model.config)
    attention_scheme = config.attention
    for index, layer in enumerate(layers):
        device = next(layer.parameters()).device
        sites = nn.ModuleDict()
        quantizers = nn.ModuleDict()
        for site in Site:
            transform = _site_transform(config, site, index, widths[site], device)
            quantizer = RecordingActivationQuantizer(config.activations.num_bits, config.activations.clip_ratio)
            for path in config.linear_paths[site.value]:
                linear = layer.get_submodule(path)
                if not isinstance(linear, nn.Linear):
                    raise ValueError(f"decoder layer {index}: expected nn.Linear at {path}, found {type(linear).__name__}")
                packed = PackedQuantLinear(
                    linear.in_features,
                    linear.out_features,
                    bias=linear.bias is not None,
                    w_bits=config.weights.num_bits,
                    transform=transform,
                    act_quantizer=quantizer,
                    dtype=dtype,
                    device=device,
                )
                _replace_linear(layer, path, packed)
            sites[site_key(site.value)] = transform
            quantizers[site_key(site.value)] = quantizer
        layer.add_module(SITES_MODULE_NAME, sites)
        layer.add_module(ACT_QUANTIZERS_MODULE_NAME, quantizers)

        # Build on CPU: the head rotation of a non-power-of-two head_dim is drawn with a CPU generator.
        with torch.device("cpu"):
            attention_quantizer = AttentionQuantizer(
                attention_scheme.head_dim, attention_scheme.num_bits, attention_scheme.query_key_clip_ratio
            )
        if attention_scheme.head_rotation == "hadamard":
            # Rebuilt after loading (restore_head_rotations), so it is not a checkpoint tensor.
            rotation = attention_quantizer.head_rotation
            attention_quantizer.register_buffer(HEAD_ROTATION_TENSOR, rotation, persistent=False)
        layer.get_submodule(config.attention_path).add_module(ATTENTION_QUANTIZER_NAME, attention_quantizer)
        share_site_inputs(layer)
    logger.debug("built %d quantized decoder layers (%s)", len(layers), config.preset)


@torch.no_grad()
def restore_head_rotations(model: nn.Module, config: CheckpointConfig) -> None:
    """Set every Hadamard head rotation after loading, which replaces non-checkpoint buffers with placeholders."""
    if config.attention.head_rotation != "hadamard":
        return
    rotation = hadamard_matrix(config.attention.head_dim).to(torch.float32)
    for module in model.modules():
        if isinstance(module, AttentionQuantizer):
            device = module.head_rotation.device
            module.register_buffer(HEAD_ROTATION_TENSOR, rotation.to(device), persistent=False)


# Alignment of the CPU allocator's blocks; safetensors data offsets give no such guarantee.
_ALIGNMENT = 64


@torch.no_grad()
def align_cpu_tensors(model: nn.Module) -> int:
    """Copy every CPU parameter and buffer that is not 64-byte aligned into a fresh allocation.

    Tensors loaded straight from a memory-mapped safetensors file can start at any byte offset,
    and CPU matmul kernels sum in a different order for misaligned operands, which changes the
    last bits of the result (observed on the Householder vectors of the site transforms). An
    activation on a rounding boundary then moves one quantization step. Aligned copies make the
    loaded model compute bit for bit what the model had in memory. Returns the number copied.
    """
    copied: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for tensor in store.values():
                if tensor is None or tensor.device.type != "cpu" or tensor.data_ptr() % _ALIGNMENT == 0:
                    continue
                if id(tensor) not in copied:
                    copied[id(tensor)] = tensor
                    tensor.data = tensor.data.clone()
    return len(copied)


def set_kernel(model: nn.Module, kernel: Kernel) -> int:
    """Set the matmul kernel of every ``PackedQuantLinear`` in ``model``; returns how many were set."""
    if kernel not in ("auto", "dequantize", "int"):
        raise ValueError(f"kernel={kernel!r} is not one of 'auto', 'dequantize', 'int'")
    count = 0
    for module in model.modules():
        if isinstance(module, PackedQuantLinear):
            module.kernel = kernel
            count += 1
    return count
