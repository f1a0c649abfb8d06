"""CPU quick protocol v1: the fixed model, data and settings every benchmark record uses.

SmolLM2-135M in float32 on CPU. Calibration: 32 windows of 2048 tokens drawn at random (seed 444)
from the WikiText-2 validation text. Evaluation: the first 40 non-overlapping 2048-token windows
of the WikiText-2 test string (rows joined with blank lines), or all 148 with ``full=True``.
Block size 64 (576 is not a multiple of 128). Keep these values fixed so numbers stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from ruquant.calibration.data import (
    CalibrationData,
    EvaluationText,
    load_calibration_windows,
    load_evaluation_text,
)
from ruquant.config import EvaluationConfig
from ruquant.models.loading import load_model

__all__ = ["PROTOCOL_NAME", "Protocol"]

PROTOCOL_NAME = "quick-v1"


@dataclass
class Protocol:
    """Settings of one benchmark session; the defaults are protocol v1."""

    model: str = "smollm2-135m"
    calibration_samples: int = 32
    seq_len: int = 2048
    calibration_seed: int = 444
    eval_windows: int | None = 40
    block_size: int = 64
    full: bool = False

    @property
    def name(self) -> str:
        """Protocol name recorded with each result (``quick-v1`` or ``quick-v1-full``)."""
        return PROTOCOL_NAME + ("-full" if self.full else "")

    @property
    def evaluation(self) -> EvaluationConfig:
        """Evaluation settings: 40 windows, or every window with ``full``."""
        return EvaluationConfig(seq_len=self.seq_len, windows=None if self.full else self.eval_windows)

    def load(self) -> tuple[torch.nn.Module, object]:
        """Load a fresh float32 copy of the model and its tokenizer."""
        return load_model(self.model, dtype=torch.float32)

    @cached_property
    def tokenizer(self) -> object:
        """Tokenizer of the benchmark model (loaded once)."""
        return self.load()[1]

    @cached_property
    def calibration(self) -> CalibrationData:
        """The calibration windows (drawn once)."""
        return load_calibration_windows(
            self.tokenizer, "wikitext2", num_samples=self.calibration_samples, seq_len=self.seq_len, seed=self.calibration_seed
        )

    @cached_property
    def evaluation_text(self) -> EvaluationText:
        """The WikiText-2 test string (read once)."""
        return load_evaluation_text("wikitext2")
