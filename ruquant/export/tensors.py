"""Turn a model quantized in memory by ``quantize_model`` into the tensors of a checkpoint.

Quantized linear layers give their packed integer codes, scales and zero points. Each site gives
its online transform once per layer. Every other tensor (embeddings, norms with the smoothing
folded in, lm_head, biases) is stored in a 16-bit float dtype. ``round_float_tensors``
applies that same rounding to the model in memory, so the model that is evaluated before saving
computes exactly what the saved checkpoint computes after loading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

import ruquant
from ruquant.config import FLOAT_BITS, QuantConfig
from ruquant.export.format import (
    ATTENTION_QUANTIZER_NAME,
    HEAD_ROTATION_TENSOR,
    SITE_PARTS,
    SITES_MODULE_NAME,
    ActivationScheme,
    AttentionScheme,
    CheckpointConfig,
    SiteLayout,
    WeightScheme,
    site_key,
)
from ruquant.export.packing import codes_per_byte, pack_codes
from ruquant.models.attention import AttentionQuantizer
from ruquant.models.mappings import ArchitectureMapping, get_mapping, site_widths
from ruquant.quant.modules import QuantLinear
from ruquant.transforms.hadamard import hadamard_matrix, is_power_of_two
from ruquant.transforms.site import Site, SiteTransform

__all__ = [
    "CheckpointTensors",
    "collect_checkpoint_tensors",
    "resolve_float_dtype",
    "round_float_tensors",
    "storage_dtype",
]

logger = logging.getLogger(__name__)


@dataclass
class CheckpointTensors:
    """Every tensor of a checkpoint by name, and the ``quantization_config`` that describes them.

    ``parameter_count`` counts the model's parameters as a float checkpoint stores them (tied
    weights once), for comparing sizes.
    """

    tensors: dict[str, torch.Tensor]
    config: CheckpointConfig
    parameter_count: int


def resolve_float_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """Return the storage dtype of unquantized tensors: bfloat16 for bfloat16 models, else float16."""
    return torch.bfloat16 if model_dtype == torch.bfloat16 else torch.float16


def storage_dtype(tensor: torch.Tensor, float_dtype: torch.dtype) -> torch.dtype:
    """Return the dtype ``tensor`` is stored in: ``float_dtype``, or float32 where that would overflow."""
    if not tensor.is_floating_point():
        return tensor.dtype
    limit = torch.finfo(float_dtype).max
    if tensor.numel() and float(tensor.detach().abs().amax()) > limit:
        return torch.float32
    return float_dtype


def _special_prefixes(model: nn.Module, mapping: ArchitectureMapping) -> list[str]:
    """Return the module paths whose tensors are stored in quantized form rather than as floats."""
    layers: nn.ModuleList = model.get_submodule(mapping.layers)
    prefixes = []
    for index in range(len(layers)):
        base = f"{mapping.layers}.{index}"
        prefixes += [f"{base}.{path}" for path in mapping.linear_names()]
        prefixes.append(f"{base}.{mapping.attention}.{ATTENTION_QUANTIZER_NAME}")
    return prefixes


def _float_entries(model: nn.Module, mapping: ArchitectureMapping) -> dict[str, torch.Tensor]:
    """Return the unquantized tensors to store, by name, with tied duplicates dropped.

    These are the model's own parameters and buffers (not copies), plus the bias of each
    quantized linear layer and the folded weight of layers that keep float weights.
    """
    prefixes = tuple(prefix + "." for prefix in _special_prefixes(model, mapping))
    entries: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if name.startswith(prefixes):
            continue
        if id(tensor) in seen:
            logger.debug("skipping %s: it shares its storage with a tensor stored already (tied weights)", name)
            continue
        seen.add(id(tensor))
        entries[name] = tensor
    layers: nn.ModuleList = model.get_submodule(mapping.layers)
    for index, layer in enumerate(layers):
        for path in mapping.linear_names():
            linear = layer.get_submodule(path)
            name = f"{mapping.layers}.{index}.{path}"
            if isinstance(linear, QuantLinear) and linear.bias is not None:
                entries[f"{name}.bias"] = linear.bias
            if isinstance(linear, QuantLinear) and linear.w_bits == FLOAT_BITS:
                entries[f"{name}.weight"] = linear.weight
    return entries


@torch.no_grad()
def round_float_tensors(model: nn.Module, float_dtype: torch.dtype) -> dict[str, str]:
    """Round the model's unquantized tensors in place to the values the checkpoint stores.

    Each tensor becomes ``tensor.to(storage_dtype).to(tensor.dtype)``, which is what loading the
    checkpoint in the model's dtype gives. Returns the names stored in float32 because
    ``float_dtype`` would overflow, mapped to their dtype.
    """
    float32_names: dict[str, str] = {}
    for name, tensor in _float_entries(model, get_mapping(model)).items():
        if not tensor.is_floating_point():
            continue
        dtype = storage_dtype(tensor, float_dtype)
        if dtype != float_dtype:
            float32_names[name] = str(dtype).removeprefix("torch.")
            logger.warning("%s exceeds the range of %s: storing it in %s", name, float_dtype, dtype)
        tensor.data = tensor.data.to(dtype).to(tensor.dtype)
    return float32_names


def _site_transform(layer: nn.Module, mapping: ArchitectureMapping, site: Site, index: int) -> SiteTransform:
    linears = [layer.get_submodule(path) for path in mapping.site_consumers(site)]
    for path, linear in zip(mapping.site_consumers(site), linears, strict=True):
        if not isinstance(linear, QuantLinear) or not linear.finalized:
            raise ValueError(
                f"decoder layer {index}: {path} is not a finalized QuantLinear; quantize the model with "
                "ruquant.quantize_model before saving it"
            )
    transform = linears[0].transform
    if any(linear.transform is not transform for linear in linears):
        raise ValueError(f"decoder layer {index}: the consumers of site {site.value} do not share one transform")
    return transform


def _transform_tensors(transform: SiteTransform) -> dict[str, torch.Tensor]:
    """Return the online parts of ``transform`` as stored: perm as int32, the rest in compute_dtype."""
    parts: dict[str, torch.Tensor] = {}
    for part in SITE_PARTS:
        value = getattr(transform, part)
        if value is None or (part == "smooth_scale" and not transform.smooth_online):
            continue
        dtype = torch.int32 if part == "perm" else transform.compute_dtype
        parts[part] = value.detach().to(device="cpu", dtype=dtype).contiguous()
    return parts


def _linear_tensors(linear: QuantLinear) -> dict[str, torch.Tensor]:
    if linear.w_bits == FLOAT_BITS:
        return {}
    if not linear.finalized or linear.weight_scale is None or linear.weight_zero_point is None:
        raise ValueError("a QuantLinear without weight codes cannot be saved: call finalize() first")
    return {
        "weight_packed": pack_codes(linear.codes().cpu(), linear.w_bits),
        "weight_scale": linear.weight_scale.detach().to("cpu", torch.float32).contiguous(),
        "weight_zero_point": linear.weight_zero_point.detach().to("cpu", torch.float32).contiguous(),
    }


def _head_rotation(quantizer: AttentionQuantizer, head_dim: int) -> tuple[str, torch.Tensor]:
    """Return ("hadamard", rotation) when the rotation is the Sylvester Hadamard matrix, else ("stored", ...)."""
    rotation = quantizer.head_rotation.detach().to("cpu", torch.float32).contiguous()
    if is_power_of_two(head_dim) and torch.equal(rotation, hadamard_matrix(head_dim).to(torch.float32)):
        return "hadamard", rotation
    return "stored", rotation


def collect_checkpoint_tensors(model: nn.Module, quant: QuantConfig, float_dtype: torch.dtype) -> CheckpointTensors:
    """Collect the checkpoint tensors of a model quantized by ``quantize_model``.

    The model must already be rounded with ``round_float_tensors(model, float_dtype)`` for the
    checkpoint to reproduce it exactly; the rounding here only picks the storage dtype.
    """
    mapping = get_mapping(model)
    layers: nn.ModuleList = model.get_submodule(mapping.layers)
    widths = site_widths(model.config)
    head_dim = widths[Site.O_IN] // int(model.config.num_attention_heads)
    tensors: dict[str, torch.Tensor] = {}
    parameter_count = 0
    for name, tensor in _float_entries(model, mapping).items():
        tensors[name] = tensor.detach().to("cpu", storage_dtype(tensor, float_dtype)).contiguous()
        parameter_count += tensor.numel()

    parts_seen: dict[Site, set[str]] = {site: set() for site in Site}
    present: dict[Site, list[set[str]]] = {site: [] for site in Site}
    smooth_online: dict[Site, bool] = {}
    rotation_kinds: set[str] = set()
    transform_dtypes: set[torch.dtype] = set()
    for index, layer in enumerate(layers):
        base = f"{mapping.layers}.{index}"
        for site in Site:
            transform = _site_transform(layer, mapping, site, index)
            transform_dtypes.add(transform.compute_dtype)
            smooth_online[site] = smooth_online.get(site, False) or transform.smooth_online
            parts = _transform_tensors(transform)
            parts_seen[site].update(parts)
            present[site].append(set(parts))
            for part, value in parts.items():
                tensors[f"{base}.{SITES_MODULE_NAME}.{site_key(site.value)}.{part}"] = value
            for path in mapping.site_consumers(site):
                linear = layer.get_submodule(path)
                if linear.w_bits != FLOAT_BITS:
                    parameter_count += linear.in_features * linear.out_features
                for name, value in _linear_tensors(linear).items():
                    tensors[f"{base}.{path}.{name}"] = value
        attention = layer.get_submodule(mapping.attention)
        quantizer = getattr(attention, ATTENTION_QUANTIZER_NAME, None)
        if not isinstance(quantizer, AttentionQuantizer):
            raise ValueError(f"decoder layer {index}: the attention module has no AttentionQuantizer")
        kind, rotation = _head_rotation(quantizer, head_dim)
        rotation_kinds.add(kind)
        if kind == "stored":
            tensors[f"{base}.{mapping.attention}.{ATTENTION_QUANTIZER_NAME}.{HEAD_ROTATION_TENSOR}"] = rotation
    if len(rotation_kinds) > 1:
        raise ValueError("some attention layers rotate Q and K with the Hadamard matrix and some do not")
    if len(transform_dtypes) != 1:
        raise ValueError(f"the site transforms use several compute dtypes: {sorted(map(str, transform_dtypes))}")

    sites = {}
    for site in Site:
        ordered = [part for part in SITE_PARTS if part in parts_seen[site]]
        absent = {
            part: [index for index, names in enumerate(present[site]) if part not in names]
            for part in ordered
        }
        sites[site.value] = SiteLayout(
            parts=ordered,  # type: ignore[arg-type]
            smooth_online=smooth_online[site],
            absent={part: indices for part, indices in absent.items() if indices},
        )
    config = CheckpointConfig(
        method=quant.method.value,
        preset=quant.preset,
        weights=WeightScheme(
            num_bits=quant.w_bits,
            clip_ratio=quant.resolved_w_clip_ratio,
            codes_per_byte=0 if quant.w_bits == FLOAT_BITS else codes_per_byte(quant.w_bits),
        ),
        activations=ActivationScheme(num_bits=quant.a_bits, clip_ratio=quant.resolved_a_clip_ratio),
        attention=AttentionScheme(
            num_bits=quant.a_bits,
            query_key_clip_ratio=quant.resolved_a_clip_ratio,
            head_dim=head_dim,
            head_rotation="stored" if "stored" in rotation_kinds else "hadamard",
        ),
        block_size=_block_size(layers, mapping),
        transform_dtype=str(transform_dtypes.pop()).removeprefix("torch."),  # type: ignore[arg-type]
        float_dtype=str(float_dtype).removeprefix("torch."),  # type: ignore[arg-type]
        layers_path=mapping.layers,
        num_layers=len(layers),
        linear_paths={site.value: list(mapping.site_consumers(site)) for site in Site},
        attention_path=mapping.attention,
        sites=sites,
        ruquant_version=ruquant.__version__,
    )
    return CheckpointTensors(tensors=tensors, config=config, parameter_count=parameter_count)


def _block_size(layers: nn.ModuleList, mapping: ArchitectureMapping) -> int | None:
    """Return the size of the block matrices (None when no site has one)."""
    for layer in layers:
        for site in Site:
            transform = _site_transform(layer, mapping, site, 0)
            for matrix in (transform.m1, transform.m2):
                if matrix is not None:
                    return int(matrix.shape[0])
    return None
