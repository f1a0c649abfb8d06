"""Errors of checkpoint writing, reading and verification."""

from __future__ import annotations

from ruquant.errors import RUQuantError

__all__ = ["CheckpointError", "CheckpointVerificationError"]


class CheckpointError(RUQuantError, ValueError):
    """A checkpoint file is missing, truncated, corrupted or in an unsupported format.

    The message names the file and, where one is involved, the tensor.
    """

    code = "checkpoint"


class CheckpointVerificationError(RUQuantError):
    """The reloaded checkpoint does not reproduce the in-memory quantized model."""

    code = "checkpoint_verification"
