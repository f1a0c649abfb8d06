"""Progress events and cooperative cancellation shared by the library, the CLI and the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ruquant.errors import RUQuantError

__all__ = ["Cancelled", "ProgressCallback", "ProgressEvent", "StopCheck"]


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long run.

    ``stage`` is one of ``loading``, ``calibrating``, ``evaluating``, ``saving``, ``verifying``.
    ``step`` counts from 1 to ``total`` inside a stage (layers while calibrating, windows while
    evaluating); ``fraction`` is the whole run's completed share in [0, 1].
    """

    stage: str
    step: int
    total: int
    fraction: float
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-serializable dict."""
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]
StopCheck = Callable[[], bool]


class Cancelled(RUQuantError):
    """The caller's stop check asked the run to stop; raised between layers or windows."""

    code = "cancelled"
