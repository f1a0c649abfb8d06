"""``ruquant-worker``: start a Celery worker set up for one GPU job at a time."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Start the worker; extra arguments go to ``celery worker`` (e.g. ``--hostname``)."""
    from worker.app import app
    from worker.celery_app import QUEUE

    args = ["worker", "--pool=prefork", "--concurrency=1", f"--queues={QUEUE}", "--loglevel=INFO"]
    app.worker_main([*args, *(sys.argv[1:] if argv is None else argv)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
