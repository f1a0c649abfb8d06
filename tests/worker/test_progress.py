"""Progress reporting of a running job: stored states, throttled writes, cancel checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruquant.progress import ProgressEvent
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from service.jobs.store import JobStore
from tests.service.fixtures import make_key, sqlite_url, store_for
from worker.progress import ProgressReporter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return store_for(sqlite_url(tmp_path))


def _running_job(store: JobStore) -> tuple[str, str]:
    key = make_key(store)
    job, _ = store.create(key.id, JobRequest.model_validate({"model_id": "a/b"}))
    assert store.claim(job.id, worker="w", task_id=None) is not None
    return job.id, key.id


def _state(store: JobStore, job_id: str) -> str:
    job = store.get(job_id)
    assert job is not None
    return job.state


def test_cancel_seen_at_next_check(store: JobStore) -> None:
    job_id, owner = _running_job(store)
    reporter = ProgressReporter(store, job_id, min_interval_s=3600)
    assert reporter.should_stop() is False
    store.request_cancel(job_id, owner_key_id=owner)
    assert reporter.should_stop() is True


def test_float_evaluation_keeps_calibrating(store: JobStore) -> None:
    job_id, _ = _running_job(store)
    store.transition(job_id, JobState.CALIBRATING, reason="download complete")
    reporter = ProgressReporter(store, job_id, min_interval_s=0)
    reporter(ProgressEvent("loading", 0, 1, 0.0))
    reporter(ProgressEvent("evaluating", 1, 4, 0.1))
    assert _state(store, job_id) == "calibrating"
    reporter(ProgressEvent("calibrating", 1, 30, 0.25))
    assert _state(store, job_id) == "calibrating"
    reporter(ProgressEvent("evaluating", 1, 4, 0.8))
    assert _state(store, job_id) == "evaluating"


def test_progress_writes_throttled(store: JobStore) -> None:
    job_id, _ = _running_job(store)
    clock = _Clock()
    reporter = ProgressReporter(store, job_id, min_interval_s=10, clock=clock)
    reporter(ProgressEvent("calibrating", 1, 3, 0.3))
    clock.now = 1.0
    reporter(ProgressEvent("calibrating", 2, 3, 0.5))
    job = store.get(job_id)
    assert job is not None
    assert job.progress_step == 1
    clock.now = 2.0
    reporter(ProgressEvent("calibrating", 3, 3, 0.7))
    job = store.get(job_id)
    assert job is not None
    assert job.progress_step == 3
    assert job.progress_percent == 70.0
    assert job.eta_s == pytest.approx(2.0 * 0.3 / 0.7, abs=0.1)
