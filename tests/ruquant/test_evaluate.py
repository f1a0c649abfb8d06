"""Perplexity evaluation against a straightforward reference, on a tiny random Llama."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaForCausalLM

from ruquant.config import EvaluationConfig
from ruquant.errors import DataError, NonFiniteError
from ruquant.evaluate import PerplexityResult, evaluate_perplexity, forward_seconds
from ruquant.progress import Cancelled, ProgressEvent

SEQ_LEN = 64
# 1000 bytes of lowercase text from a fixed generator: 15 windows of 64 byte tokens and a remainder.
_LETTERS = "abcdefghijklmnopqrstuvwxyz  ."
_CHOICES = torch.randint(0, len(_LETTERS), (1000,), generator=torch.Generator().manual_seed(3))
TEXT = "".join(_LETTERS[int(index)] for index in _CHOICES)


def _reference_perplexity(
    model: LlamaForCausalLM, tokenizer: Any, text: str, seq_len: int, windows: int | None
) -> tuple[float, int]:
    """Score every window independently in float64; return (perplexity, predicted tokens)."""
    token_ids = tokenizer(text).input_ids
    starts = list(range(0, len(token_ids) - seq_len + 1, seq_len))
    if windows is not None:
        starts = starts[:windows]

    total_nll = 0.0
    count = 0
    with torch.no_grad():
        for start in starts:
            window = torch.tensor([token_ids[start : start + seq_len]])
            log_probs = torch.log_softmax(model(window).logits[0].double(), dim=-1)
            for position in range(seq_len - 1):
                total_nll -= log_probs[position, window[0, position + 1]].item()
                count += 1
    return math.exp(total_nll / count), count


def _evaluate(model: LlamaForCausalLM, tokenizer: Any, **kwargs: Any) -> PerplexityResult:
    config = EvaluationConfig(seq_len=SEQ_LEN, windows=kwargs.pop("windows", None))
    return evaluate_perplexity(model, tokenizer, config, progress=False, text=TEXT, **kwargs)


@pytest.mark.parametrize("windows", [None, 1, 4])
def test_perplexity_matches_reference(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any, windows: int | None
) -> None:
    model = tiny_llama(seed=1)

    result = _evaluate(model, byte_tokenizer, windows=windows)
    expected, expected_tokens = _reference_perplexity(model, byte_tokenizer, TEXT, SEQ_LEN, windows)

    assert result.tokens == expected_tokens
    assert result.windows == (windows or len(TEXT) // SEQ_LEN)
    assert result.seq_len == SEQ_LEN
    assert result.data == "caller-supplied text"
    # Observed relative difference: at most 3e-8 over seeds 0-3 (float32 log-softmax against
    # float64); perplexity is about 380.
    torch.testing.assert_close(result.perplexity, expected, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(math.exp(result.nll), result.perplexity, rtol=1e-12, atol=0.0)


def test_more_windows_than_text(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any
) -> None:
    result = _evaluate(tiny_llama(), byte_tokenizer, windows=100)

    assert result.windows == len(TEXT) // SEQ_LEN


def test_callback_reaches_total(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any
) -> None:
    events: list[ProgressEvent] = []

    result = _evaluate(tiny_llama(), byte_tokenizer, windows=5, callback=events.append)

    assert [event.step for event in events] == [1, 2, 3, 4, 5]
    assert all(event.stage == "evaluating" for event in events)
    assert all(event.total == result.windows for event in events)
    assert [event.fraction for event in events] == [step / 5 for step in range(1, 6)]


def test_should_stop_cancels(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any
) -> None:
    events: list[ProgressEvent] = []

    def stop_after_two() -> bool:
        return len(events) >= 2

    with pytest.raises(Cancelled, match="after 2 of 15 windows"):
        _evaluate(tiny_llama(), byte_tokenizer, callback=events.append, should_stop=stop_after_two)
    assert len(events) == 2


def test_nan_weight_raises(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any
) -> None:
    model = tiny_llama()
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")

    with pytest.raises(NonFiniteError, match="window 1 of"):
        _evaluate(model, byte_tokenizer)


def test_text_too_short_raises(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any
) -> None:
    config = EvaluationConfig(seq_len=SEQ_LEN)

    with pytest.raises(DataError, match=r"has 10 tokens.*needs at least 64"):
        evaluate_perplexity(tiny_llama(), byte_tokenizer, config, progress=False, text="ten bytes!")


def test_training_mode_restored(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any
) -> None:
    model = tiny_llama()
    model.train()

    _evaluate(model, byte_tokenizer, windows=1)

    assert model.training


def test_evaluates_data_folder(
    tiny_llama: Callable[..., LlamaForCausalLM], byte_tokenizer: Any, data_dir: Path
) -> None:
    config = EvaluationConfig(data=str(data_dir / "wikitext-2"), seq_len=SEQ_LEN, windows=2)

    result = evaluate_perplexity(tiny_llama(), byte_tokenizer, config, progress=False)

    assert result.windows == 2
    assert result.tokens == 2 * (SEQ_LEN - 1)
    assert result.data.startswith("wikitext-2-raw-v1 test (local file ")
    assert math.isfinite(result.perplexity)


def test_forward_seconds_positive(tiny_llama: Callable[..., LlamaForCausalLM]) -> None:
    input_ids = torch.zeros(2, SEQ_LEN, dtype=torch.long)

    seconds = forward_seconds(tiny_llama(), input_ids, warmup=1, repeats=3)

    assert seconds > 0.0


def test_forward_seconds_rejects_zero_repeats(tiny_llama: Callable[..., LlamaForCausalLM]) -> None:
    with pytest.raises(ValueError, match="repeats=0"):
        forward_seconds(tiny_llama(), torch.zeros(1, 8, dtype=torch.long), repeats=0)
