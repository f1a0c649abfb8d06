"""Tiny random-weight decoder-only models for CPU tests of the quantization pipeline.

Every model has 2 decoder layers, a 300-token vocabulary and widths divisible by 16. The
weights are drawn from a local ``torch.Generator`` after construction, so the same seed gives
bit-identical models regardless of the global RNG state. A few channels of each RMSNorm weight
are scaled up so the activations carry the outlier channels that smoothing and rotations exist
to handle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

__all__ = [
    "TINY_SPECS",
    "VOCAB_SIZE",
    "TinySpec",
    "build_tiny_gpt2",
    "build_tiny_model",
    "calibration_ids",
    "single_thread",
]

VOCAB_SIZE = 300
NUM_LAYERS = 2
# Norm-weight channels scaled by OUTLIER_GAIN, which gives each site a few outlier channels.
OUTLIER_CHANNELS = (3, 17, 40)
OUTLIER_GAIN = 8.0


@dataclass(frozen=True)
class TinySpec:
    """Shape of one tiny model. ``kv_heads < heads`` means grouped-query attention."""

    name: str
    family: str  # "llama", "mistral" or "qwen2"
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    tie_embeddings: bool = False


TINY_SPECS: dict[str, TinySpec] = {
    spec.name: spec
    for spec in (
        TinySpec("llama-mha", "llama", hidden=64, intermediate=128, heads=4, kv_heads=4),
        TinySpec("llama-gqa", "llama", hidden=96, intermediate=160, heads=6, kv_heads=2),
        TinySpec("mistral-gqa", "mistral", hidden=64, intermediate=192, heads=4, kv_heads=2),
        # Qwen2 always has q/k/v biases.
        TinySpec("qwen2-gqa-bias", "qwen2", hidden=64, intermediate=128, heads=4, kv_heads=2),
        TinySpec(
            "llama-tied",
            "llama",
            hidden=64,
            intermediate=128,
            heads=4,
            kv_heads=4,
            tie_embeddings=True,
        ),
    )
}

_FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}


def _common_config(spec: TinySpec) -> dict[str, object]:
    return {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.hidden // spec.heads,
        "max_position_embeddings": 256,
        "tie_word_embeddings": spec.tie_embeddings,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }


@torch.no_grad()
def _randomize(model: nn.Module, generator: torch.Generator) -> None:
    """Overwrite every parameter from ``generator``.

    Matrices and biases get N(0, 0.05^2) entries. RMSNorm weights get 1 + N(0, 0.1^2), with
    ``OUTLIER_CHANNELS`` scaled by ``OUTLIER_GAIN``.
    """
    for name, param in model.named_parameters():
        if param.dim() == 1 and "norm" in name:
            values = 1.0 + 0.1 * torch.randn(param.shape, generator=generator, dtype=torch.float64)
            values[list(OUTLIER_CHANNELS)] *= OUTLIER_GAIN
        else:
            values = 0.05 * torch.randn(param.shape, generator=generator, dtype=torch.float64)
        param.copy_(values.to(param.dtype))


def build_tiny_model(
    spec: TinySpec | str, seed: int = 0, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """Build a 2-layer random-weight causal LM from ``spec`` in eval mode."""
    if isinstance(spec, str):
        spec = TINY_SPECS[spec]
    config_class, model_class = _FAMILIES[spec.family]
    config = config_class(**_common_config(spec))
    config._attn_implementation = "sdpa"
    model = model_class(config)
    _randomize(model, torch.Generator().manual_seed(seed))
    return model.to(dtype).eval()


def build_tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    """Build a 2-layer random-weight GPT-2 (an architecture ``ruquant`` does not support)."""
    config = GPT2Config(
        vocab_size=VOCAB_SIZE, n_embd=64, n_layer=NUM_LAYERS, n_head=4, n_positions=256
    )
    model = GPT2LMHeadModel(config)
    _randomize(model, torch.Generator().manual_seed(seed))
    return model.eval()


def calibration_ids(windows: int = 4, seq_len: int = 32, seed: int = 0) -> torch.Tensor:
    """Draw ``[windows, seq_len]`` random token ids from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB_SIZE, (windows, seq_len), generator=generator)


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, restoring the previous count afterwards.

    Tensors in these tests are tiny, and on a busy shared CPU extra threads only add
    synchronisation stalls.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
