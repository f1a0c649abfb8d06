"""Server-sent events of a job's progress, polled from the store until the job ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from anyio import to_thread
from starlette.requests import Request

from api.schemas import job_public
from service.db.models import Job
from service.jobs.states import FINAL_STATES, JobState

__all__ = ["job_events"]


def _frame(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def job_events(
    request: Request,
    load: Callable[[], Job | None],
    *,
    poll_s: float = 1.0,
    keepalive_s: float = 15.0,
) -> AsyncIterator[str]:
    """Yield a ``job`` event whenever the job changes and an ``end`` event at a final state.

    Comments (``: keepalive``) keep proxies from closing an idle stream; the loop also stops
    when the client disconnects or the job disappears.
    """
    last_update = None
    idle = 0.0
    while True:
        job = await to_thread.run_sync(load)
        if job is None:
            yield _frame("end", json.dumps({"state": None}))
            return
        if job.updated_at != last_update:
            last_update = job.updated_at
            idle = 0.0
            yield _frame("job", job_public(job).model_dump_json())
        if JobState(job.state) in FINAL_STATES:
            yield _frame("end", json.dumps({"state": job.state}))
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll_s)
        idle += poll_s
        if idle >= keepalive_s:
            idle = 0.0
            yield ": keepalive\n\n"
