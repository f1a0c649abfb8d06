"""Sending jobs to the broker; the store records which messages were sent."""

from __future__ import annotations

import logging
from typing import Protocol

from service.jobs.store import JobStore

__all__ = ["Dispatcher", "dispatch"]

logger = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Sends one job's message to the worker queue."""

    def send(self, job_id: str, attempt: int) -> None:
        """Send the message of ``job_id``'s run ``attempt``; raise when the broker rejects it."""


def dispatch(store: JobStore, dispatcher: Dispatcher, job_id: str) -> bool:
    """Send a queued job's message and record it; return whether the broker took it.

    A failure is logged and left for the reaper, which resends undispatched jobs.
    """
    job = store.get(job_id)
    if job is None:
        return False
    try:
        dispatcher.send(job_id, job.attempt + 1)
    except Exception:  # noqa: BLE001 - any broker failure leaves the job queued for a resend
        logger.exception(
            "broker did not accept the job message; the reaper will resend it",
            extra={"job_id": job_id},
        )
        return False
    store.mark_dispatched(job_id)
    return True
