"""Submitting a job: store it (idempotently) and send its message."""

from __future__ import annotations

from service.db.models import Job
from service.jobs.datasets import UnknownDatasetError, unknown_datasets
from service.jobs.dispatch import Dispatcher, dispatch
from service.jobs.request import JobRequest
from service.jobs.store import JobStore

__all__ = ["submit_job"]


def submit_job(
    store: JobStore,
    dispatcher: Dispatcher,
    owner_key_id: str,
    request: JobRequest,
    *,
    idempotency_key: str | None,
    max_active: int,
    offered_datasets: frozenset[str],
) -> tuple[Job, bool]:
    """Store the job and send it to the workers; return ``(job, created)``.

    A replayed idempotent submission returns the stored job and sends nothing, unless its first
    send failed, in which case it is sent now. Raises :class:`UnknownDatasetError` before
    storing anything when the request names data the service does not offer.
    """
    unknown = unknown_datasets(request, offered_datasets)
    if unknown:
        raise UnknownDatasetError(unknown)
    token = request.hub_token.get_secret_value() if request.hub_token is not None else None
    job, created = store.create(
        owner_key_id,
        request,
        idempotency_key=idempotency_key,
        token=token,
        max_active=max_active,
    )
    if created or (job.state == "queued" and job.dispatched_at is None):
        dispatch(store, dispatcher, job.id)
    return store.get(job.id) or job, created
