"""The Celery implementation of the job dispatcher (sends only the job id)."""

from __future__ import annotations

from celery import Celery

from worker.celery_app import QUEUE, TASK_NAME, task_id_for

__all__ = ["CeleryDispatcher"]


class CeleryDispatcher:
    """Send job messages and revoke running tasks through one Celery app."""

    def __init__(self, app: Celery, *, remote_control: bool) -> None:
        self._app = app
        self._remote_control = remote_control

    def send(self, job_id: str, attempt: int) -> None:
        """Publish the task for ``job_id``; the message body carries the job id alone."""
        self._app.send_task(
            TASK_NAME,
            args=[job_id],
            task_id=task_id_for(job_id, attempt),
            queue=QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.5},
        )

    def terminate(self, task_id: str) -> bool:
        """Ask workers to kill the child running ``task_id``; False when the broker cannot."""
        if not self._remote_control:
            return False
        self._app.control.revoke(task_id, terminate=True, signal="SIGKILL")
        return True
