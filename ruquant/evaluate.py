"""Perplexity on non-overlapping windows of an evaluation text, and forward-pass timing."""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ruquant.calibration.data import EvaluationText, load_evaluation_text, tokenize_text
from ruquant.config import EvaluationConfig
from ruquant.errors import DataError, NonFiniteError
from ruquant.progress import Cancelled, ProgressCallback, ProgressEvent, StopCheck

__all__ = ["PerplexityResult", "evaluate_perplexity", "forward_seconds"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity of one evaluation run.

    ``nll`` is the mean negative log-likelihood per predicted token in nats, so
    ``perplexity == exp(nll)``. ``tokens`` counts predicted tokens: each window of ``seq_len``
    tokens predicts its last ``seq_len - 1``.
    """

    perplexity: float
    nll: float
    windows: int
    tokens: int
    seq_len: int
    data: str
    seconds: float


def evaluate_perplexity(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    config: EvaluationConfig | None = None,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    text: EvaluationText | str | None = None,
) -> PerplexityResult:
    """Compute the perplexity of a causal LM on non-overlapping windows of the evaluation text.

    The text is tokenized once and cut into windows of ``config.seq_len`` tokens, dropping the
    remainder; ``config.windows`` keeps only the first N. Each window is one forward pass, and
    token i + 1 is scored from the logits at position i:

        perplexity = exp(sum of token NLLs / number of predicted tokens)

    Log-softmax runs in float32 whatever the model dtype, and the sums accumulate in float64.
    The model runs in eval mode, and its previous training mode is restored afterwards.

    Args:
        model: A causal LM whose output has ``.logits`` of shape [B, T, V].
        tokenizer: Tokenizer of ``model``.
        config: Data, window length and window count; defaults to ``EvaluationConfig()``.
        device: Device of the input ids; defaults to the device of the model's first parameter.
        progress: Show a tqdm bar.
        callback: Called after each window with an ``evaluating`` event.
        should_stop: Checked before each window; when it returns True, ``Cancelled`` is raised.
        text: Evaluation text to use in place of ``config.data``; a plain string is described
            as caller-supplied text.

    Returns:
        The perplexity with the counts, the data description and the wall time.

    Raises:
        DataError: The data is missing, or has fewer tokens than one window.
        NonFiniteError: A window's loss is NaN or inf.
        Cancelled: ``should_stop`` returned True.
    """
    config = config or EvaluationConfig()
    evaluation = _resolve_text(config, text)
    started = time.perf_counter()
    if device is None:
        device = next(model.parameters()).device

    token_ids = tokenize_text(tokenizer, evaluation.text)  # [N]
    windows = _cut_windows(token_ids, config, evaluation.description)  # [W, seq_len]
    num_windows = windows.shape[0]
    logger.info(
        "evaluating perplexity: windows=%d seq_len=%d text_tokens=%d data=%s",
        num_windows,
        config.seq_len,
        token_ids.numel(),
        evaluation.description,
    )

    was_training = model.training
    model.eval()
    try:
        total_nll = _sum_window_nll(
            model,
            windows,
            device,
            progress=progress,
            callback=callback,
            should_stop=should_stop,
        )
    finally:
        model.train(was_training)

    predicted_tokens = num_windows * (config.seq_len - 1)
    nll = total_nll / predicted_tokens
    result = PerplexityResult(
        perplexity=math.exp(nll),
        nll=nll,
        windows=num_windows,
        tokens=predicted_tokens,
        seq_len=config.seq_len,
        data=evaluation.description,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "perplexity=%.4f nll=%.6f windows=%d seconds=%.1f",
        result.perplexity,
        result.nll,
        result.windows,
        result.seconds,
    )
    return result


def forward_seconds(
    model: nn.Module,
    input_ids: torch.Tensor,
    *,
    warmup: int = 1,
    repeats: int = 1,
) -> float:
    """Time one forward pass of ``model`` over a batch of windows.

    Benchmarks run this on the float model and state the cost of other steps relative to it.
    ``input_ids`` is a LongTensor [B, T]; it is moved to the device of the model's first
    parameter. The device is synchronized before and after each timed pass, so the time
    includes queued kernels on an accelerator.

    Args:
        model: A causal LM.
        input_ids: Token ids [B, T].
        warmup: Untimed passes run first (kernel selection, allocator warm-up).
        repeats: Timed passes; the median is returned.

    Returns:
        The median wall time of one forward pass, in seconds.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be at least 1")
    if warmup < 0:
        raise ValueError(f"warmup={warmup} must not be negative")

    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    timings: list[float] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(input_ids=input_ids, use_cache=False)
            for _ in range(repeats):
                _synchronize(device)
                started = time.perf_counter()
                model(input_ids=input_ids, use_cache=False)
                _synchronize(device)
                timings.append(time.perf_counter() - started)
    finally:
        model.train(was_training)

    seconds = statistics.median(timings)
    logger.info(
        "forward pass: batch=%d seq_len=%d seconds=%.3f device=%s",
        input_ids.shape[0],
        input_ids.shape[1],
        seconds,
        device,
    )
    return seconds


def _resolve_text(config: EvaluationConfig, text: EvaluationText | str | None) -> EvaluationText:
    if text is None:
        return load_evaluation_text(config.data)
    if isinstance(text, str):
        return EvaluationText(text=text, description="caller-supplied text")
    return text


def _cut_windows(
    token_ids: torch.Tensor, config: EvaluationConfig, description: str
) -> torch.Tensor:
    """Cut [N] ids into [W, seq_len] non-overlapping windows, dropping the remainder."""
    available = token_ids.numel() // config.seq_len
    if available == 0:
        raise DataError(
            f"evaluation text from {description} has {token_ids.numel()} tokens, but one window "
            f"of seq_len={config.seq_len} needs at least {config.seq_len}: use a longer text or "
            "a smaller seq_len"
        )

    num_windows = available
    if config.windows is not None:
        if config.windows > available:
            logger.warning(
                "windows=%d requested but the text has only %d windows of %d tokens; "
                "evaluating all %d",
                config.windows,
                available,
                config.seq_len,
                available,
            )
        num_windows = min(config.windows, available)

    used = token_ids[: num_windows * config.seq_len]
    return used.view(num_windows, config.seq_len)  # [W, seq_len]


def _sum_window_nll(
    model: nn.Module,
    windows: torch.Tensor,
    device: torch.device | str,
    *,
    progress: bool,
    callback: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> float:
    """Run each window of [W, seq_len] through the model and return the summed token NLL."""
    num_windows = windows.shape[0]
    total_nll = 0.0  # a Python float, so the sum accumulates in float64
    bar = tqdm(total=num_windows, desc="Evaluating perplexity", unit="window", disable=not progress)
    with torch.inference_mode(), bar:
        for index in range(num_windows):
            if should_stop is not None and should_stop():
                raise Cancelled(f"evaluation stopped after {index} of {num_windows} windows")

            window_nll = _window_nll(model, windows[index : index + 1].to(device))  # [1, seq_len]
            if not math.isfinite(window_nll):
                raise NonFiniteError(
                    f"window {index + 1} of {num_windows} has a non-finite loss "
                    f"({window_nll}): the model produced NaN or inf logits"
                )
            total_nll += window_nll

            step = index + 1
            bar.update(1)
            if callback is not None:
                event = ProgressEvent(
                    stage="evaluating",
                    step=step,
                    total=num_windows,
                    fraction=step / num_windows,
                    message=f"({step}/{num_windows}): Evaluating perplexity",
                )
                callback(event)
    return total_nll


def _window_nll(model: nn.Module, input_ids: torch.Tensor) -> float:
    """Return the summed NLL (nats) of tokens 1..T-1 of one window [1, T] given their prefixes."""
    logits = model(input_ids=input_ids, use_cache=False).logits  # [1, T, V]
    vocab_size = logits.shape[-1]
    shifted_logits = logits[:, :-1, :].float().reshape(-1, vocab_size)  # [T-1, V]
    targets = input_ids[:, 1:].reshape(-1)  # [T-1]
    token_nll = F.cross_entropy(shifted_logits, targets, reduction="none")  # [T-1], float32
    return token_nll.double().sum().item()


def _synchronize(device: torch.device) -> None:
    # NOTE: the tests run on CPU only, so this accelerator branch has not run under test.
    if device.type != "cpu":
        torch.accelerator.synchronize(device)
