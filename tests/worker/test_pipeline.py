"""The pipeline in-process with the fake Hub and quantizer (plumbing): one commit per job id."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.auth import create_key
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from tests.worker.conftest import WorkerEnv, build_worker_env
from tests.worker.fakes import FakeHub, fake_quantize, hub_state
from worker.pipeline import Stages, run_job

STAGES = Stages(hub=FakeHub, quantize=fake_quantize)  # type: ignore[arg-type]


@pytest.fixture
def env(tmp_path: Path) -> WorkerEnv:
    return build_worker_env(tmp_path)


def _job(env: WorkerEnv, **request: object) -> str:
    with env.store.session() as session:
        key = create_key(session, "tester")
    body = JobRequest.model_validate({"model_id": "org/tiny", **request})
    return env.store.create(key.id, body)[0].id


def _run(env: WorkerEnv, job_id: str) -> JobState | None:
    return run_job(
        job_id, settings=env.settings, store=env.store, worker="w", task_id=None, stages=STAGES
    )


def test_rerun_after_commit_plumbing(env: WorkerEnv) -> None:
    job_id = _job(env)
    assert _run(env, job_id) is JobState.SUCCEEDED
    first = env.store.get(job_id)
    assert first is not None
    # A crash after the Hub commit but before the store update looks like this to the reaper.
    with env.store.session() as session:
        session.get(type(first), job_id).state = JobState.UPLOADING.value  # type: ignore[union-attr]
    assert env.store.transition(job_id, JobState.QUEUED, reason="test requeue")
    assert _run(env, job_id) is JobState.SUCCEEDED
    second = env.store.get(job_id)
    assert second is not None
    assert second.result_commit == first.result_commit
    assert len(hub_state()["alice/tiny-RUQuant-W4A4"]["main"]) == 1


def test_second_message_is_ignored_plumbing(env: WorkerEnv) -> None:
    job_id = _job(env)
    assert _run(env, job_id) is JobState.SUCCEEDED
    assert _run(env, job_id) is None


def test_new_revision_pushes_branch_plumbing(env: WorkerEnv) -> None:
    FakeHub(env.settings, None).create_target("team/out", private=True, branch=None)
    job_id = _job(env, target_repo="team/out", if_exists="new_revision")
    assert _run(env, job_id) is JobState.SUCCEEDED
    job = env.store.get(job_id)
    assert job is not None
    assert job.target_revision == f"ruquant-{job_id[:12]}"
    assert hub_state()["team/out"]["main"] == []
    assert len(hub_state()["team/out"][job.target_revision]) == 1


def test_preflight_failure_recorded_plumbing(env: WorkerEnv) -> None:
    job_id = _job(env, target_repo="bob/out")
    assert _run(env, job_id) is JobState.FAILED
    job = env.store.get(job_id)
    assert job is not None
    assert job.error_code == "namespace_forbidden"
    assert "cannot write" in (job.error_message or "")
