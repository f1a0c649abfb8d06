"""The ``ruquant`` checkpoint format: the ``quantization_config`` schema and the tensor names.

This module imports pydantic only (never torch), so tools can read and validate a checkpoint's
``config.json`` without loading a model. The layout is documented in ``docs/checkpoint-format.md``.

Tensor names inside decoder layer ``i`` start with ``{layers_path}.{i}.``; then:

* quantized linear ``P`` (``self_attn.q_proj`` ...): ``P.weight_packed`` (uint8, codes packed
  along the input dimension), ``P.weight_scale`` and ``P.weight_zero_point`` (float32
  ``[out, 1]``), and ``P.bias`` where the layer has one. With float weights (``w_bits`` 16)
  the layer stores ``P.weight`` with the transform folded in instead of the three tensors.
* site ``S`` (``attn_in``, ``o_in``, ``mlp_in``, ``down_in``): ``ruquant_sites.S.m1``,
  ``.perm``, ``.m2``, ``.omega`` and ``.smooth_scale`` (the last only where smoothing runs
  online), stored once per layer however many linear layers read the site.
* attention: ``{attention}.ruquant_attention.head_rotation`` only when the per-head rotation is
  not the Sylvester Hadamard matrix (``head_rotation: "stored"``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ATTENTION_QUANTIZER_NAME",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HEAD_ROTATION_TENSOR",
    "LINEAR_TENSORS",
    "METADATA_CHECKSUMS",
    "METADATA_FORMAT",
    "METADATA_VERSION",
    "QUANT_METHOD",
    "SITES_MODULE_NAME",
    "SITE_KEYS",
    "SITE_PARTS",
    "ActivationScheme",
    "AttentionScheme",
    "CheckpointConfig",
    "SiteLayout",
    "WeightScheme",
    "site_key",
]

QUANT_METHOD = "ruquant"
FORMAT_NAME = "ruquant-packed"
FORMAT_VERSION = 1

# Keys of each safetensors file's ``__metadata__``.
METADATA_FORMAT = "ruquant_format"
METADATA_VERSION = "ruquant_format_version"
METADATA_CHECKSUMS = "ruquant_sha256"

# Submodule of a decoder layer that contains the site transforms, keyed by ``SITE_KEYS``.
SITES_MODULE_NAME = "ruquant_sites"
# Site names as in ``ruquant.transforms.site.Site`` mapped to module-name-safe keys.
SITE_KEYS = {"attn-in": "attn_in", "o-in": "o_in", "mlp-in": "mlp_in", "down-in": "down_in"}
# Buffers of ``SiteTransform`` in the order the activation side applies them.
SITE_PARTS = ("smooth_scale", "m1", "perm", "m2", "omega")
LINEAR_TENSORS = ("weight_packed", "weight_scale", "weight_zero_point")
# Attribute of the attention module that contains its ``AttentionQuantizer`` (as in the pipeline).
ATTENTION_QUANTIZER_NAME = "ruquant_attention"
HEAD_ROTATION_TENSOR = "head_rotation"


def site_key(site: str) -> str:
    """Return the module key of a site name such as ``attn-in``."""
    try:
        return SITE_KEYS[site]
    except KeyError:
        raise ValueError(f"unknown site {site!r}: expected one of {', '.join(SITE_KEYS)}") from None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeightScheme(_Strict):
    """Per-output-channel asymmetric round-to-nearest weight quantizer and its storage."""

    num_bits: int = Field(description="Bit width of the codes; 16 means float weights.")
    strategy: Literal["channel"] = "channel"
    symmetric: Literal[False] = False
    clip_ratio: float
    codes_per_byte: int = Field(description="Codes packed into one uint8 (0 for float weights).")


class ActivationScheme(_Strict):
    """Dynamic per-token asymmetric min-max activation quantizer applied at run time."""

    num_bits: int = Field(description="Bit width; 16 means activations stay in floating point.")
    strategy: Literal["token"] = "token"
    dynamic: Literal[True] = True
    symmetric: Literal[False] = False
    clip_ratio: float


class AttentionScheme(_Strict):
    """Per-(token, head) quantization of Q, K and V inside attention."""

    num_bits: int
    query_key_clip_ratio: float
    value_clip_ratio: float = 1.0
    head_dim: int
    head_rotation: Literal["hadamard", "stored"] = Field(
        description="'hadamard': the normalised Sylvester Hadamard matrix of size head_dim, rebuilt "
        "on load; 'stored': a matrix saved per layer as head_rotation."
    )


class SiteLayout(_Strict):
    """Layout of one site's transform tensors: the stored parts and the layers that lack some of them."""

    parts: list[Literal["smooth_scale", "m1", "perm", "m2", "omega"]]
    smooth_online: bool = Field(description="True when the activations are divided by smooth_scale at run time.")
    absent: dict[str, list[int]] = Field(
        default_factory=dict, description="Part name -> layer indices where the search produced no tensor."
    )


class CheckpointConfig(_Strict):
    """The ``quantization_config`` of a ``ruquant`` checkpoint (``config.json``)."""

    quant_method: Literal["ruquant"] = QUANT_METHOD
    format: Literal["ruquant-packed"] = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    method: str = Field(description="Transform method: rtn, smoothquant, hadamard, duquant or ruquant.")
    preset: str
    weights: WeightScheme
    activations: ActivationScheme
    attention: AttentionScheme
    block_size: int | None
    transform_dtype: Literal["float32", "float64"] = "float32"
    float_dtype: Literal["float16", "bfloat16", "float32"] = Field(
        description="Storage dtype of the unquantized tensors (embeddings, norms, lm_head, biases); "
        "a tensor that would overflow it is stored in float32."
    )
    layers_path: str
    num_layers: int
    linear_paths: dict[str, list[str]] = Field(description="Site name -> linear modules that read it.")
    attention_path: str
    sites: dict[str, SiteLayout]
    kernel: Literal["auto", "dequantize", "int"] = Field(
        "auto",
        description="Matmul kernel of the loaded model: 'int' multiplies integer codes with "
        "torch._int_mm, 'dequantize' expands the weight codes to floats, 'auto' picks 'int' on "
        "CUDA for weights and activations of at most 8 bits and 'dequantize' elsewhere.",
    )
    ruquant_version: str
