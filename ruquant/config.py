"""Validated configuration objects for a quantization run.

This module imports pydantic only (never torch), so the API process can validate job requests
with the same models the library runs on.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "FLOAT_BITS",
    "PRESETS",
    "CalibrationConfig",
    "EvaluationConfig",
    "GivensConvention",
    "Method",
    "QuantConfig",
    "RunConfig",
    "default_clip_ratio",
]

CONFIG_VERSION = 1

# A bit width of 16 means "keep this tensor in floating point" (the A16 of W4A16).
FLOAT_BITS = 16
MIN_BITS = 2
MAX_BITS = 8

PRESETS: dict[str, tuple[int, int]] = {
    "W4A4": (4, 4),
    "W6A6": (6, 6),
    "W8A8": (8, 8),
    "W4A16": (4, 16),
}


class Method(str, Enum):
    """Transform applied at each activation site before quantization."""

    RTN = "rtn"
    SMOOTHQUANT = "smoothquant"
    HADAMARD = "hadamard"
    DUQUANT = "duquant"
    RUQUANT = "ruquant"


class GivensConvention(str, Enum):
    """Sign layout of the 2x2 Givens rotations in the RUQuant greedy search.

    ``reference`` rotates each coordinate pair by the negative of the angle to its target, as the
    published reference code does (its perplexities come from this layout). ``exact`` rotates by
    the angle itself, so the pair lands on the target.
    """

    REFERENCE = "reference"
    EXACT = "exact"


def default_clip_ratio(bits: int, *, weights: bool) -> float:
    """Return the published min-max clip ratio for a bit width (0.8 weights / 0.9 activations at 4 bits)."""
    if bits <= 4:
        return 0.8 if weights else 0.9
    return 1.0


def _check_bits(value: int, name: str) -> int:
    if value != FLOAT_BITS and not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(
            f"{name}={value} is not supported: use an integer from {MIN_BITS} to {MAX_BITS}, "
            f"or {FLOAT_BITS} to keep the tensor in floating point"
        )
    return value


class QuantConfig(BaseModel):
    """Method and quantizer settings; defaults are the published RUQuant hyper-parameters."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False, frozen=True)

    version: Literal[1] = CONFIG_VERSION
    method: Method = Method.RUQUANT
    w_bits: int = Field(4, description="Weight bit width (2-8, or 16 for float weights).")
    a_bits: int = Field(4, description="Activation bit width (2-8, or 16 for float activations).")
    w_clip_ratio: float | None = Field(
        None, gt=0.0, le=1.0, description="Weight min-max clip ratio; default 0.8 at <=4 bits, else 1.0."
    )
    a_clip_ratio: float | None = Field(
        None, gt=0.0, le=1.0, description="Activation clip ratio; default 0.9 at <=4 bits, else 1.0."
    )
    block_size: int | Literal["auto"] = Field(
        "auto",
        description="Width B of the block transforms; 'auto' picks the largest power of two up to "
        "128 that divides every transformed width.",
    )
    smooth_alpha: float = Field(0.6, ge=0.0, le=1.0, description="SmoothQuant migration strength.")
    greedy_steps: int = Field(16, ge=1, le=1024, description="Householder steps K per block transform.")
    givens_rounds: int = Field(3, ge=0, le=64, description="Givens rounds lambda after each Householder step.")
    givens_convention: GivensConvention = GivensConvention.REFERENCE
    duquant_max_steps: int = Field(256, ge=1, le=4096, description="Greedy steps of the duquant method.")
    stage2: bool = Field(False, description="Train the global Householder vectors (RUQuant only).")
    stage2_epochs: int = Field(20, ge=1, le=1000)
    stage2_lr: float = Field(1e-2, gt=0.0, le=1.0)
    stage2_token_chunk: int = Field(
        256,
        ge=0,
        description="Tokens per MLP forward and backward pass in stage 2, which bounds the memory the "
        "MLP half of a step keeps for autograd; 0 runs each window's MLP in one pass.",
    )
    seed: int = Field(444, ge=0, description="Seed of every random draw of the transform search.")

    @field_validator("w_bits")
    @classmethod
    def _check_w_bits(cls, value: int) -> int:
        return _check_bits(value, "w_bits")

    @field_validator("a_bits")
    @classmethod
    def _check_a_bits(cls, value: int) -> int:
        return _check_bits(value, "a_bits")

    @field_validator("block_size")
    @classmethod
    def _check_block_size(cls, value: int | str) -> int | str:
        if value == "auto":
            return value
        if not isinstance(value, int) or value < 2 or value & (value - 1):
            raise ValueError(f"block_size={value!r} must be 'auto' or a power of two >= 2")
        return value

    @model_validator(mode="after")
    def _check_stage2(self) -> QuantConfig:
        if self.stage2 and self.method is not Method.RUQUANT:
            raise ValueError(f"stage2 applies to method 'ruquant' only, not {self.method.value!r}")
        if self.w_bits == FLOAT_BITS and self.a_bits == FLOAT_BITS:
            raise ValueError("w_bits and a_bits are both 16: nothing would be quantized")
        return self

    @property
    def resolved_w_clip_ratio(self) -> float:
        """Weight clip ratio in effect (explicit value or the published default)."""
        if self.w_clip_ratio is not None:
            return self.w_clip_ratio
        return default_clip_ratio(self.w_bits, weights=True)

    @property
    def resolved_a_clip_ratio(self) -> float:
        """Activation clip ratio in effect (explicit value or the published default)."""
        if self.a_clip_ratio is not None:
            return self.a_clip_ratio
        return default_clip_ratio(self.a_bits, weights=False)

    @property
    def preset(self) -> str:
        """Bit preset name such as ``W4A4``."""
        return f"W{self.w_bits}A{self.a_bits}"


class CalibrationConfig(BaseModel):
    """Calibration data: random windows of ``seq_len`` tokens drawn with ``seed``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(
        "wikitext2",
        description="'wikitext2', a text file, or a folder holding the WikiText-2 files.",
    )
    samples: int = Field(128, ge=1, le=4096)
    seq_len: int = Field(2048, ge=16, le=32768)
    seed: int = Field(444, ge=0)


class EvaluationConfig(BaseModel):
    """Perplexity evaluation on non-overlapping windows of the test text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field("wikitext2", description="'wikitext2', a text file, or a WikiText-2 folder.")
    seq_len: int = Field(2048, ge=16, le=32768)
    windows: int | None = Field(None, ge=1, description="Evaluate the first N windows; None means all.")


class RunConfig(BaseModel):
    """Everything one ``ruquant quantize`` run needs besides the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quant: QuantConfig = QuantConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    evaluation: EvaluationConfig | None = EvaluationConfig()
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Storage dtype of the model; 'auto' is bfloat16 on CUDA, float32 on CPU."
    )
