"""Figure files of a job's report, kept in the job store after the job's own files are deleted.

Only PNG files are kept: the web page serves them from the service's origin, where an SVG file
could run scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.db.models import Job, JobFigure
from service.jobs.store import JobStore

__all__ = ["MAX_FIGURE_BYTES", "figure_files", "figure_names", "load_figure", "save_figures"]

# Larger files are left out (the library's figures are tens of kilobytes).
MAX_FIGURE_BYTES = 4 * 1024**2
_MEDIA_TYPE = "image/png"


def figure_files(report: dict[str, Any] | None) -> list[str]:
    """Return the PNG file names the report lists under ``figures``, in the report's order."""
    figures = (report or {}).get("figures")
    if not isinstance(figures, dict):
        return []
    names = [value for value in figures.values() if isinstance(value, str)]
    return [name for name in dict.fromkeys(names) if name.endswith(".png") and "/" not in name]


def save_figures(store: JobStore, job_id: str, folder: Path, names: list[str]) -> list[str]:
    """Store the files ``names`` of ``folder`` for the job; return the names stored.

    Missing files and files above ``MAX_FIGURE_BYTES`` are skipped. Saving again replaces them.
    """
    saved = {}
    for name in names:
        path = folder / name
        if path.is_file() and path.stat().st_size <= MAX_FIGURE_BYTES:
            saved[name] = path.read_bytes()
    with store.session() as session:
        for name, content in saved.items():
            session.merge(
                JobFigure(job_id=job_id, name=name, media_type=_MEDIA_TYPE, content=content)
            )
    return list(saved)


def figure_names(store: JobStore, job_id: str) -> list[str]:
    """Return the names of the figures stored for the job, sorted."""
    with store.session() as session:
        return list(
            session.scalars(
                select(JobFigure.name).where(JobFigure.job_id == job_id).order_by(JobFigure.name)
            )
        )


def load_figure(store: JobStore, job_id: str, name: str, *, owner_key_id: str) -> JobFigure | None:
    """Return the owner's job figure ``name``, or ``None``."""
    with store.session() as session:
        return session.scalar(
            select(JobFigure)
            .join(Job, Job.id == JobFigure.job_id)
            .where(
                JobFigure.job_id == job_id,
                JobFigure.name == name,
                Job.owner_key_id == owner_key_id,
            )
        )
