"""Job store on SQLite and PostgreSQL: creation, idempotency, transitions, secrets, reaping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db.models import JobSecret, utcnow
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from service.jobs.store import (
    IdempotencyConflictError,
    JobFinishedError,
    JobStore,
    QuotaExceededError,
)
from tests.service.fixtures import make_key

REQUEST = JobRequest.model_validate({"model_id": "org/model", "preset": "W4A4"})


def _secret_rows(store: JobStore, job_id: str) -> list[JobSecret]:
    with store.session() as session:
        return list(session.scalars(select(JobSecret).where(JobSecret.job_id == job_id)))


def test_create_records_queued_transition(store: JobStore) -> None:
    key = make_key(store)
    job, created = store.create(key.id, REQUEST)
    loaded = store.get(job.id)
    assert created
    assert loaded is not None
    assert loaded.state == "queued"
    assert [(t.from_state, t.to_state) for t in loaded.transitions] == [(None, "queued")]
    assert loaded.transitions[0].at.tzinfo is not None
    assert loaded.request["quant"]["w_bits"] == 4


def test_idempotency_same_body_same_job(store: JobStore) -> None:
    key = make_key(store)
    first, created_first = store.create(key.id, REQUEST, idempotency_key="k1")
    again = JobRequest.model_validate({"preset": "W4A4", "model_id": "org/model"})
    second, created_second = store.create(key.id, again, idempotency_key="k1")
    assert created_first
    assert not created_second
    assert second.id == first.id


def test_idempotency_different_body_conflicts(store: JobStore) -> None:
    key = make_key(store)
    first, _ = store.create(key.id, REQUEST, idempotency_key="k1")
    other = JobRequest.model_validate({"model_id": "org/model", "preset": "W8A8"})
    with pytest.raises(IdempotencyConflictError) as caught:
        store.create(key.id, other, idempotency_key="k1")
    assert caught.value.job_id == first.id


def test_idempotency_key_scoped_per_owner(store: JobStore) -> None:
    alice, bob = make_key(store, "alice"), make_key(store, "bob")
    job_a, _ = store.create(alice.id, REQUEST, idempotency_key="same")
    job_b, created = store.create(bob.id, REQUEST, idempotency_key="same")
    assert created
    assert job_a.id != job_b.id


def test_owner_filter_hides_other_jobs(store: JobStore) -> None:
    alice, bob = make_key(store, "alice"), make_key(store, "bob")
    job, _ = store.create(alice.id, REQUEST)
    assert store.get(job.id, owner_key_id=bob.id) is None
    assert store.get(job.id, owner_key_id=alice.id) is not None
    assert store.list_jobs(bob.id) == ([], 0)


def test_list_filters_and_paginates(store: JobStore) -> None:
    key = make_key(store)
    ids = [store.create(key.id, REQUEST)[0].id for _ in range(5)]
    store.transition(ids[0], JobState.FAILED, reason="test")
    page, total = store.list_jobs(key.id, limit=2, offset=0)
    assert total == 5
    assert len(page) == 2
    queued, queued_total = store.list_jobs(key.id, state=JobState.QUEUED)
    assert queued_total == 4
    assert ids[0] not in {job.id for job in queued}


def test_quota_limits_active_jobs(store: JobStore) -> None:
    key = make_key(store)
    store.create(key.id, REQUEST, max_active=2)
    store.create(key.id, REQUEST, max_active=2)
    with pytest.raises(QuotaExceededError):
        store.create(key.id, REQUEST, max_active=2)


def test_token_encrypted_and_deleted_at_end(store: JobStore) -> None:
    key = make_key(store)
    token = "hf_abcdefghijklmnopqrstuvwxyz"
    job, _ = store.create(key.id, REQUEST, token=token)
    rows = _secret_rows(store, job.id)
    assert len(rows) == 1
    assert token.encode() not in rows[0].token_ciphertext
    assert store.token(job.id) == token
    assert store.claim(job.id, worker="w1", task_id="t1") is not None
    assert store.transition(job.id, JobState.SUCCEEDED, reason="done")
    assert _secret_rows(store, job.id) == []
    assert store.token(job.id) is None


def test_claim_only_once(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    first = store.claim(job.id, worker="w1", task_id="t1")
    second = store.claim(job.id, worker="w2", task_id="t2")
    assert first is not None
    assert first.state == "downloading"
    assert first.attempt == 1
    assert second is None


def test_transition_rejects_backwards_and_after_final(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    store.claim(job.id, worker="w", task_id=None)
    assert store.transition(job.id, JobState.CALIBRATING)
    assert not store.transition(job.id, JobState.DOWNLOADING)
    assert store.transition(job.id, JobState.FAILED, error_code="x", error_message="y")
    assert not store.transition(job.id, JobState.SUCCEEDED)
    loaded = store.get(job.id)
    assert loaded is not None
    assert loaded.finished_at is not None
    assert [t.to_state for t in loaded.transitions] == [
        "queued",
        "downloading",
        "calibrating",
        "failed",
    ]


def test_transition_expected_state_guard(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    assert not store.transition(job.id, JobState.CANCELLED, expected=JobState.DOWNLOADING)
    assert store.get(job.id).state == "queued"  # type: ignore[union-attr]


def test_cancel_queued_job_is_immediate(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    cancelled = store.request_cancel(job.id, owner_key_id=key.id)
    assert cancelled is not None
    assert cancelled.state == "cancelled"
    assert store.claim(job.id, worker="w", task_id=None) is None
    with pytest.raises(JobFinishedError):
        store.request_cancel(job.id, owner_key_id=key.id)


def test_cancel_running_job_sets_flag(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    store.claim(job.id, worker="w", task_id=None)
    flagged = store.request_cancel(job.id, owner_key_id=key.id)
    assert flagged is not None
    assert flagged.state == "downloading"
    assert flagged.cancel_requested_at is not None
    assert store.heartbeat(job.id) == (JobState.DOWNLOADING, True)


def test_reap_requeues_then_fails(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    store.claim(job.id, worker="w", task_id=None)
    later = utcnow() + timedelta(minutes=10)
    options = {"stale_after": timedelta(minutes=2), "cancel_grace": timedelta(minutes=5)}

    first = store.reap(max_lost_runs=1, now=later, **options)
    assert first.requeued == [job.id]
    assert store.get(job.id).state == "queued"  # type: ignore[union-attr]

    store.claim(job.id, worker="w", task_id=None)
    second = store.reap(max_lost_runs=1, now=later, **options)
    loaded = store.get(job.id)
    assert second.failed == [job.id]
    assert loaded is not None
    assert loaded.state == "failed"
    assert loaded.error_code == "worker_lost"


def test_reap_leaves_fresh_heartbeat(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    store.claim(job.id, worker="w", task_id=None)
    result = store.reap(
        stale_after=timedelta(minutes=2), cancel_grace=timedelta(minutes=5), max_lost_runs=1
    )
    assert result.requeued == []
    assert result.failed == []
    assert store.get(job.id).state == "downloading"  # type: ignore[union-attr]


def test_reap_cancels_overdue_cancel(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    store.claim(job.id, worker="w", task_id="task-1")
    store.request_cancel(job.id, owner_key_id=key.id)
    store.heartbeat(job.id)
    later = utcnow() + timedelta(seconds=90)
    result = store.reap(
        stale_after=timedelta(minutes=2),
        cancel_grace=timedelta(seconds=60),
        max_lost_runs=1,
        now=later,
    )
    assert result.cancelled == [(job.id, "task-1")]
    assert store.get(job.id).state == "cancelled"  # type: ignore[union-attr]


def test_progress_only_for_running(store: JobStore) -> None:
    key = make_key(store)
    job, _ = store.create(key.id, REQUEST)
    progress = {
        "stage": "calibrating",
        "step": 3,
        "total": 30,
        "percent": 10.0,
        "eta_s": 90.0,
        "message": "layer 3",
    }
    store.record_progress(job.id, **progress)
    assert store.get(job.id).progress_step is None  # type: ignore[union-attr]
    store.claim(job.id, worker="w", task_id=None)
    store.record_progress(job.id, **progress)
    loaded = store.get(job.id)
    assert loaded is not None
    assert loaded.progress_step == 3
    assert loaded.eta_s == 90.0
