"""The ``ruquant`` command on a tiny saved model: outputs, report fields and input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from ruquant.cli import main
from tests.conftest import make_byte_tokenizer, make_tiny_llama
from tests.ruquant.tiny_models import single_thread

TEXT = " ".join(f"The quick brown fox number {i} jumps over the lazy dog." for i in range(400))


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def _quantize_args(model: Path, output: Path, text_file: Path, *extra: str) -> list[str]:
    return [
        "--log-level", "WARNING",
        "quantize", str(model),
        "--output", str(output),
        "--calib-data", str(text_file),
        "--calib-samples", "2",
        "--seq-len", "64",
        "--eval-data", str(text_file),
        "--eval-seq-len", "64",
        "--eval-windows", "2",
        *extra,
    ]  # fmt: skip


def test_quantize_writes_report(
    tiny_llama_dir: Path, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out"
    with single_thread():
        code = main(_quantize_args(tiny_llama_dir, output, text_file, "--preset", "W4A4"))
    printed = capsys.readouterr().out
    assert code == 0
    assert "float perplexity:" in printed
    assert "quantized perplexity:" in printed
    report = json.loads((output / "report.json").read_text())
    for key in ("method", "w_bits", "a_bits", "fp_perplexity", "quantized_perplexity", "quantize_seconds",
                "peak_memory_bytes", "versions", "calibration", "evaluation"):  # fmt: skip
        assert key in report, key
    assert report["method"] == "ruquant"
    assert (report["w_bits"], report["a_bits"]) == (4, 4)
    assert report["calibration"]["samples"] == 2
    assert report["calibration"]["seq_len"] == 64
    assert report["calibration"]["seed"] == 444
    assert report["evaluation"]["windows"] == 2
    assert report["evaluation"]["seq_len"] == 64
    assert report["fp_perplexity"] > 1.0
    assert report["quantized_perplexity"] > 1.0
    assert report["peak_memory_bytes"] > 0
    assert set(report["versions"]) >= {"ruquant", "torch", "transformers"}
    assert report["invariance"]["logits_rel_error"] < 1e-4


def _error_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with single_thread():
        code = main(args)
    return code, capsys.readouterr().err


def test_block_size_not_dividing(
    tiny_llama_dir: Path, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _error_of(_quantize_args(tiny_llama_dir, tmp_path / "o", text_file, "--block-size", "256"), capsys)
    assert code == 2
    assert "block size 256 does not divide" in err
    assert "attn-in=64" in err
    assert "down-in=128" in err
    assert "block sizes that would work: 2, 4, 8, 16, 32, 64" in err


@pytest.mark.parametrize(("flag", "value", "field"), [("--w-bits", "9", "w_bits"), ("--a-bits", "1", "a_bits")])
def test_bits_out_of_range(
    flag: str, value: str, field: str, tiny_llama_dir: Path, text_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    code, err = _error_of(_quantize_args(tiny_llama_dir, tmp_path / "o", text_file, flag, value), capsys)
    assert code == 2
    assert f"{field}={value} is not supported" in err
    assert "Traceback" not in err


def test_missing_model_path(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-model"
    code, err = _error_of(_quantize_args(missing, tmp_path / "o", text_file), capsys)
    assert code == 2
    assert str(missing) in err


def test_missing_calibration_data(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-corpus.txt"
    code, err = _error_of(_quantize_args(tiny_llama_dir, tmp_path / "o", missing), capsys)
    assert code == 2
    assert str(missing) in err


def test_unsupported_architecture(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=128, n_embd=32, n_layer=1, n_head=2)).save_pretrained(folder)
    make_byte_tokenizer().save_pretrained(folder)
    code, err = _error_of(_quantize_args(folder, tmp_path / "o", text_file), capsys)
    assert code == 2
    assert "'GPT2LMHeadModel' is not supported" in err
    assert "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM" in err


def test_nan_weights_name_layer(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_tiny_llama(seed=1)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 5] = float("nan")
    folder = tmp_path / "nan-llama"
    model.save_pretrained(folder)
    make_byte_tokenizer().save_pretrained(folder)
    code, err = _error_of(_quantize_args(folder, tmp_path / "o", text_file, "--no-eval"), capsys)
    assert code == 1
    assert "decoder layer 1" in err
    assert "NaN or inf" in err


def test_console_script_help() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "ruquant.cli", "quantize", "--help"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert "--calib-samples" in completed.stdout
    assert "--givens-convention" in completed.stdout
