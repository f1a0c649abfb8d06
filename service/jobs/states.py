"""The job state machine.

``queued -> downloading -> calibrating -> evaluating -> uploading -> succeeded``, and ``failed`` or
``cancelled`` from any state that is not final. The reaper may also put a running job whose worker
died back to ``queued``; that transition is stored like every other one.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "RUNNING_STATES", "JobState", "can_transition"]


class JobState(StrEnum):
    """Lifecycle state of a job."""

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    CALIBRATING = "calibrating"
    EVALUATING = "evaluating"
    UPLOADING = "uploading"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_PIPELINE = [
    JobState.QUEUED,
    JobState.DOWNLOADING,
    JobState.CALIBRATING,
    JobState.EVALUATING,
    JobState.UPLOADING,
    JobState.SUCCEEDED,
]
FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
RUNNING_STATES = frozenset(
    {JobState.DOWNLOADING, JobState.CALIBRATING, JobState.EVALUATING, JobState.UPLOADING}
)
ACTIVE_STATES = RUNNING_STATES | {JobState.QUEUED}


def can_transition(source: JobState, target: JobState) -> bool:
    """Return whether the state machine allows ``source -> target``.

    Forward moves may skip stages (a run without evaluation goes from calibrating to uploading),
    but never go back, except a running job requeued by the reaper.
    """
    if source in FINAL_STATES:
        return False
    if target in (JobState.FAILED, JobState.CANCELLED):
        return True
    if target is JobState.QUEUED:
        return source in RUNNING_STATES
    return _PIPELINE.index(target) > _PIPELINE.index(source)
