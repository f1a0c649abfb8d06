"""Reload a saved checkpoint with transformers and check it reproduces the model in memory.

Both models run the same token windows, and the check compares the logits by relative Frobenius
error ||loaded - in_memory|| / ||in_memory|| and the summed token NLL. The loaded model runs the
``dequantize`` kernel, which repeats the in-memory model's operations on the same values (after
``round_float_tensors``), so on one device the two agree to the last bit. The check is about
the saved tensors, not the kernel: the integer kernel reorders float sums.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ruquant.export.errors import CheckpointVerificationError

__all__ = ["LOGITS_TOLERANCE", "VerificationResult", "load_checkpoint", "logits_tolerance", "verify_checkpoint"]

logger = logging.getLogger(__name__)

# Relative logits error allowed per model dtype. The dequantize kernel reproduces the in-memory
# model exactly on one device (observed 0.0 for every tiny model and SmolLM2-135M on CPU, float32).
# The bounds leave room for reordered float sums on other devices, where an activation on a
# rounding boundary moves one quantization step.
LOGITS_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 2e-2,
}


def logits_tolerance(dtype: torch.dtype) -> float:
    """Return the relative logits tolerance for a model dtype (the float32 bound for unknown ones)."""
    return LOGITS_TOLERANCE.get(dtype, LOGITS_TOLERANCE[torch.float32])


@dataclass
class VerificationResult:
    """Outcome of one reload check."""

    passed: bool
    logits_rel_error: float
    max_abs_error: float
    tolerance: float
    nll_in_memory: float
    nll_loaded: float
    nll_rel_error: float
    windows: int
    seq_len: int
    dtype: str
    device: str
    kernel: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable dict."""
        return asdict(self)


def _window_nll(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """Return the summed NLL of tokens 1..T-1 of ``ids`` ([1, T]) given ``logits`` ([1, T, V])."""
    shifted = logits[:, :-1, :].float().reshape(-1, logits.shape[-1])  # [T-1, V]
    return float(F.cross_entropy(shifted, ids[:, 1:].reshape(-1), reduction="sum").double())


def load_checkpoint(folder: Path, dtype: torch.dtype) -> nn.Module:
    """Load a ruquant checkpoint folder with ``AutoModelForCausalLM.from_pretrained`` in ``dtype``."""
    from transformers import AutoModelForCausalLM

    from ruquant.integration.registration import register

    register()
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).eval()


@torch.no_grad()
def verify_checkpoint(
    model: nn.Module,
    folder: str | Path,
    input_ids: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
    tolerance: float | None = None,
    raise_on_failure: bool = True,
) -> VerificationResult:
    """Load ``folder`` and compare it with ``model`` on ``input_ids`` ([N, T]) window by window.

    ``model`` is moved to ``device`` for the check and back to its device afterwards. Raises
    ``CheckpointVerificationError`` when the logits or the NLL differ by more than
    ``tolerance`` (default ``logits_tolerance(model dtype)``) unless ``raise_on_failure`` is False.
    """
    started = time.perf_counter()
    device = torch.device(device)
    dtype = next(model.parameters()).dtype
    tolerance = logits_tolerance(dtype) if tolerance is None else tolerance
    home = next(model.parameters()).device
    from ruquant.integration.skeleton import set_kernel

    loaded = load_checkpoint(Path(folder), dtype).to(device)
    set_kernel(loaded, "dequantize")
    model.to(device)
    diff_sq = base_sq = 0.0
    max_abs = 0.0
    nll_memory = nll_loaded = 0.0
    try:
        for window in input_ids:
            ids = window.unsqueeze(0).to(device)  # [1, T]
            expected = model(input_ids=ids, use_cache=False).logits
            actual = loaded(input_ids=ids, use_cache=False).logits
            delta = (actual.double() - expected.double())
            diff_sq += float(delta.pow(2).sum())
            base_sq += float(expected.double().pow(2).sum())
            max_abs = max(max_abs, float(delta.abs().max()))
            nll_memory += _window_nll(expected, ids)
            nll_loaded += _window_nll(actual, ids)
        kernels = {getattr(module, "kernel", None) for module in loaded.modules()} - {None}
    finally:
        model.to(home)
        del loaded
        gc.collect()
    rel = (diff_sq / max(base_sq, 1e-300)) ** 0.5
    nll_rel = abs(nll_loaded - nll_memory) / max(abs(nll_memory), 1e-300)
    result = VerificationResult(
        passed=rel <= tolerance and nll_rel <= tolerance,
        logits_rel_error=rel,
        max_abs_error=max_abs,
        tolerance=tolerance,
        nll_in_memory=nll_memory,
        nll_loaded=nll_loaded,
        nll_rel_error=nll_rel,
        windows=int(input_ids.shape[0]),
        seq_len=int(input_ids.shape[1]),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        kernel=",".join(sorted(str(kernel) for kernel in kernels)),
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "checkpoint check %s: logits rel error %.3e (tolerance %.1e), NLL %.6f vs %.6f, %d windows",
        "passed" if result.passed else "FAILED", rel, tolerance, nll_loaded, nll_memory, result.windows,
    )
    if not result.passed and raise_on_failure:
        raise CheckpointVerificationError(
            f"the checkpoint in {folder} does not reproduce the quantized model: relative logits error "
            f"{rel:.3e} and NLL relative error {nll_rel:.3e} against a tolerance of {tolerance:.1e} "
            f"({result.windows} windows of {result.seq_len} tokens, {result.dtype} on {device})"
        )
    return result
