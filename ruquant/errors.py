"""Exceptions raised for bad input and failed checks, each with a message that states the next step."""

from __future__ import annotations

__all__ = [
    "BlockSizeError",
    "DataError",
    "InvarianceError",
    "ModelLoadError",
    "NonFiniteError",
    "RUQuantError",
    "UnsupportedArchitectureError",
]


class RUQuantError(Exception):
    """Base class of every error the library raises on purpose."""

    code = "ruquant_error"


class UnsupportedArchitectureError(RUQuantError):
    """The model class has no architecture mapping."""

    code = "unsupported_architecture"


class BlockSizeError(RUQuantError, ValueError):
    """The block size does not divide every transformed width."""

    code = "block_size"


class DataError(RUQuantError, ValueError):
    """Calibration or evaluation data is missing or too short."""

    code = "data"


class ModelLoadError(RUQuantError):
    """The model path or repository cannot be loaded."""

    code = "model_load"


class NonFiniteError(RUQuantError):
    """A layer produced NaN or inf."""

    code = "non_finite"


class InvarianceError(RUQuantError):
    """The transforms changed a layer's output without any quantization."""

    code = "invariance"
