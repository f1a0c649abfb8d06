"""The saving stage of ``run_quantization`` on a tiny model: report.json, model card, figures, licence."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ruquant.config import CalibrationConfig, EvaluationConfig, QuantConfig, RunConfig
from ruquant.report.card import render_model_card
from ruquant.report.figures import bin_positions
from ruquant.report.source import describe_base_model, read_front_matter
from ruquant.report.zero_shot import TASKS_ENV, requested_tasks
from ruquant.runner import REPORT_SCHEMA_VERSION, run_quantization
from tests.conftest import REPO_ROOT
from tests.ruquant.tiny_models import single_thread

TEXT = " ".join(f"The quick brown fox number {i} jumps over the lazy dog." for i in range(400))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="module")
def run_output(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    source = tmp_path_factory.mktemp("source")
    for path in tiny_llama_dir.iterdir():
        (source / path.name).write_bytes(path.read_bytes())
    (source / "README.md").write_text("---\nlicense: mit\ntags:\n- test\n---\n# tiny\n")
    text_file = source / "corpus.txt"
    text_file.write_text(TEXT)
    config = RunConfig(
        quant=QuantConfig(greedy_steps=4, givens_rounds=1),
        calibration=CalibrationConfig(data=str(text_file), samples=2, seq_len=64),
        evaluation=EvaluationConfig(data=str(text_file), seq_len=64, windows=2),
        device="cpu",
    )
    output = tmp_path_factory.mktemp("output")
    report = run_quantization(
        source, output, config, show_progress=False, log_context={"model_id": "tiny-org/tiny-llama"}
    )
    return output, report


def test_output_files(run_output: tuple[Path, dict[str, Any]]) -> None:
    output, _ = run_output
    names = {path.name for path in output.iterdir()}
    expected = {"model.safetensors", "config.json", "README.md", "report.json", "activation_bins.png",
                "layer_errors.png", "perplexity.png", "tokenizer.json", "generation_config.json"}  # fmt: skip
    assert expected <= names


def test_figures_are_png(run_output: tuple[Path, dict[str, Any]]) -> None:
    output, report = run_output
    for name in ("activation_bins.png", "layer_errors.png", "perplexity.png"):
        assert (output / name).read_bytes()[:8] == PNG_MAGIC, name
    assert report["figures"]["activation_bins_layer"] == 1


def test_report_fields(run_output: tuple[Path, dict[str, Any]]) -> None:
    output, returned = run_output
    report = json.loads((output / "report.json").read_text())
    assert report == json.loads(json.dumps(returned))
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert report["seeds"] == {"transform_search": 444, "calibration": 444}
    assert report["verification"]["passed"] is True
    # Bit-identical reload on CPU in float32: observed 0.0.
    assert report["verification"]["logits_rel_error"] == 0.0
    assert report["checkpoint"]["format"] == "ruquant-packed"
    assert report["evaluation"]["baseline"] == report["fp_perplexity"]
    assert report["evaluation"]["quantized"] == report["quantized_perplexity"]
    assert report["base_model"] == {
        "id": "tiny-org/tiny-llama",
        "license": "mit",
        "license_source": "README.md front matter of the base model",
    }
    assert report["zero_shot"]["ran"] == {}
    assert set(report["zero_shot"]["skipped"]) == set(requested_tasks())
    for record in report["layers"]:
        assert set(record["weight_errors"]) == {"attn-in", "o-in", "mlp-in", "down-in"}
        assert set(record["sites"]["attn-in"]) == {"act_error_before", "act_error_after"}


def test_card_metadata(run_output: tuple[Path, dict[str, Any]]) -> None:
    output, _ = run_output
    front = read_front_matter(output / "README.md")
    assert front["base_model"] == "tiny-org/tiny-llama"
    assert front["base_model_relation"] == "quantized"
    assert front["library_name"] == "transformers"
    assert front["license"] == "mit"
    card = (output / "README.md").read_text()
    assert "- ruquant\n- w4a4\n" in card


def test_card_sections_and_figures(run_output: tuple[Path, dict[str, Any]]) -> None:
    output, report = run_output
    card = (output / "README.md").read_text()
    for heading in ("## What was done", "## How to load it", "## Evaluation", "## Limitations"):
        assert heading in card
    row = f"| {report['fp_perplexity']:.3f} | {report['quantized_perplexity']:.3f} | {100 * report['recovery']:.1f}% |"
    assert row in card
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card):
        assert (output / link).is_file(), link


def test_card_code_runs(run_output: tuple[Path, dict[str, Any]]) -> None:
    output, _ = run_output
    card = (output / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    completed = subprocess.run(
        [sys.executable, "-c", "import torch\ntorch.set_num_threads(1)\n" + code],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("The capital of France is")


def test_card_without_base_id(run_output: tuple[Path, dict[str, Any]]) -> None:
    _, report = run_output
    anonymous = {**report, "base_model": {"id": None, "license": "other", "license_source": "unknown"}}
    card = render_model_card(anonymous, "some/folder")
    assert "base_model:" not in card.split("---")[1]
    assert "Hub id is not known" in card


def test_bundled_model_license(tmp_path: Path) -> None:
    info = describe_base_model("smollm2-135m", tmp_path)
    assert info.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info.license == "apache-2.0"


def test_hub_cache_path_gives_id(tmp_path: Path) -> None:
    folder = tmp_path / "models--owner--name" / "snapshots" / "abc"
    folder.mkdir(parents=True)
    info = describe_base_model(str(folder), folder)
    assert info.base_model == "owner/name"
    assert info.license == "other"


def test_bin_positions_on_grid() -> None:
    x = torch.tensor([[-1.0, 0.0, 0.5, 2.0]])
    positions = bin_positions(x, 4, 1.0)
    # scale = 3 / 15 and zero_point = 5, so the minimum sits on code 0 and the maximum on 15.
    torch.testing.assert_close(positions, torch.tensor([0.0, 5.0, 7.5, 15.0], dtype=torch.float64), atol=1e-12, rtol=0.0)


def test_zero_shot_tasks_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TASKS_ENV, "arc_easy, hellaswag")
    assert requested_tasks() == ["arc_easy", "hellaswag"]
    monkeypatch.setenv(TASKS_ENV, "")
    assert requested_tasks() == []
