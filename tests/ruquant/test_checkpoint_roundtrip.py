"""Round trip of tiny models: quantize, save the checkpoint, load it with ``from_pretrained``, compare.

Every architecture is saved once at W4A4 (ruquant); one architecture is also saved for every
other method and bit preset. The searches use fewer steps than the published defaults (K=4,
lambda=1, 4 DuQuant steps, 1 stage-2 epoch) to keep the module fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from ruquant.config import EvaluationConfig, QuantConfig
from ruquant.evaluate import evaluate_perplexity
from ruquant.export.checkpoint import save_quantized_checkpoint
from ruquant.export.files import INDEX_FILE
from ruquant.export.format import FORMAT_NAME, FORMAT_VERSION
from ruquant.export.tensors import round_float_tensors
from ruquant.export.verify import verify_checkpoint
from ruquant.integration import set_kernel
from ruquant.integration.linear import PackedQuantLinear
from ruquant.models.attention import ATTENTION_IMPLEMENTATION
from ruquant.pipeline import quantize_model
from tests.conftest import REPO_ROOT, make_byte_tokenizer
from tests.ruquant.tiny_models import TINY_SPECS, build_tiny_model, calibration_ids, single_thread

FAST = {"greedy_steps": 4, "givens_rounds": 1, "duquant_max_steps": 4, "stage2_epochs": 1}
ARCHITECTURE_CASES = {f"{name}-W4A4": (name, {"method": "ruquant"}) for name in TINY_SPECS}
METHOD_CASES = {
    "rtn-W4A4": ("llama-gqa", {"method": "rtn"}),
    "smoothquant-W4A4": ("llama-gqa", {"method": "smoothquant"}),
    "hadamard-W4A4": ("llama-gqa", {"method": "hadamard"}),
    "duquant-W4A4": ("llama-gqa", {"method": "duquant"}),
    "stage2-W4A4": ("llama-gqa", {"method": "ruquant", "stage2": True}),
    "ruquant-W6A6": ("qwen2-gqa-bias", {"w_bits": 6, "a_bits": 6}),
    "ruquant-W8A8": ("llama-mha", {"w_bits": 8, "a_bits": 8}),
    "ruquant-W4A16": ("mistral-gqa", {"w_bits": 4, "a_bits": 16}),
    "ruquant-W2A8": ("llama-tied", {"w_bits": 2, "a_bits": 8}),
    "ruquant-W16A4": ("llama-gqa", {"w_bits": 16, "a_bits": 4}),
}
CASES = {**ARCHITECTURE_CASES, **METHOD_CASES}
TEXT = " ".join(f"Sentence number {i} tells the tiny model something new." for i in range(60))


@dataclass
class SavedCase:
    model: nn.Module
    folder: Path
    quant: QuantConfig


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SavedCase]:
    cases: dict[str, SavedCase] = {}
    for case, (spec, overrides) in CASES.items():
        model = build_tiny_model(spec)
        quant = QuantConfig(**{**FAST, **overrides})
        quantize_model(model, calibration_ids(), quant, progress=False)
        round_float_tensors(model, torch.float16)
        folder = tmp_path_factory.mktemp(case)
        save_quantized_checkpoint(model, make_byte_tokenizer(), folder, quant)
        cases[case] = SavedCase(model=model, folder=folder, quant=quant)
    return cases


def _load(folder: Path) -> nn.Module:
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("case", sorted(CASES))
def test_loaded_logits_bit_identical(saved: dict[str, SavedCase], case: str) -> None:
    entry = saved[case]
    loaded = _load(entry.folder)
    ids = calibration_ids(windows=2, seq_len=24, seed=7)
    # The dequantize kernel repeats the in-memory model's operations on the same values:
    # observed difference 0.0 for every case.
    torch.testing.assert_close(_logits(loaded, ids), _logits(entry.model, ids), atol=0.0, rtol=0.0)


@pytest.mark.parametrize("case", ["llama-gqa-W4A4", "qwen2-gqa-bias-W4A4", "ruquant-W4A16"])
def test_loaded_perplexity_equal(saved: dict[str, SavedCase], case: str) -> None:
    entry = saved[case]
    tokenizer = make_byte_tokenizer()
    config = EvaluationConfig(seq_len=32, windows=3)
    expected = evaluate_perplexity(entry.model, tokenizer, config, text=TEXT, progress=False)
    actual = evaluate_perplexity(_load(entry.folder), tokenizer, config, text=TEXT, progress=False)
    assert actual.perplexity == expected.perplexity
    assert actual.tokens == expected.tokens


def test_loaded_model_layout(saved: dict[str, SavedCase]) -> None:
    loaded = _load(saved["llama-gqa-W4A4"].folder)
    layer = loaded.model.layers[0]
    packed = [module for module in loaded.modules() if isinstance(module, PackedQuantLinear)]
    assert len(packed) == 2 * 7
    assert loaded.config._attn_implementation == ATTENTION_IMPLEMENTATION
    # One transform per site, shared by its consumers.
    assert layer.self_attn.q_proj.transform is layer.self_attn.v_proj.transform
    assert layer.mlp.gate_proj.transform is layer.mlp.up_proj.transform
    assert layer.self_attn.q_proj.act_quantizer is layer.self_attn.k_proj.act_quantizer
    assert layer.self_attn.q_proj.weight_packed.dtype == torch.uint8
    # Two 4-bit codes per byte.
    assert layer.self_attn.q_proj.weight_packed.shape == (96, 48)


def test_config_names_format(saved: dict[str, SavedCase]) -> None:
    config = json.loads((saved["llama-gqa-W4A4"].folder / "config.json").read_text())
    quantization = config["quantization_config"]
    assert quantization["quant_method"] == "ruquant"
    assert quantization["format"] == FORMAT_NAME
    assert quantization["format_version"] == FORMAT_VERSION
    assert quantization["weights"]["num_bits"] == 4
    assert quantization["weights"]["codes_per_byte"] == 2
    assert quantization["activations"]["clip_ratio"] == 0.9
    assert quantization["attention"]["head_rotation"] == "hadamard"
    assert quantization["sites"]["o-in"]["smooth_online"] is True
    assert quantization["sites"]["attn-in"]["parts"] == ["m1", "perm", "m2", "omega"]


def test_site_transform_stored_once(saved: dict[str, SavedCase]) -> None:
    from safetensors import safe_open

    with safe_open(str(saved["llama-gqa-W4A4"].folder / "model.safetensors"), "pt") as handle:
        names = list(handle.keys())
    assert "model.layers.0.ruquant_sites.attn_in.m1" in names
    assert not any(".q_proj.transform." in name for name in names)
    assert "model.layers.0.self_attn.ruquant_attention.head_rotation" not in names


def test_generate_matches_in_memory(saved: dict[str, SavedCase]) -> None:
    entry = saved["llama-tied-W4A4"]
    loaded = _load(entry.folder)
    prompt = calibration_ids(windows=1, seq_len=6, seed=11)
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        expected = entry.model.generate(prompt, **kwargs)
        actual = loaded.generate(prompt, **kwargs)
    assert actual.shape == (1, 12)
    assert torch.equal(actual, expected)


def test_integer_kernel_close(saved: dict[str, SavedCase]) -> None:
    entry = saved["ruquant-W8A8"]
    loaded = _load(entry.folder)
    assert set_kernel(loaded, "int") == 2 * 7
    ids = calibration_ids(windows=2, seq_len=24, seed=7)
    # Integer sums are exact; only the float32 scaling differs from F.linear. Observed 4.0e-7.
    torch.testing.assert_close(_logits(loaded, ids), _logits(entry.model, ids), atol=1e-4, rtol=1e-4)


def test_integer_kernel_four_bit_close(saved: dict[str, SavedCase]) -> None:
    entry = saved["llama-mha-W4A4"]
    loaded = _load(entry.folder)
    set_kernel(loaded, "int")
    ids = calibration_ids(windows=2, seq_len=24, seed=7)
    # Observed relative error 4.0e-7.
    torch.testing.assert_close(_logits(loaded, ids), _logits(entry.model, ids), atol=1e-4, rtol=1e-4)


def test_unknown_kernel_rejected(saved: dict[str, SavedCase]) -> None:
    with pytest.raises(ValueError, match="kernel='fast'"):
        set_kernel(_load(saved["llama-mha-W4A4"].folder), "fast")  # type: ignore[arg-type]


def test_sharded_checkpoint_loads(saved: dict[str, SavedCase], tmp_path: Path) -> None:
    entry = saved["mistral-gqa-W4A4"]
    summary = save_quantized_checkpoint(entry.model, None, tmp_path, entry.quant, max_shard_bytes=40_000)
    assert len(summary.weight_files) > 2
    assert (tmp_path / INDEX_FILE).is_file()
    ids = calibration_ids(windows=1, seq_len=16, seed=3)
    torch.testing.assert_close(_logits(_load(tmp_path), ids), _logits(entry.model, ids), atol=0.0, rtol=0.0)


def test_resave_replaces_shards(saved: dict[str, SavedCase], tmp_path: Path) -> None:
    entry = saved["mistral-gqa-W4A4"]
    save_quantized_checkpoint(entry.model, None, tmp_path, entry.quant, max_shard_bytes=40_000)
    save_quantized_checkpoint(entry.model, None, tmp_path, entry.quant)
    assert sorted(path.name for path in tmp_path.glob("model*")) == ["model.safetensors"]
    _load(tmp_path)


def test_verify_checkpoint_passes(saved: dict[str, SavedCase]) -> None:
    entry = saved["qwen2-gqa-bias-W4A4"]
    result = verify_checkpoint(entry.model, entry.folder, calibration_ids(windows=2, seq_len=16))
    assert result.passed
    assert result.logits_rel_error == 0.0
    assert result.nll_loaded == result.nll_in_memory
    assert result.kernel == "dequantize"


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize(
    "imports",
    ["import ruquant\nfrom transformers import AutoModelForCausalLM", "from transformers import AutoModelForCausalLM\nimport ruquant"],
    ids=["ruquant-first", "transformers-first"],
)
def test_separate_process_loads(saved: dict[str, SavedCase], imports: str) -> None:
    folder = saved["llama-gqa-W4A4"].folder
    code = (
        f"{imports}\nimport torch\ntorch.set_num_threads(1)\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(folder)!r})\n"
        "print(type(model.model.layers[0].self_attn.q_proj).__name__)\n"
        "print(model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False, pad_token_id=0).shape)\n"
    )
    completed = _run_python(code)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "PackedQuantLinear" in completed.stdout
    assert "torch.Size([1, 6])" in completed.stdout


def test_config_import_stays_torch_free() -> None:
    completed = _run_python("import sys\nimport ruquant.config\nprint('torch' in sys.modules, 'transformers' in sys.modules)")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "False False"
