"""The job store: every read and state change of a job goes through here.

State changes are compare-and-set updates (``UPDATE ... WHERE state = <expected>``), so the
worker, the reaper and a cancel request racing on one job cannot both win, and every change that
wins writes a ``job_transitions`` row in the same transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service.db.models import Job, JobSecret, JobTransition, utcnow
from service.jobs.request import JobRequest
from service.jobs.secrets import InvalidToken, TokenCipher
from service.jobs.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    RUNNING_STATES,
    JobState,
    can_transition,
)

__all__ = [
    "IdempotencyConflictError",
    "JobFinishedError",
    "JobStore",
    "QuotaExceededError",
    "ReapResult",
]

logger = logging.getLogger(__name__)


class IdempotencyConflictError(Exception):
    """The idempotency key was used before with a different request body."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Idempotency-Key already used for job {job_id} with a different body")
        self.job_id = job_id


class JobFinishedError(Exception):
    """The job is already in a final state."""


class QuotaExceededError(Exception):
    """The key already has the maximum number of active jobs."""


@dataclass(frozen=True)
class ReapResult:
    """Jobs the reaper changed: requeued ones need a new broker message, overdue ones a revoke."""

    requeued: list[str]
    failed: list[str]
    cancelled: list[tuple[str, str | None]]


def _new_job_id() -> str:
    return secrets.token_hex(16)


class JobStore:
    """Operations on jobs over one session factory."""

    def __init__(self, sessions: sessionmaker[Session], cipher: TokenCipher) -> None:
        self._sessions = sessions
        self._cipher = cipher

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Yield a session inside a transaction that commits on success."""
        with self._sessions.begin() as session:
            yield session

    # Creation and reads.

    def create(
        self,
        owner_key_id: str,
        request: JobRequest,
        *,
        idempotency_key: str | None = None,
        token: str | None = None,
        max_active: int | None = None,
    ) -> tuple[Job, bool]:
        """Store a new queued job and return ``(job, True)``.

        With an idempotency key already used by this owner, return ``(existing_job, False)`` when
        the request is the same and raise :class:`IdempotencyConflictError` when it differs.
        """
        fingerprint = request.fingerprint()
        if idempotency_key is not None:
            existing = self._find_by_key(owner_key_id, idempotency_key)
            if existing is not None:
                return self._same_or_conflict(existing, fingerprint), False
        try:
            with self.session() as session:
                if max_active is not None:
                    self._check_quota(session, owner_key_id, max_active)
                job = Job(
                    id=_new_job_id(),
                    owner_key_id=owner_key_id,
                    idempotency_key=idempotency_key,
                    request=request.stored_dict(),
                    request_hash=fingerprint,
                    state=JobState.QUEUED.value,
                    target_repo=request.target_repo,
                )
                session.add(job)
                session.add(JobTransition(job=job, from_state=None, to_state=job.state))
                if token is not None:
                    session.add(
                        JobSecret(job_id=job.id, token_ciphertext=self._cipher.encrypt(token))
                    )
        except IntegrityError:
            # Two submissions with one idempotency key raced; the other one's insert won.
            if idempotency_key is None:
                raise
            existing = self._find_by_key(owner_key_id, idempotency_key)
            if existing is None:
                raise
            return self._same_or_conflict(existing, fingerprint), False
        return job, True

    def _find_by_key(self, owner_key_id: str, idempotency_key: str) -> Job | None:
        with self.session() as session:
            return session.scalar(
                select(Job).where(
                    Job.owner_key_id == owner_key_id, Job.idempotency_key == idempotency_key
                )
            )

    @staticmethod
    def _same_or_conflict(existing: Job, fingerprint: str) -> Job:
        if existing.request_hash != fingerprint:
            raise IdempotencyConflictError(existing.id)
        return existing

    @staticmethod
    def _check_quota(session: Session, owner_key_id: str, max_active: int) -> None:
        active = session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.owner_key_id == owner_key_id,
                Job.state.in_([state.value for state in ACTIVE_STATES]),
            )
        )
        if (active or 0) >= max_active:
            raise QuotaExceededError(
                f"this API key already has {active} queued or running jobs (limit {max_active})"
            )

    def get(self, job_id: str, *, owner_key_id: str | None = None) -> Job | None:
        """Return the job with its transitions, or ``None`` (also when another owner has it)."""
        with self.session() as session:
            query = select(Job).options(selectinload(Job.transitions)).where(Job.id == job_id)
            if owner_key_id is not None:
                query = query.where(Job.owner_key_id == owner_key_id)
            return session.scalar(query)

    def list_jobs(
        self,
        owner_key_id: str,
        *,
        state: JobState | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """Return one page of the owner's jobs, newest first, and the total count."""
        conditions = [Job.owner_key_id == owner_key_id]
        if state is not None:
            conditions.append(Job.state == state.value)
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
            jobs = session.scalars(
                select(Job)
                .options(selectinload(Job.transitions))
                .where(*conditions)
                .order_by(Job.created_at.desc(), Job.id)
                .limit(limit)
                .offset(offset)
            )
            return list(jobs), total

    def token(self, job_id: str) -> str | None:
        """Return the job's own Hub token, or ``None`` when it brought none or it was deleted."""
        with self.session() as session:
            row = session.get(JobSecret, job_id)
            if row is None:
                return None
            try:
                return self._cipher.decrypt(row.token_ciphertext)
            except InvalidToken:
                logger.error(
                    "stored Hub token cannot be decrypted: RUQUANT_SECRET_KEY changed since the "
                    "job was submitted",
                    extra={"job_id": job_id},
                )
                return None

    # State changes.

    def transition(
        self,
        job_id: str,
        target: JobState,
        *,
        reason: str | None = None,
        expected: JobState | None = None,
        **values: Any,
    ) -> bool:
        """Move the job to ``target`` and set ``values`` on it; return whether it moved.

        Nothing changes when the state machine forbids the move, when the job is not in
        ``expected`` (if given), or when another writer changed the state meanwhile. A final
        state stamps ``finished_at`` and deletes the job's Hub token.
        """
        with self.session() as session:
            current_value = session.scalar(select(Job.state).where(Job.id == job_id))
            if current_value is None:
                return False
            current = JobState(current_value)
            if expected is not None and current is not expected:
                return False
            if not can_transition(current, target):
                return False
            now = utcnow()
            values = {**values, "state": target.value, "updated_at": now}
            if target in FINAL_STATES:
                values["finished_at"] = now
            if target is JobState.QUEUED:
                values.update(heartbeat_at=None, worker=None, task_id=None)
            result = session.execute(
                update(Job).where(Job.id == job_id, Job.state == current.value).values(**values)
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return False
            session.add(
                JobTransition(
                    job_id=job_id, from_state=current.value, to_state=target.value, reason=reason
                )
            )
            if target in FINAL_STATES:
                session.execute(delete(JobSecret).where(JobSecret.job_id == job_id))
        logger.info(
            "job %s -> %s%s",
            current.value,
            target.value,
            f" ({reason})" if reason else "",
            extra={"job_id": job_id},
        )
        return True

    def claim(self, job_id: str, *, worker: str, task_id: str | None) -> Job | None:
        """Move a queued job to ``downloading`` for this worker; ``None`` when it is not queued."""
        now = utcnow()
        with self.session() as session:
            result = session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.state == JobState.QUEUED.value,
                    Job.cancel_requested_at.is_(None),
                )
                .values(
                    state=JobState.DOWNLOADING.value,
                    attempt=Job.attempt + 1,
                    worker=worker,
                    task_id=task_id,
                    started_at=func.coalesce(Job.started_at, now),
                    heartbeat_at=now,
                    updated_at=now,
                    progress_stage=None,
                    progress_step=None,
                    progress_total=None,
                    progress_percent=None,
                    eta_s=None,
                )
            )
            if not result.rowcount:  # type: ignore[attr-defined]
                return None
            session.add(
                JobTransition(
                    job_id=job_id,
                    from_state=JobState.QUEUED.value,
                    to_state=JobState.DOWNLOADING.value,
                    reason=f"claimed by {worker}",
                )
            )
        logger.info("job claimed by %s", worker, extra={"job_id": job_id})
        return self.get(job_id)

    def set_values(self, job_id: str, **values: Any) -> None:
        """Set plain columns (target, result, report) without a state change."""
        with self.session() as session:
            session.execute(
                update(Job).where(Job.id == job_id).values(**values, updated_at=utcnow())
            )

    def record_progress(
        self,
        job_id: str,
        *,
        stage: str,
        step: int,
        total: int,
        percent: float,
        eta_s: float | None,
        message: str,
    ) -> None:
        """Store the latest progress of a running job; it also counts as a heartbeat."""
        now = utcnow()
        with self.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_([s.value for s in RUNNING_STATES]))
                .values(
                    progress_stage=stage,
                    progress_step=step,
                    progress_total=total,
                    progress_percent=percent,
                    progress_message=message,
                    eta_s=eta_s,
                    heartbeat_at=now,
                    updated_at=now,
                )
            )

    def heartbeat(self, job_id: str) -> tuple[JobState, bool] | None:
        """Stamp the heartbeat of a running job; return its state and whether cancel was asked."""
        with self.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state.in_([s.value for s in RUNNING_STATES]))
                .values(heartbeat_at=utcnow())
            )
            row = session.execute(
                select(Job.state, Job.cancel_requested_at).where(Job.id == job_id)
            ).first()
        if row is None:
            return None
        return JobState(row.state), row.cancel_requested_at is not None

    def request_cancel(self, job_id: str, *, owner_key_id: str) -> Job | None:
        """Flag the job for cancellation; a queued job is cancelled at once.

        Returns the job, or ``None`` when the owner has no such job. Raises
        :class:`JobFinishedError` when the job already ended.
        """
        job = self.get(job_id, owner_key_id=owner_key_id)
        if job is None:
            return None
        if JobState(job.state) in FINAL_STATES:
            raise JobFinishedError(f"job {job_id} already ended as {job.state}")
        with self.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.cancel_requested_at.is_(None))
                .values(cancel_requested_at=utcnow(), updated_at=utcnow())
            )
        self.transition(
            job_id, JobState.CANCELLED, expected=JobState.QUEUED, reason="cancelled before start"
        )
        return self.get(job_id)

    # Recovery.

    def mark_dispatched(self, job_id: str) -> None:
        """Record that the broker accepted the job's message."""
        self.set_values(job_id, dispatched_at=utcnow())

    def undispatched(self, *, older_than: timedelta, now: datetime | None = None) -> list[str]:
        """Return queued jobs whose broker message was never sent (the broker was down)."""
        cutoff = (now or utcnow()) - older_than
        with self.session() as session:
            return list(
                session.scalars(
                    select(Job.id).where(
                        Job.state == JobState.QUEUED.value,
                        Job.dispatched_at.is_(None),
                        Job.updated_at < cutoff,
                    )
                )
            )

    def reap(
        self,
        *,
        stale_after: timedelta,
        cancel_grace: timedelta,
        max_lost_runs: int,
        now: datetime | None = None,
    ) -> ReapResult:
        """Requeue or fail running jobs whose heartbeat is stale, and end overdue cancellations.

        A stale job goes back to ``queued`` while fewer than ``max_lost_runs`` of its runs were
        lost and no cancel was requested; otherwise it fails with ``worker_lost`` or is
        cancelled. A job whose cancel request is older than ``cancel_grace`` is cancelled even if
        its worker still sends heartbeats, and its task id is returned for a revoke.
        """
        now = now or utcnow()
        running = [s.value for s in RUNNING_STATES]
        with self.session() as session:
            stale = session.execute(
                select(Job.id, Job.state, Job.lost_runs, Job.cancel_requested_at).where(
                    Job.state.in_(running), Job.heartbeat_at < now - stale_after
                )
            ).all()
            overdue = session.execute(
                select(Job.id, Job.task_id).where(
                    Job.state.in_(running), Job.cancel_requested_at < now - cancel_grace
                )
            ).all()
        result = ReapResult(requeued=[], failed=[], cancelled=[])
        silence = f"no heartbeat for {int(stale_after.total_seconds())} s"
        for row in stale:
            expected = JobState(row.state)
            if row.cancel_requested_at is not None:
                if self.transition(
                    row.id,
                    JobState.CANCELLED,
                    expected=expected,
                    reason=f"cancel requested and {silence}",
                ):
                    result.cancelled.append((row.id, None))
            elif row.lost_runs < max_lost_runs:
                if self.transition(
                    row.id,
                    JobState.QUEUED,
                    expected=expected,
                    reason=f"{silence}; requeued",
                    lost_runs=row.lost_runs + 1,
                    dispatched_at=None,
                ):
                    result.requeued.append(row.id)
            elif self.transition(
                row.id,
                JobState.FAILED,
                expected=expected,
                reason=silence,
                lost_runs=row.lost_runs + 1,
                error_code="worker_lost",
                error_message=f"The worker stopped sending heartbeats during {row.state} "
                f"({row.lost_runs + 1} runs lost); submit the job again.",
            ):
                result.failed.append(row.id)
        cancelled_ids = {job_id for job_id, _ in result.cancelled}
        for overdue_row in overdue:
            if overdue_row.id in cancelled_ids:
                continue
            grace = int(cancel_grace.total_seconds())
            if self.transition(
                overdue_row.id, JobState.CANCELLED, reason=f"cancel not honoured within {grace} s"
            ):
                result.cancelled.append((overdue_row.id, overdue_row.task_id))
        return result
