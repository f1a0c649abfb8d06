"""The web form at ``/``: sign in with an API key once, submit jobs, watch them, read reports.

The session cookie (signed with the service secret, ``SameSite=Strict``) contains the key's id,
never the key itself; every request checks that the key is still active.
"""

from __future__ import annotations

import logging
import secrets
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from api.deps import DispatcherDep, SettingsDep, StoreDep, key_for_secret
from api.events import job_events
from api.figures import report_figure, report_summary
from api.schemas import job_public
from service.db.models import ApiKey
from service.jobs.datasets import UnknownDatasetError
from service.jobs.figures import figure_names, load_figure
from service.jobs.request import JobRequest
from service.jobs.store import (
    IdempotencyConflictError,
    JobFinishedError,
    JobStore,
    QuotaExceededError,
)
from service.jobs.submit import submit_job

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


def _session_key(request: Request, store: JobStore) -> ApiKey | None:
    key_id = request.session.get("key_id")
    if key_id is None:
        return None
    with store.session() as session:
        key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        request.session.clear()
        return None
    return key


def _require_key(request: Request, store: JobStore) -> ApiKey:
    key = _session_key(request, store)
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="sign in with an API key first")
    return key


def _form_request(form: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"model_id": form.get("model_id", "").strip()}
    for name in ("revision", "target_repo", "hub_token"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    body["preset"] = form.get("preset") or "W4A4"
    body["private"] = form.get("private") == "on"
    body["if_exists"] = form.get("if_exists") or "fail"
    quant: dict[str, Any] = {"stage2": form.get("stage2") == "on"}
    if form.get("method"):
        quant["method"] = form["method"]
    body["quant"] = quant
    if form.get("calibration_samples"):
        body["calibration"] = {"samples": form["calibration_samples"]}
    if form.get("evaluation_windows"):
        body["evaluation"] = {"windows": form["evaluation_windows"]}
    return body


def _index(request: Request, store: JobStore, key: ApiKey | None, **context: Any) -> Response:
    jobs: list[Any] = []
    if key is not None:
        jobs = [job_public(job) for job in store.list_jobs(key.id, limit=50)[0]]
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "key": key,
            "jobs": jobs,
            "form_token": secrets.token_hex(16),
            "errors": [],
            "form": {},
            **context,
        },
    )


@router.get("/", response_class=HTMLResponse)
def index(request: Request, store: StoreDep) -> Response:
    """Show the sign-in form, or the submit form and the caller's jobs."""
    return _index(request, store, _session_key(request, store))


@router.post("/login")
def login(request: Request, store: StoreDep, api_key: Annotated[str, Form()]) -> Response:
    """Check the API key and remember its id in the session."""
    key = key_for_secret(store, api_key.strip())
    if key is None:
        return _index(request, store, None, login_error="This API key is invalid or revoked.")
    request.session["key_id"] = key.id
    return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request) -> Response:
    """Forget the API key."""
    request.session.clear()
    return RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/submit")
async def submit(
    request: Request, store: StoreDep, dispatcher: DispatcherDep, settings: SettingsDep
) -> Response:
    """Validate the form with the API's request model and queue the job."""
    key = _require_key(request, store)
    form = {name: str(value) for name, value in (await request.form()).items()}
    errors: list[str] = []
    try:
        job_request = JobRequest.model_validate(_form_request(form))
        job, _ = submit_job(
            store,
            dispatcher,
            key.id,
            job_request,
            idempotency_key=f"web-{form.get('form_token', '')}" if form.get("form_token") else None,
            max_active=settings.max_active_jobs_per_key,
            offered_datasets=settings.dataset_names,
        )
    except ValidationError as error:
        errors = [
            f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in error.errors()
        ]
    except (IdempotencyConflictError, QuotaExceededError, UnknownDatasetError) as error:
        errors = [str(error)]
    if errors:
        form.pop("hub_token", None)
        return _index(request, store, key, errors=errors, form=form)
    return RedirectResponse(f"/jobs/{job.id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, store: StoreDep) -> Response:
    """Show one job with live progress, its result and its report."""
    key = _require_key(request, store)
    job = store.get(job_id, owner_key_id=key.id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    return templates.TemplateResponse(
        request,
        "job.html",
        {
            "job": job_public(job),
            "report": job.report,
            "summary": report_summary(job.report),
            "figure": report_figure(job.report),
            "figure_files": figure_names(store, job.id),
        },
    )


@router.get("/jobs/{job_id}/figures/{name}")
def figure(request: Request, job_id: str, name: str, store: StoreDep) -> Response:
    """Send one figure of the job's report (a PNG file the library wrote)."""
    key = _require_key(request, store)
    stored = load_figure(store, job_id, name, owner_key_id=key.id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"figure {name} not found")
    return Response(stored.content, media_type=stored.media_type)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, store: StoreDep) -> Response:
    """Cancel the job and go back to its page."""
    key = _require_key(request, store)
    try:
        store.request_cancel(job_id, owner_key_id=key.id)
    except JobFinishedError:
        logger.info("cancel from the web form ignored: job already ended", extra={"job_id": job_id})
    return RedirectResponse(f"/jobs/{job_id}", status_code=status.HTTP_303_SEE_OTHER)


@router.get("/jobs/{job_id}/events")
def events(request: Request, job_id: str, store: StoreDep) -> StreamingResponse:
    """Stream the job's progress to the page (session-authenticated server-sent events)."""
    key = _require_key(request, store)
    if store.get(job_id, owner_key_id=key.id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"job {job_id} not found")
    load = partial(store.get, job_id, owner_key_id=key.id)
    return StreamingResponse(
        job_events(request, load, poll_s=request.app.state.events_poll_s),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
