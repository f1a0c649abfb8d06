"""Architecture knowledge: module names per transform site, one mapping per model class.

This is the only module that names projection and norm modules of a model family.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ruquant.errors import UnsupportedArchitectureError
from ruquant.transforms.site import Site

__all__ = ["ArchitectureMapping", "MAPPINGS", "get_mapping", "site_widths", "supported_architectures"]


@dataclass(frozen=True)
class ArchitectureMapping:
    """Dotted module paths of a decoder-only model class.

    Paths inside a decoder layer are relative to that layer; the others to the model root.
    Every mapped layer is a pre-norm residual block: ``h = x + attention(input_norm(x))`` and
    ``out = h + mlp(post_attention_norm(h))``, which stage 2 relies on to split its backward pass.
    """

    layers: str = "model.layers"
    embed_tokens: str = "model.embed_tokens"
    final_norm: str = "model.norm"
    lm_head: str = "lm_head"
    rotary_embedding: str = "model.rotary_emb"
    attention: str = "self_attn"
    mlp: str = "mlp"
    q_proj: str = "self_attn.q_proj"
    k_proj: str = "self_attn.k_proj"
    v_proj: str = "self_attn.v_proj"
    o_proj: str = "self_attn.o_proj"
    gate_proj: str = "mlp.gate_proj"
    up_proj: str = "mlp.up_proj"
    down_proj: str = "mlp.down_proj"
    input_norm: str = "input_layernorm"
    post_attention_norm: str = "post_attention_layernorm"

    def site_consumers(self, site: Site) -> tuple[str, ...]:
        """Return the linear modules that read the input of ``site``."""
        return {
            Site.ATTN_IN: (self.q_proj, self.k_proj, self.v_proj),
            Site.O_IN: (self.o_proj,),
            Site.MLP_IN: (self.gate_proj, self.up_proj),
            Site.DOWN_IN: (self.down_proj,),
        }[site]

    def site_producer(self, site: Site) -> str:
        """Return the module whose output rows the smoothing of ``site`` can be folded into."""
        return {
            Site.ATTN_IN: self.input_norm,
            Site.O_IN: self.v_proj,
            Site.MLP_IN: self.post_attention_norm,
            Site.DOWN_IN: self.up_proj,
        }[site]

    def linear_names(self) -> tuple[str, ...]:
        """Return every quantized linear module of a decoder layer."""
        return tuple(name for site in Site for name in self.site_consumers(site))


_LLAMA_LIKE = ArchitectureMapping()

# Keyed by the transformers class name; Mistral and Qwen2 reuse Llama's module names.
MAPPINGS: dict[str, ArchitectureMapping] = {
    "LlamaForCausalLM": _LLAMA_LIKE,
    "MistralForCausalLM": _LLAMA_LIKE,
    "Qwen2ForCausalLM": _LLAMA_LIKE,
}


def supported_architectures() -> list[str]:
    """Return the supported transformers class names, sorted."""
    return sorted(MAPPINGS)


def get_mapping(model: nn.Module | str) -> ArchitectureMapping:
    """Return the mapping of a model (or class name), or raise naming the supported classes."""
    name = model if isinstance(model, str) else type(model).__name__
    mapping = MAPPINGS.get(name)
    if mapping is None:
        raise UnsupportedArchitectureError(
            f"architecture {name!r} is not supported; supported architectures: "
            f"{', '.join(supported_architectures())}"
        )
    return mapping


def site_widths(config: object) -> dict[Site, int]:
    """Return the activation width at every site from a transformers config."""
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    return {
        Site.ATTN_IN: hidden,
        Site.O_IN: heads * head_dim,
        Site.MLP_IN: hidden,
        Site.DOWN_IN: int(config.intermediate_size),
    }
