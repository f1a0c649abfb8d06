"""Named calibration and evaluation data: the names a service offers and the files behind them.

A job request names its data (``wikitext2`` or a name from ``RUQUANT_DATASETS``). The API rejects
names the service does not offer, and the worker swaps each configured name for its file path
just before it calls the library.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruquant.config import RunConfig
from service.jobs.request import JobRequest
from service.settings import Settings

__all__ = ["UnknownDataset", "UnknownDatasetError", "resolve_datasets", "unknown_datasets"]


@dataclass(frozen=True)
class UnknownDataset:
    """A data name the service does not offer, with the request field that gave it."""

    field: tuple[str, str]
    message: str


class UnknownDatasetError(Exception):
    """The request names data sets the service does not offer."""

    def __init__(self, unknown: list[UnknownDataset]) -> None:
        super().__init__("; ".join(f"{'.'.join(u.field)}: {u.message}" for u in unknown))
        self.unknown = unknown


def unknown_datasets(request: JobRequest, offered: frozenset[str]) -> list[UnknownDataset]:
    """Return one entry for each calibration or evaluation data name not in ``offered``."""
    given = {"calibration": request.calibration.data}
    if request.evaluation is not None:
        given["evaluation"] = request.evaluation.data
    return [
        UnknownDataset(
            field=(section, "data"),
            message=f"data set {name!r} is not offered by this service: use one of "
            f"{sorted(offered)}",
        )
        for section, name in given.items()
        if name not in offered
    ]


def resolve_datasets(run_config: RunConfig, settings: Settings) -> RunConfig:
    """Return ``run_config`` with each configured data set name replaced by its file path.

    ``wikitext2`` stays a name, because the library resolves it itself.
    """
    calibration = run_config.calibration
    if calibration.data in settings.datasets:
        calibration = calibration.model_copy(
            update={"data": str(settings.datasets[calibration.data])}
        )
    evaluation = run_config.evaluation
    if evaluation is not None and evaluation.data in settings.datasets:
        evaluation = evaluation.model_copy(update={"data": str(settings.datasets[evaluation.data])})
    return run_config.model_copy(update={"calibration": calibration, "evaluation": evaluation})
