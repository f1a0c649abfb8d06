"""transformers pushes a tiny Llama to the local Hub and loads it back unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread; tiny models gain nothing from more on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_llama() -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


@pytest.mark.usefixtures("one_thread")
def test_push_to_hub_then_from_pretrained(localhub: LocalHubFixture) -> None:
    model = _tiny_llama()

    model.push_to_hub("alice/tiny-llama", token=ALICE_WRITE)
    loaded = AutoModelForCausalLM.from_pretrained(
        "alice/tiny-llama", token=ALICE_WRITE, cache_dir=localhub.cache_dir
    )

    assert type(loaded) is LlamaForCausalLM
    expected, actual = model.state_dict(), loaded.state_dict()
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name
    tokens = torch.arange(8).unsqueeze(0)  # (B=1, T=8)
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, model(tokens).logits)


@pytest.mark.usefixtures("one_thread")
def test_upload_folder_then_from_pretrained(localhub: LocalHubFixture, tmp_path: Path) -> None:
    model = _tiny_llama()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    api = HfApi(endpoint=localhub.endpoint, token=ALICE_WRITE)
    api.create_repo("alice/saved-llama")
    api.upload_folder(repo_id="alice/saved-llama", folder_path=folder)

    loaded = AutoModelForCausalLM.from_pretrained(
        "alice/saved-llama", token=ALICE_WRITE, cache_dir=localhub.cache_dir
    )

    info = api.model_info("alice/saved-llama")
    assert info.config is not None
    assert info.config["architectures"] == ["LlamaForCausalLM"]
    assert info.safetensors is not None
    assert info.safetensors.total == sum(tensor.numel() for tensor in model.state_dict().values())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
