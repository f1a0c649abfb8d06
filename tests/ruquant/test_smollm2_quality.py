"""Quantization quality on the real SmolLM2-135M (slow: minutes on a 2-core CPU).

Small settings keep the run short: 4 calibration windows and 4 evaluation windows of 512 tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ruquant.calibration.data import load_calibration_windows
from ruquant.config import EvaluationConfig, Method, QuantConfig
from ruquant.evaluate import evaluate_perplexity
from ruquant.models.loading import load_model
from ruquant.pipeline import quantize_model

pytestmark = pytest.mark.slow

SEQ_LEN = 512
EVALUATION = EvaluationConfig(seq_len=SEQ_LEN, windows=4)


@pytest.fixture(scope="module")
def float_perplexity(smollm2_dir: Path, data_dir: Path) -> float:
    model, tokenizer = load_model(str(smollm2_dir))
    return evaluate_perplexity(model, tokenizer, EVALUATION, progress=False).perplexity


def _quantized_perplexity(smollm2_dir: Path, config: QuantConfig) -> float:
    model, tokenizer = load_model(str(smollm2_dir))
    calibration = load_calibration_windows(tokenizer, "wikitext2", num_samples=4, seq_len=SEQ_LEN, seed=444)
    quantize_model(model, calibration.input_ids, config, progress=False)
    return evaluate_perplexity(model, tokenizer, EVALUATION, progress=False).perplexity


def test_w8a8_within_one_percent(smollm2_dir: Path, float_perplexity: float) -> None:
    # Observed: float 27.6, W8A8 ruquant 27.7 (+0.3%) on these 4 windows.
    quantized = _quantized_perplexity(smollm2_dir, QuantConfig(w_bits=8, a_bits=8))
    assert abs(quantized / float_perplexity - 1.0) <= 0.01


def test_w4a4_ruquant_beats_rtn(smollm2_dir: Path, float_perplexity: float) -> None:
    # Observed: RTN about 4,000 (the model falls apart) and RUQuant about 50.
    ruquant = _quantized_perplexity(smollm2_dir, QuantConfig(w_bits=4, a_bits=4))
    rtn = _quantized_perplexity(smollm2_dir, QuantConfig(method=Method.RTN, w_bits=4, a_bits=4))
    assert ruquant < rtn
    assert ruquant > float_perplexity
