"""The pipeline in-process with the real Hub client on a local Hub and the fake quantizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE
from service.auth import create_key
from service.jobs.figures import figure_names
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from tests.worker.fakes import fake_quantize
from tests.worker.hub_repos import LLAMA_CONFIG, commit_titles, publish_source, repo_files
from tests.worker.processes import WorkerEnv, build_worker_env
from worker.hub_gateway import CommitRecord, HubGateway
from worker.pipeline import Stages, commit_marker, run_job

STAGES = Stages(hub=HubGateway, quantize=fake_quantize)
SOURCE = "alice/tiny"


@pytest.fixture
def env(tmp_path: Path, localhub: LocalHubFixture) -> WorkerEnv:
    publish_source(localhub.endpoint, ALICE_WRITE, SOURCE, config=LLAMA_CONFIG)
    return build_worker_env(tmp_path, hub_endpoint=localhub.endpoint)


def _job(env: WorkerEnv, **request: object) -> str:
    with env.store.session() as session:
        key = create_key(session, "tester")
    body = JobRequest.model_validate({"model_id": SOURCE, **request})
    return env.store.create(key.id, body, token=ALICE_WRITE)[0].id


def _run(env: WorkerEnv, job_id: str) -> JobState | None:
    return run_job(
        job_id, settings=env.settings, store=env.store, worker="w", task_id=None, stages=STAGES
    )


def _job_commits(env: WorkerEnv, repo_id: str, job_id: str, revision: str = "main") -> list[str]:
    titles = commit_titles(env.settings.hub_endpoint, ALICE_WRITE, repo_id, revision)
    return [title for title in titles if commit_marker(job_id) in title]


def test_push_is_one_commit(env: WorkerEnv) -> None:
    job_id = _job(env)
    assert _run(env, job_id) is JobState.SUCCEEDED
    job = env.store.get(job_id)
    assert job is not None
    target = "alice/tiny-RUQuant-W4A4"
    assert job.target_repo == target
    assert len(_job_commits(env, target, job_id)) == 1
    files = set(repo_files(env.settings.hub_endpoint, ALICE_WRITE, target))
    assert files >= {"README.md", "model.safetensors", "report.json"}
    assert job.result_url is not None
    assert job.result_commit in job.result_url
    assert figure_names(env.store, job_id) == ["perplexity.png"]


class _WorkerDied(BaseException):
    """Stands for a SIGKILL: nothing in the pipeline catches it."""


class _DiesAfterPush(HubGateway):
    def push(self, *args: Any, **kwargs: Any) -> CommitRecord:
        super().push(*args, **kwargs)
        raise _WorkerDied


def test_rerun_after_commit_pushes_once(env: WorkerEnv) -> None:
    job_id = _job(env)
    dying = Stages(hub=_DiesAfterPush, quantize=fake_quantize)
    with pytest.raises(_WorkerDied):
        run_job(
            job_id, settings=env.settings, store=env.store, worker="w", task_id=None, stages=dying
        )
    # The reaper requeues a job whose worker died; this run finds the commit already pushed.
    assert env.store.transition(job_id, JobState.QUEUED, reason="test requeue")
    assert _run(env, job_id) is JobState.SUCCEEDED
    job = env.store.get(job_id)
    assert job is not None
    assert job.attempt == 2
    commits = _job_commits(env, "alice/tiny-RUQuant-W4A4", job_id)
    assert len(commits) == 1
    assert job.result_commit is not None


def test_second_message_is_ignored(env: WorkerEnv) -> None:
    job_id = _job(env)
    assert _run(env, job_id) is JobState.SUCCEEDED
    assert _run(env, job_id) is None


def test_new_revision_pushes_branch(env: WorkerEnv) -> None:
    publish_source(env.settings.hub_endpoint, ALICE_WRITE, "ruquant-org/out", config=LLAMA_CONFIG)
    job_id = _job(env, target_repo="ruquant-org/out", if_exists="new_revision")
    assert _run(env, job_id) is JobState.SUCCEEDED
    job = env.store.get(job_id)
    assert job is not None
    branch = f"ruquant-{job_id[:12]}"
    assert job.target_revision == branch
    assert _job_commits(env, "ruquant-org/out", job_id) == []
    assert len(_job_commits(env, "ruquant-org/out", job_id, branch)) == 1


def test_overwrite_replaces_main_files(env: WorkerEnv) -> None:
    publish_source(env.settings.hub_endpoint, ALICE_WRITE, "alice/out", config=LLAMA_CONFIG)
    job_id = _job(env, target_repo="alice/out", if_exists="overwrite")
    assert _run(env, job_id) is JobState.SUCCEEDED
    files = repo_files(env.settings.hub_endpoint, ALICE_WRITE, "alice/out")
    assert "tokenizer.json" not in files
    assert "report.json" in files
    assert len(_job_commits(env, "alice/out", job_id)) == 1


def test_preflight_failure_recorded(env: WorkerEnv) -> None:
    job_id = _job(env, target_repo="bob/out")
    assert _run(env, job_id) is JobState.FAILED
    job = env.store.get(job_id)
    assert job is not None
    assert job.error_code == "namespace_forbidden"
    assert "cannot write" in (job.error_message or "")
