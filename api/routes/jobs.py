"""``/v1/jobs``: submit, read, list, cancel, report and progress events. HTTP handling only."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from api.deps import CurrentKey, DispatcherDep, SettingsDep, StoreDep
from api.events import job_events
from api.schemas import ErrorPublic, JobPage, JobPublic, job_public
from service.db.models import Job
from service.jobs.datasets import UnknownDatasetError
from service.jobs.figures import load_figure
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from service.jobs.store import (
    IdempotencyConflictError,
    JobFinishedError,
    JobStore,
    QuotaExceededError,
)
from service.jobs.submit import submit_job

__all__ = ["router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No such job for this API key."}
}
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorPublic, "description": "Missing or invalid API key."}
}


def _own_job(store: JobStore, job_id: str, owner_key_id: str) -> Job:
    job = store.get(job_id, owner_key_id=owner_key_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    return job


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    summary="Submit a quantization job",
    responses={
        200: {"model": JobPublic, "description": "Replay of an earlier idempotent submission."},
        409: {"model": ErrorPublic, "description": "Idempotency-Key reused with another body."},
        429: {"model": ErrorPublic, "description": "Too many queued or running jobs."},
        **_AUTH,
    },
)
def create_job(
    body: JobRequest,
    key: CurrentKey,
    store: StoreDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="Same key and body return the same job; another body gets 409.",
            examples=["nightly-2026-01-05-smollm2-w4a4"],
        ),
    ] = None,
) -> JobPublic:
    """Validate and queue a job; the worker picks it up in submission order."""
    try:
        job, created = submit_job(
            store,
            dispatcher,
            key.id,
            body,
            idempotency_key=idempotency_key,
            max_active=settings.max_active_jobs_per_key,
            offered_datasets=settings.dataset_names,
        )
    except UnknownDatasetError as error:
        raise RequestValidationError(
            [
                {"loc": ("body", *unknown.field), "msg": unknown.message, "type": "value_error"}
                for unknown in error.unknown
            ]
        ) from error
    except IdempotencyConflictError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
    except QuotaExceededError as error:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=str(error)) from error
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job_public(job)


@router.get("", response_model=JobPage, summary="List your jobs", responses={**_AUTH})
def list_jobs(
    key: CurrentKey,
    store: StoreDep,
    settings: SettingsDep,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    limit: Annotated[int, Query(ge=1, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, description="Jobs to skip.")] = 0,
) -> JobPage:
    """Return the caller's jobs, newest first."""
    limit = min(limit, settings.page_size_max)
    jobs, total = store.list_jobs(key.id, state=state, limit=limit, offset=offset)
    return JobPage(items=[job_public(j) for j in jobs], total=total, limit=limit, offset=offset)


@router.get(
    "/{job_id}", response_model=JobPublic, summary="Read one job", responses={**_NOT_FOUND, **_AUTH}
)
def read_job(job_id: str, key: CurrentKey, store: StoreDep) -> JobPublic:
    """Return the job's state, progress, transitions, result or error."""
    return job_public(_own_job(store, job_id, key.id))


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    summary="Cancel a job",
    responses={
        409: {"model": ErrorPublic, "description": "The job already ended."},
        **_NOT_FOUND,
        **_AUTH,
    },
)
def cancel_job(job_id: str, key: CurrentKey, store: StoreDep) -> JobPublic:
    """Cancel a queued job at once, or ask a running job to stop after its current layer."""
    try:
        job = store.request_cancel(job_id, owner_key_id=key.id)
    except JobFinishedError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(error)) from error
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    return job_public(job)


@router.get(
    "/{job_id}/report",
    summary="Read the accuracy report",
    responses={
        200: {
            "description": "The report.json the library wrote.",
            "content": {
                "application/json": {
                    "example": {"baseline": {"perplexity": 20.1}, "quantized": {"perplexity": 21.3}}
                }
            },
        },
        409: {"model": ErrorPublic, "description": "The job has no report yet."},
        **_NOT_FOUND,
        **_AUTH,
    },
)
def read_report(job_id: str, key: CurrentKey, store: StoreDep) -> dict[str, Any]:
    """Return the report of a succeeded job."""
    job = _own_job(store, job_id, key.id)
    if job.report is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"job {job_id} has no report (state {job.state})"
        )
    return job.report


@router.get(
    "/{job_id}/figures/{name}",
    summary="Read a figure of the report",
    response_class=Response,
    responses={
        200: {
            "description": "A PNG file named in the report's `figures`, kept after the job.",
            "content": {"image/png": {"example": "(PNG bytes)"}},
        },
        **_NOT_FOUND,
        **_AUTH,
    },
)
def read_figure(job_id: str, name: str, key: CurrentKey, store: StoreDep) -> Response:
    """Return one figure of a succeeded job's report."""
    stored = load_figure(store, job_id, name, owner_key_id=key.id)
    if stored is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"figure {name} of job {job_id} not found"
        )
    return Response(stored.content, media_type=stored.media_type)


@router.get(
    "/{job_id}/events",
    summary="Stream progress (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "`job` events carry the job JSON; an `end` event closes the stream.",
            "content": {
                "text/event-stream": {
                    "example": 'event: job\ndata: {"id": "..."}\n\n'
                    'event: end\ndata: {"state": "succeeded"}\n\n'
                }
            },
        },
        **_NOT_FOUND,
        **_AUTH,
    },
)
def stream_events(
    job_id: str, key: CurrentKey, store: StoreDep, request: Request
) -> StreamingResponse:
    """Send the job each time it changes until it reaches a final state."""
    _own_job(store, job_id, key.id)
    load = partial(store.get, job_id, owner_key_id=key.id)
    return StreamingResponse(
        job_events(request, load, poll_s=request.app.state.events_poll_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
