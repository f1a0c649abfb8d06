"""A tiny random Llama with a byte-level tokenizer, and a text file to calibrate it on."""

from __future__ import annotations

import random
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

from tests.conftest import make_byte_tokenizer

__all__ = ["save_tiny_llama", "write_text"]

_WORDS = (
    "the model quantizes weights and activations to four bits while a rotation spreads each "
    "block of values towards a uniform shape so the grid wastes fewer levels on outliers"
).split()


def save_tiny_llama(folder: Path, *, num_layers: int) -> Path:
    """Save a randomly initialised ``LlamaForCausalLM`` (hidden 64, GQA) and a byte tokenizer."""
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    make_byte_tokenizer().save_pretrained(folder)
    return folder


def write_text(path: Path, *, words: int = 6000, seed: int = 0) -> Path:
    """Write ``words`` words of seeded pseudo-English (about 6 bytes, so tokens, per word)."""
    chooser = random.Random(seed)
    lines = [" ".join(chooser.choices(_WORDS, k=12)) + "." for _ in range(words // 12)]
    path.write_text("\n".join(lines) + "\n")
    return path
