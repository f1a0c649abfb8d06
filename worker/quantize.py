"""The one call into the quantization library, imported lazily to keep torch out of the parent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ruquant.config import RunConfig
from ruquant.progress import ProgressCallback, StopCheck

__all__ = ["QuantizeFn", "run_quantization_step"]


class QuantizeFn(Protocol):
    """Signature of ``ruquant.runner.run_quantization``."""

    def __call__(
        self,
        model_dir: Path,
        output_dir: Path,
        run_config: RunConfig,
        *,
        progress: ProgressCallback,
        should_stop: StopCheck,
        log_context: dict[str, Any],
    ) -> dict[str, Any]:
        """Quantize, evaluate, save and verify the model; return the report."""


def run_quantization_step(
    model_dir: Path,
    output_dir: Path,
    run_config: RunConfig,
    *,
    progress: ProgressCallback,
    should_stop: StopCheck,
    log_context: dict[str, Any],
) -> dict[str, Any]:
    """Run ``ruquant.runner.run_quantization``, importing torch only in the job's child process."""
    from ruquant.runner import run_quantization  # type: ignore[import-not-found]

    report: dict[str, Any] = run_quantization(
        model_dir,
        output_dir,
        run_config,
        progress=progress,
        should_stop=should_stop,
        log_context=log_context,
    )
    return report
