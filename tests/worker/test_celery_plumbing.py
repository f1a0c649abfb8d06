"""Real Celery worker processes on a local Hub, running jobs with the fake quantizer."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE
from service.auth import create_key
from service.jobs.dispatch import dispatch
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from service.settings import Settings
from tests.worker.hub_repos import LLAMA_CONFIG, commit_titles, publish_source
from tests.worker.processes import WorkerEnv, build_worker_env, wait_for
from worker.celery_app import make_celery
from worker.dispatcher import CeleryDispatcher
from worker.reaper import reap_once

pytestmark = pytest.mark.integration

SOURCE = "alice/tiny-llama"
TARGET = "alice/tiny-llama-RUQuant-W4A4"
REQUEST = JobRequest.model_validate({"model_id": SOURCE, "preset": "W4A4"})


def _submit(env: WorkerEnv) -> str:
    publish_source(env.settings.hub_endpoint, ALICE_WRITE, SOURCE, config=LLAMA_CONFIG)
    with env.store.session() as session:
        key = create_key(session, "tester")
    job, _ = env.store.create(key.id, REQUEST, token=ALICE_WRITE)
    dispatcher = CeleryDispatcher(make_celery(env.settings), remote_control=False)
    assert dispatch(env.store, dispatcher, job.id)
    return job.id


def _job_commits(env: WorkerEnv, job_id: str) -> list[str]:
    titles = commit_titles(env.settings.hub_endpoint, ALICE_WRITE, TARGET)
    return [title for title in titles if f"ruquant-job {job_id}" in title]


def _state(env: WorkerEnv, job_id: str) -> str:
    job = env.store.get(job_id)
    assert job is not None
    return job.state


def test_job_succeeds_plumbing_fake_quantizer(worker_env: WorkerEnv) -> None:
    worker = worker_env.start_worker("w1")
    job_id = _submit(worker_env)
    wait_for(lambda: _state(worker_env, job_id) == "succeeded", what="success")

    job = worker_env.store.get(job_id)
    assert job is not None
    assert [t.to_state for t in job.transitions] == [
        "queued",
        "downloading",
        "calibrating",
        "evaluating",
        "uploading",
        "succeeded",
    ]
    assert job.progress_percent == 100.0
    assert job.report is not None and job.report["preset"] == "W4A4"
    assert job.target_repo == TARGET
    assert len(_job_commits(worker_env, job_id)) == 1
    assert worker_env.store.token(job_id) is None
    assert not (worker_env.settings.work_dir / "jobs" / job_id).exists()
    log = worker.log_text()
    assert f"job={job_id} job downloading -> calibrating" in log
    assert ALICE_WRITE not in log


def test_redelivered_message_ignored_plumbing(worker_env: WorkerEnv) -> None:
    worker = worker_env.start_worker("w1")
    job_id = _submit(worker_env)
    wait_for(lambda: _state(worker_env, job_id) == "succeeded", what="success")
    dispatcher = CeleryDispatcher(make_celery(worker_env.settings), remote_control=False)
    dispatcher.send(job_id, 9)
    wait_for(lambda: "message ignored: job is succeeded" in worker.log_text(), what="ignore")
    assert len(_job_commits(worker_env, job_id)) == 1


def test_cancel_between_layers_plumbing(worker_env: WorkerEnv) -> None:
    worker_env.start_worker("w1", FAKE_LAYERS="200", FAKE_LAYER_S="0.1")
    job_id = _submit(worker_env)
    wait_for(lambda: _state(worker_env, job_id) == "calibrating", what="calibrating")
    job = worker_env.store.get(job_id)
    assert job is not None
    worker_env.store.request_cancel(job_id, owner_key_id=job.owner_key_id)
    wait_for(lambda: _state(worker_env, job_id) == "cancelled", timeout=15, what="cancelled")
    ended = worker_env.store.get(job_id)
    assert ended is not None
    assert ended.progress_step is not None and ended.progress_step < 200
    reason = ended.transitions[-1].reason or ""
    assert reason.startswith("stopped by the worker: stopped before decoder layer")
    assert commit_titles(worker_env.settings.hub_endpoint, ALICE_WRITE, TARGET) == []


def test_killed_worker_requeued_once_plumbing(worker_env: WorkerEnv) -> None:
    first = worker_env.start_worker("w1", FAKE_LAYERS="200", FAKE_LAYER_S="0.1")
    job_id = _submit(worker_env)
    wait_for(lambda: _state(worker_env, job_id) == "calibrating", what="calibrating")
    first.stop(signal.SIGKILL)

    settings = worker_env.settings
    assert reap_once(settings, store=worker_env.store).requeued == []  # heartbeat still fresh
    wait_for(
        lambda: reap_once(settings, store=worker_env.store).requeued == [job_id],
        timeout=20,
        what="reaper requeue",
    )
    assert _state(worker_env, job_id) == "queued"

    worker_env.start_worker("w2", FAKE_LAYERS="3", FAKE_LAYER_S="0.05")
    wait_for(lambda: _state(worker_env, job_id) == "succeeded", what="success on w2")
    job = worker_env.store.get(job_id)
    assert job is not None
    assert job.attempt == 2
    assert job.lost_runs == 1
    assert any("requeued" in (t.reason or "") for t in job.transitions)
    assert len(_job_commits(worker_env, job_id)) == 1


@pytest.fixture
def redis_env(tmp_path: Path, localhub: LocalHubFixture) -> WorkerEnv:
    """A worker environment whose broker is the local Redis (database 13, emptied first)."""
    url = "redis://127.0.0.1:6379/13"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).flushdb()
    except redis.ConnectionError as error:
        pytest.skip(f"Redis not reachable at {url}: {error}")
    return build_worker_env(tmp_path, broker_url=url, hub_endpoint=localhub.endpoint)


def test_job_succeeds_on_redis_plumbing(redis_env: WorkerEnv) -> None:
    settings: Settings = redis_env.settings
    assert make_celery(settings).conf.worker_disable_prefetch is True
    try:
        redis_env.start_worker("w1")
        job_id = _submit(redis_env)
        wait_for(lambda: _state(redis_env, job_id) == JobState.SUCCEEDED.value, what="success")
    finally:
        for worker in redis_env.workers:
            worker.stop()
        redis.Redis.from_url(settings.resolved_broker_url).flushdb()
