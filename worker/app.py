"""The worker's Celery app: ``celery -A worker.app worker`` (or ``ruquant-worker``) loads this.

Signals: logging is configured with the job-id format; when the worker is ready it runs one
reaper pass (jobs of a worker that died before this restart are requeued or failed); each new
child process drops database connections inherited from the parent.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, worker_process_init, worker_ready

from service.db.engine import session_factory_for
from service.logging import configure_logging, register_secret
from service.settings import get_settings
from worker.celery_app import make_celery
from worker.tasks import register_tasks

__all__ = ["app"]

logger = logging.getLogger(__name__)

_settings = get_settings()
if _settings.hub_token is not None:
    register_secret(_settings.hub_token.get_secret_value())

app = make_celery(_settings)
register_tasks(app)


@setup_logging.connect
def _setup_logging(**_: Any) -> None:
    configure_logging()


@worker_process_init.connect
def _fresh_connections(**_: Any) -> None:
    # A forked child must not reuse the parent's pooled database connections.
    session_factory_for.cache_clear()


@worker_ready.connect
def _reap_on_start(**_: Any) -> None:
    from worker.reaper import reap_once

    try:
        result = reap_once(_settings)
    except Exception:  # noqa: BLE001 - the worker still serves jobs if this pass fails
        logger.exception("reaper pass at worker start failed")
        return
    logger.info(
        "reaper at start: %d requeued, %d failed, %d cancelled",
        len(result.requeued),
        len(result.failed),
        len(result.cancelled),
    )
