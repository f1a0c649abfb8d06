"""Response models of the API; the request model is ``service.jobs.request.JobRequest``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.db.models import Job
from service.jobs.states import JobState

__all__ = [
    "ErrorPublic",
    "HealthPublic",
    "JobErrorPublic",
    "JobPage",
    "JobPublic",
    "ProgressPublic",
    "ResultPublic",
    "TransitionPublic",
    "job_public",
]

_JOB_EXAMPLE: dict[str, Any] = {
    "id": "4f3c2b1a0d9e8f7a6b5c4d3e2f1a0b9c",
    "state": "calibrating",
    "model_id": "HuggingFaceTB/SmolLM2-135M",
    "revision": None,
    "preset": "W4A4",
    "request": {"model_id": "HuggingFaceTB/SmolLM2-135M", "preset": "W4A4"},
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-05T10:07:12Z",
    "started_at": "2026-01-05T10:00:03Z",
    "finished_at": None,
    "attempt": 1,
    "cancel_requested": False,
    "progress": {
        "stage": "calibrating",
        "step": 12,
        "total": 30,
        "percent": 38.5,
        "eta_s": 640.0,
        "message": "layer 12/30",
        "heartbeat_at": "2026-01-05T10:07:12Z",
    },
    "target_repo": "alice/SmolLM2-135M-RUQuant-W4A4",
    "target_revision": "main",
    "result": None,
    "error": None,
    "transitions": [
        {"from_state": None, "to_state": "queued", "at": "2026-01-05T10:00:00Z", "reason": None},
        {
            "from_state": "queued",
            "to_state": "downloading",
            "at": "2026-01-05T10:00:03Z",
            "reason": "claimed by gpu-0",
        },
    ],
}


class ErrorPublic(BaseModel):
    """Error body of every 4xx/5xx response except 422."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "job not found"}]})

    detail: str


class TransitionPublic(BaseModel):
    """One stored state change."""

    from_state: JobState | None
    to_state: JobState
    at: datetime
    reason: str | None


class ProgressPublic(BaseModel):
    """Latest progress of a running job: stage, step k of N, percent of the run and ETA."""

    stage: str | None
    step: int | None
    total: int | None
    percent: float | None
    eta_s: float | None = Field(description="Estimated seconds left, from the pace so far.")
    message: str | None
    heartbeat_at: datetime | None


class ResultPublic(BaseModel):
    """Repository and commit the quantized model was pushed to."""

    repo: str
    revision: str | None
    commit: str
    url: str | None


class JobErrorPublic(BaseModel):
    """Why a job failed: a stable ``code`` and a message that states the next step."""

    code: str
    message: str | None


class JobPublic(BaseModel):
    """A job as its owner sees it (never the Hub token)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})

    id: str
    state: JobState
    model_id: str
    revision: str | None
    preset: str
    request: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempt: int
    cancel_requested: bool
    progress: ProgressPublic | None
    target_repo: str | None
    target_revision: str | None
    result: ResultPublic | None
    error: JobErrorPublic | None
    transitions: list[TransitionPublic]


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [_JOB_EXAMPLE], "total": 1, "limit": 50, "offset": 0}]
        }
    )

    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class HealthPublic(BaseModel):
    """Liveness or readiness with the state of each dependency."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ok", "checks": {"database": "ok"}}]}
    )

    status: str
    checks: dict[str, str] = {}


def job_public(job: Job) -> JobPublic:
    """Build the public view of a stored job."""
    request = job.request
    quant = request.get("quant", {})
    progress = None
    if job.progress_stage is not None or job.heartbeat_at is not None:
        progress = ProgressPublic(
            stage=job.progress_stage,
            step=job.progress_step,
            total=job.progress_total,
            percent=job.progress_percent,
            eta_s=job.eta_s,
            message=job.progress_message,
            heartbeat_at=job.heartbeat_at,
        )
    result = None
    if job.result_commit is not None and job.target_repo is not None:
        result = ResultPublic(
            repo=job.target_repo,
            revision=job.target_revision,
            commit=job.result_commit,
            url=job.result_url,
        )
    error = None
    if job.error_code is not None:
        error = JobErrorPublic(code=job.error_code, message=job.error_message)
    return JobPublic(
        id=job.id,
        state=JobState(job.state),
        model_id=request["model_id"],
        revision=request.get("revision"),
        preset=f"W{quant.get('w_bits')}A{quant.get('a_bits')}",
        request=request,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        attempt=job.attempt,
        cancel_requested=job.cancel_requested_at is not None,
        progress=progress,
        target_repo=job.target_repo,
        target_revision=job.target_revision,
        result=result,
        error=error,
        transitions=[
            TransitionPublic(
                from_state=JobState(t.from_state) if t.from_state else None,
                to_state=JobState(t.to_state),
                at=t.at,
                reason=t.reason,
            )
            for t in job.transitions
        ],
    )
