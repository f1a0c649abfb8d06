"""Layer-by-layer execution helpers: captured inputs, in-place outputs, hook-only passes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LlamaForCausalLM

from ruquant.calibration.capture import SiteRecorder, capture_layer_inputs, observe_layer, run_layer


def _first_layer(tiny_llama: Callable[..., LlamaForCausalLM]) -> tuple[LlamaForCausalLM, torch.Tensor, dict]:
    model = tiny_llama(seed=3).eval()
    ids = torch.randint(3, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    hidden, layer_kwargs = capture_layer_inputs(model, model.model.layers, ids, torch.device("cpu"))
    return model, hidden, layer_kwargs


def test_run_layer_in_place_matches_new_buffer(tiny_llama) -> None:
    model, hidden, layer_kwargs = _first_layer(tiny_llama)
    layer = model.model.layers[0]
    expected = run_layer(layer, hidden, layer_kwargs, torch.device("cpu"))
    buffer = hidden.clone()
    returned = run_layer(layer, buffer, layer_kwargs, torch.device("cpu"), out=buffer)
    assert returned.data_ptr() == buffer.data_ptr()
    assert torch.equal(returned, expected)
    assert not torch.equal(buffer, hidden)


def test_run_layer_batches_match_single_windows(tiny_llama) -> None:
    model, hidden, layer_kwargs = _first_layer(tiny_llama)
    layer = model.model.layers[0]
    single = run_layer(layer, hidden, layer_kwargs, torch.device("cpu"), batch_size=1)
    # A batch size that does not divide N (2 for 3 windows) still covers every window once.
    paired = run_layer(layer, hidden, layer_kwargs, torch.device("cpu"), batch_size=2)
    assert single.shape == hidden.shape
    torch.testing.assert_close(paired, single, rtol=1e-5, atol=1e-6)


def test_observe_layer_feeds_hooks_only(tiny_llama) -> None:
    model, hidden, layer_kwargs = _first_layer(tiny_llama)
    layer = model.model.layers[0]
    before = hidden.clone()
    recorder = SiteRecorder(sample_tokens=4)
    with recorder.recording({"mlp.down_proj": layer.mlp.down_proj}):
        assert observe_layer(layer, hidden, layer_kwargs, torch.device("cpu")) is None
    assert recorder.count["mlp.down_proj"] == hidden.shape[0]
    assert recorder.sample["mlp.down_proj"].shape == (4, layer.mlp.down_proj.in_features)
    assert torch.equal(hidden, before)
