"""The stale-job reaper: requeues or fails jobs of dead workers and resends lost messages.

It runs in the API process every ``reaper_interval_s``, once when a worker starts, and from
``ruquant-service reap``. Every change is a compare-and-set in the store, so several reapers at
once do no harm.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from service.context import store_from_settings
from service.jobs.dispatch import dispatch
from service.jobs.store import JobStore, ReapResult
from service.settings import Settings
from worker.celery_app import make_celery
from worker.dispatcher import CeleryDispatcher

__all__ = ["reap_once"]

logger = logging.getLogger(__name__)


def reap_once(
    settings: Settings,
    *,
    store: JobStore | None = None,
    dispatcher: CeleryDispatcher | None = None,
) -> ReapResult:
    """Run one reaper pass and return what it changed."""
    store = store or store_from_settings(settings)
    if dispatcher is None:
        dispatcher = CeleryDispatcher(
            make_celery(settings), remote_control=settings.broker_is_redis
        )
    result = store.reap(
        stale_after=timedelta(seconds=settings.heartbeat_stale_s),
        cancel_grace=timedelta(seconds=settings.cancel_grace_s),
        max_lost_runs=settings.max_lost_runs,
    )
    for job_id in result.failed:
        logger.warning(
            "job failed: its worker stopped sending heartbeats", extra={"job_id": job_id}
        )
    for job_id, task_id in result.cancelled:
        if task_id is None:
            continue
        # The cooperative stop did not happen within the grace period: kill the child.
        if dispatcher.terminate(task_id):
            logger.warning(
                "task %s revoked with terminate after an ignored cancel",
                task_id,
                extra={"job_id": job_id},
            )
        else:
            logger.warning(
                "cancel ignored and the broker has no remote control; the worker "
                "stops at its next progress event",
                extra={"job_id": job_id},
            )
    resend = [*result.requeued]
    resend += store.undispatched(older_than=timedelta(seconds=settings.redispatch_after_s))
    for job_id in dict.fromkeys(resend):
        if dispatch(store, dispatcher, job_id):
            logger.info("job message sent again", extra={"job_id": job_id})
    return result
