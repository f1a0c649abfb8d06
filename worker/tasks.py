"""The Celery task: takes a job id only, runs the pipeline, retries transient Hub errors."""

from __future__ import annotations

import logging

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded

from service.context import store_from_settings
from service.db.models import utcnow
from service.jobs.states import JobState
from service.logging import job_context
from service.settings import get_settings
from worker import pipeline
from worker.celery_app import TASK_NAME
from worker.errors import TransientError

__all__ = ["register_tasks"]

logger = logging.getLogger(__name__)


def _run(task: Task, job_id: str) -> None:
    settings = get_settings()
    store = store_from_settings(settings)
    try:
        pipeline.run_job(
            job_id,
            settings=settings,
            store=store,
            worker=str(task.request.hostname),
            task_id=task.request.id,
            stages=pipeline.DEFAULT_STAGES,
        )
    except TransientError as error:
        retries = int(task.request.retries)
        if retries >= settings.hub_retry_max:
            logger.error("job failed after %d retries: %s", retries, error)
            store.transition(
                job_id,
                JobState.FAILED,
                reason="hub_unavailable",
                error_code="hub_unavailable",
                error_message=f"{error}; gave up after {retries} retries, submit the job later.",
            )
            return
        delay = settings.hub_retry_backoff_s * 2**retries
        logger.warning(
            "transient error, retry %d of %d in %.0f s: %s",
            retries + 1,
            settings.hub_retry_max,
            delay,
            error,
        )
        store.transition(
            job_id,
            JobState.QUEUED,
            reason=f"retry {retries + 1} in {delay:.0f} s: {error}",
            dispatched_at=utcnow(),
        )
        raise task.retry(countdown=delay, max_retries=settings.hub_retry_max, exc=error) from error
    except SoftTimeLimitExceeded:
        limit = settings.job_soft_time_limit_s
        logger.error("job stopped at the soft time limit of %d s", limit)
        store.transition(
            job_id,
            JobState.FAILED,
            reason="time_limit",
            error_code="time_limit",
            error_message=f"The job ran longer than {limit} s; use a smaller model or "
            "calibration set, or ask the operator to raise the limit.",
        )
    except Exception as error:  # noqa: BLE001 - any bug must end the job, not leave it running
        logger.exception("job failed with an unexpected error")
        store.transition(
            job_id,
            JobState.FAILED,
            reason="internal_error",
            error_code="internal_error",
            error_message=f"Internal error ({type(error).__name__}); the operator has the log.",
        )


def register_tasks(app: Celery) -> None:
    """Register the job task on ``app``."""

    @app.task(name=TASK_NAME, bind=True)
    def run_job(self: Task, job_id: str) -> None:
        # A job child runs one job, so threads that libraries start log this job's id too.
        with job_context(job_id, process_wide=True):
            _run(self, job_id)
