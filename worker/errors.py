"""Errors that end or retry a job, each with a machine-readable code."""

from __future__ import annotations

__all__ = ["JobError", "TransientError"]


class JobError(Exception):
    """A job failure the client can act on: ``code`` is stable, ``message`` states the next step."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TransientError(Exception):
    """A Hub or network failure worth retrying later (timeouts, 429, 5xx)."""
