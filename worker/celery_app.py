"""Celery application shared by the API (to send) and the worker (to run).

Delivery design for multi-hour GPU jobs:

* One job per worker process and GPU: ``worker_concurrency=1``, ``worker_prefetch_multiplier=1``
  (and ``worker_disable_prefetch`` on Redis, so a busy worker reserves nothing behind its job),
  and ``worker_max_tasks_per_child=1`` so every job runs in a fresh child and its GPU memory is
  returned to the driver when the child exits.
* Late acknowledgement (``task_acks_late=True``), with ``task_reject_on_worker_lost=False``: the
  message of a job whose child was killed (SIGKILL, OOM) is acknowledged, not redelivered.
  Recovery goes through the job store instead: the job's heartbeat stops, and the reaper requeues
  or fails it. Redis's ``visibility_timeout`` is set above the hard time limit, so Redis never
  hands a running job to a second worker. Redelivery cannot double-run a job anyway, because a
  run starts with an atomic claim of a ``queued`` job in the store.
* The embedded broker (kombu's SQLAlchemy transport on SQLite) has no visibility timeout and no
  remote control; the store-based recovery above covers the first, and cancellation does not
  depend on the second.

This module does not import the task code or torch; the API imports it only to send messages.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from service.settings import Settings

__all__ = ["QUEUE", "TASK_NAME", "make_celery", "task_id_for"]

TASK_NAME = "ruquant.run_job"
QUEUE = "ruquant"
# Margin of the Redis visibility timeout over the hard time limit of one job.
_VISIBILITY_MARGIN_S = 3600


def task_id_for(job_id: str, attempt: int) -> str:
    """Return the Celery task id of a job's run number ``attempt`` (a new id per dispatch)."""
    return f"{job_id}-{attempt}"


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_is_redis:
        return {"visibility_timeout": settings.job_hard_time_limit_s + _VISIBILITY_MARGIN_S}
    # kombu's SQLAlchemy transport passes its options to create_engine(); the timeout makes a
    # writer wait for SQLite's file lock instead of failing at once.
    return {"connect_args": {"timeout": 30}}


def make_celery(settings: Settings) -> Celery:
    """Create the Celery app for ``settings`` (broker, queue, limits, delivery options)."""
    if settings.broker_url is None:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("ruquant", broker=settings.resolved_broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_routes={TASK_NAME: {"queue": QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_hard_time_limit_s,
        worker_concurrency=1,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=settings.broker_is_redis,
        worker_max_tasks_per_child=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=_transport_options(settings),
        broker_connection_timeout=5,
    )
    return app
