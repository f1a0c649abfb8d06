"""Progress and liveness of a running job: store updates, ETA, heartbeats, cancel checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ruquant.progress import ProgressEvent
from service.jobs.states import FINAL_STATES, JobState
from service.jobs.store import JobStore
from service.logging import job_context

__all__ = ["Heartbeat", "ProgressReporter", "STAGE_STATES"]

logger = logging.getLogger(__name__)

# Library stages mapped to job states; stages not listed keep the current state. The library
# also evaluates the float model before calibrating, which stays part of the calibrating state:
# the job moves to evaluating only for the evaluation after calibration.
STAGE_STATES = {"calibrating": JobState.CALIBRATING, "evaluating": JobState.EVALUATING}


class ProgressReporter:
    """Turn library progress events into job progress rows, and implement ``should_stop``.

    Progress writes are throttled to one per ``min_interval_s`` except for stage changes and the
    last step of a stage. The ETA extrapolates the elapsed time over the run's completed fraction.
    """

    def __init__(
        self,
        store: JobStore,
        job_id: str,
        *,
        min_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._job_id = job_id
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._started = clock()
        self._last_write = float("-inf")
        self._last_stage: str | None = None
        self._calibrated = False
        self._stop = False

    def __call__(self, event: ProgressEvent) -> None:
        now = self._clock()
        stage_changed = event.stage != self._last_stage
        if stage_changed:
            self._calibrated = self._calibrated or event.stage == "calibrating"
            target = STAGE_STATES.get(event.stage)
            if target is JobState.EVALUATING and not self._calibrated:
                target = None
            if target is not None:
                self._store.transition(self._job_id, target, reason=f"stage {event.stage}")
            self._last_stage = event.stage
        last_step = event.step >= event.total
        if not (stage_changed or last_step or now - self._last_write >= self._min_interval_s):
            return
        fraction = min(max(event.fraction, 0.0), 1.0)
        elapsed = now - self._started
        eta = elapsed * (1.0 - fraction) / fraction if fraction > 0 else None
        self._store.record_progress(
            self._job_id,
            stage=event.stage,
            step=event.step,
            total=event.total,
            percent=round(100.0 * fraction, 2),
            eta_s=None if eta is None else round(eta, 1),
            message=event.message,
        )
        self._last_write = now

    def should_stop(self) -> bool:
        """Return True once cancel was requested or the job ended elsewhere (reaper, cancel).

        The library calls this before each layer and each evaluation window. Every call reads
        the store (and stamps the heartbeat), so a cancelled job stops at the next boundary.
        """
        if not self._stop:
            status = self._store.heartbeat(self._job_id)
            self._stop = status is None or status[1] or status[0] in FINAL_STATES
        return self._stop


class Heartbeat:
    """A daemon thread stamping the job's heartbeat every ``interval_s`` while the job runs.

    It keeps the job alive in the store during long steps that send no progress event (a large
    download, one slow layer); a killed child stops it, which is what the reaper detects.
    """

    def __init__(self, store: JobStore, job_id: str, interval_s: float) -> None:
        self._store = store
        self._job_id = job_id
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._interval_s + 5)

    def _run(self) -> None:
        with job_context(self._job_id):
            while not self._stopped.wait(self._interval_s):
                try:
                    self._store.heartbeat(self._job_id)
                except Exception:  # noqa: BLE001 - a failed beat must not kill the thread
                    logger.exception("heartbeat write failed; retrying next interval")
