"""One job from claim to Hub commit: pre-flight, download, quantize, upload, record.

The same job id always leads to the same target repository and revision, and the upload first
looks for a commit carrying the job id, so a job run twice makes at most one Hub commit.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ruquant.errors import RUQuantError
from ruquant.progress import Cancelled
from service.db.models import Job
from service.jobs.datasets import resolve_datasets
from service.jobs.figures import figure_files, save_figures
from service.jobs.request import JobRequest
from service.jobs.states import FINAL_STATES, JobState
from service.jobs.store import JobStore
from service.logging import register_secret
from service.settings import Settings
from worker.errors import JobError
from worker.hub_gateway import CommitRecord, HubGateway
from worker.preflight import Plan, preflight
from worker.progress import Heartbeat, ProgressReporter
from worker.quantize import QuantizeFn, run_quantization_step

__all__ = ["DEFAULT_STAGES", "Stages", "commit_marker", "run_job"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stages:
    """The parts of a run that talk to the outside: the Hub client and the quantizer."""

    hub: Callable[[Settings, str | None], HubGateway]
    quantize: QuantizeFn


DEFAULT_STAGES = Stages(hub=HubGateway, quantize=run_quantization_step)


def commit_marker(job_id: str) -> str:
    """Return the text that identifies this job's commit on the target repository."""
    return f"ruquant-job {job_id}"


def _check_cancel(reporter: ProgressReporter) -> None:
    if reporter.should_stop():
        raise Cancelled("cancel requested")


def _push(
    hub: HubGateway, store: JobStore, job: Job, request: JobRequest, plan: Plan, output_dir: Path
) -> CommitRecord:
    marker = commit_marker(job.id)
    earlier = hub.find_commit(plan.target_repo, plan.target_revision, marker)
    if earlier is not None:
        logger.info("target already has this job's commit %s; not pushing again", earlier.commit)
        return earlier
    store.set_values(job.id, target_created=True)
    branch = None if plan.target_revision == "main" else plan.target_revision
    hub.create_target(plan.target_repo, private=request.private, branch=branch)
    title = f"RUQuant {request.preset_name} quantization of {request.model_id} ({marker})"
    description = (
        f"Source: {request.model_id}@{plan.source_sha}\n"
        f"Method: {request.quant.method.value}, W{request.quant.w_bits}A{request.quant.a_bits}\n"
        f"{marker}"
    )
    return hub.push(
        plan.target_repo,
        output_dir,
        revision=plan.target_revision,
        title=title,
        description=description,
        replace_all=request.if_exists == "overwrite",
    )


def _execute(
    job: Job, store: JobStore, settings: Settings, stages: Stages, reporter: ProgressReporter
) -> None:
    request = JobRequest.model_validate(job.request)
    token = store.token(job.id)
    if token is None and settings.hub_token is not None:
        token = settings.hub_token.get_secret_value()
    register_secret(token)
    hub = stages.hub(settings, token)
    job_dir = settings.work_dir / "jobs" / job.id
    job_dir.mkdir(parents=True, exist_ok=True)

    earlier_revision = job.target_revision if job.target_created else None
    plan = preflight(
        hub,
        request,
        settings,
        job_id=job.id,
        scratch_dir=job_dir / "preflight",
        earlier_revision=earlier_revision,
    )
    store.set_values(job.id, target_repo=plan.target_repo, target_revision=plan.target_revision)
    logger.info(
        "pre-flight passed: %s@%s -> %s (%s), %.1f GiB",
        request.model_id,
        plan.source_sha,
        plan.target_repo,
        plan.target_revision,
        plan.size_bytes / 1024**3,
    )
    _check_cancel(reporter)

    model_dir = hub.download(
        request.model_id, plan.source_sha, job_dir / "source", plan.download_patterns
    )
    _check_cancel(reporter)

    store.transition(job.id, JobState.CALIBRATING, reason="download complete")
    output_dir = job_dir / "output"
    shutil.rmtree(output_dir, ignore_errors=True)
    output_dir.mkdir(parents=True)
    report = stages.quantize(
        model_dir,
        output_dir,
        resolve_datasets(request.run_config(), settings),
        progress=reporter,
        should_stop=reporter.should_stop,
        # The library gets only a local folder, so the Hub id for the model card's base_model
        # comes from here.
        log_context={"job_id": job.id, "base_model": request.model_id},
    )
    _check_cancel(reporter)

    if not store.transition(job.id, JobState.UPLOADING, reason="quantized model saved"):
        raise Cancelled("job ended while quantizing")
    commit = _push(hub, store, job, request, plan, output_dir)
    _keep_figures(store, job.id, output_dir, report)
    store.transition(
        job.id,
        JobState.SUCCEEDED,
        reason=f"pushed {commit.commit}",
        result_commit=commit.commit,
        result_url=commit.url,
        report=report,
        progress_percent=100.0,
        eta_s=0.0,
    )
    logger.info("job succeeded: %s@%s", plan.target_repo, commit.commit)


def _keep_figures(store: JobStore, job_id: str, output_dir: Path, report: dict[str, Any]) -> None:
    """Copy the report's figures into the store for the job page; a failure only loses them."""
    try:
        saved = save_figures(store, job_id, output_dir, figure_files(report))
    except (OSError, SQLAlchemyError):
        logger.exception(
            "report figures not kept; the job page shows none", extra={"job_id": job_id}
        )
        return
    logger.info("kept %d report figures for the job page", len(saved), extra={"job_id": job_id})


def _fail(store: JobStore, job_id: str, code: str, message: str) -> None:
    store.transition(job_id, JobState.FAILED, reason=code, error_code=code, error_message=message)


def run_job(
    job_id: str,
    *,
    settings: Settings,
    store: JobStore,
    worker: str,
    task_id: str | None,
    stages: Stages = DEFAULT_STAGES,
) -> JobState | None:
    """Claim and run the job; return its state afterwards, or ``None`` when it was not queued.

    Job errors, library errors and cancellation end the job here; ``TransientError`` and the
    soft time limit propagate to the task, which retries or fails the job.
    """
    job = store.claim(job_id, worker=worker, task_id=task_id)
    if job is None:
        current = store.get(job_id)
        logger.info("message ignored: job is %s", current.state if current else "missing")
        return None
    reporter = ProgressReporter(store, job_id, min_interval_s=settings.progress_interval_s)
    try:
        with Heartbeat(store, job_id, settings.heartbeat_interval_s):
            _execute(job, store, settings, stages, reporter)
    except Cancelled as error:
        logger.info("job stopped after a cancel request: %s", error)
        store.transition(job_id, JobState.CANCELLED, reason=f"stopped by the worker: {error}")
    except JobError as error:
        logger.warning("job failed: %s: %s", error.code, error.message)
        _fail(store, job_id, error.code, error.message)
    except RUQuantError as error:
        logger.warning("quantization failed: %s: %s", error.code, error)
        _fail(store, job_id, error.code, str(error))
    finally:
        ended = store.get(job_id)
        if (
            ended is not None
            and JobState(ended.state) in FINAL_STATES
            and not settings.keep_job_files
        ):
            shutil.rmtree(settings.work_dir / "jobs" / job_id, ignore_errors=True)
    ended = store.get(job_id)
    return JobState(ended.state) if ended else None
