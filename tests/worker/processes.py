"""Real Celery worker processes on a temporary job store, broker and local Hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from service.db.engine import make_engine, make_session_factory
from service.db.migrate import upgrade_to_head
from service.jobs.secrets import TokenCipher
from service.jobs.store import JobStore
from service.settings import Settings
from tests.service.fixtures import TEST_SECRET, make_settings

__all__ = [
    "FAKE_WORKER",
    "REAL_WORKER",
    "WorkerEnv",
    "WorkerProcess",
    "build_worker_env",
    "wait_for",
    "worker_environment",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
# The worker with the fake quantizer, and the production worker entry point.
FAKE_WORKER = "tests.worker.fake_worker"
REAL_WORKER = "worker.main"
# Variables of the library itself, which the settings do not own.
_LIBRARY_VARIABLES = ("RUQUANT_DATA_DIR", "RUQUANT_CACHE_DIR")


@dataclass
class WorkerProcess:
    """A running worker and its log file."""

    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class WorkerEnv:
    """Settings, environment and store shared by the test and its worker processes."""

    settings: Settings
    env: dict[str, str]
    store: JobStore
    tmp_path: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(
        self, name: str, *, module: str = FAKE_WORKER, timeout: float = 60, **extra_env: str
    ) -> WorkerProcess:
        """Start ``python -m module`` as a Celery worker and wait until it is ready."""
        log = self.tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                f"--hostname={name}@test",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=REPO_ROOT,
            env={**self.env, **extra_env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = WorkerProcess(process, log)
        self.workers.append(worker)
        deadline = time.monotonic() + timeout
        while " ready." not in worker.log_text():
            if process.poll() is not None or time.monotonic() > deadline:
                worker.stop()
                raise AssertionError(f"worker {name} did not start:\n{worker.log_text()}")
            time.sleep(0.2)
        return worker

    def stop_workers(self) -> None:
        """Stop every worker this environment started."""
        for worker in self.workers:
            worker.stop()


def wait_for(
    condition: Callable[[], bool], timeout: float = 30, what: str = "the condition"
) -> None:
    """Poll ``condition`` every 0.1 s until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _setting_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return json.dumps({key: str(item) for key, item in value.items()})
    return str(value)


def worker_environment(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Return the environment that gives a child process ``settings`` and a private Hub cache.

    Every setting given explicitly becomes its ``RUQUANT_*`` variable; other ``RUQUANT_*`` and
    ``HF_*`` variables of this process are dropped, except the library's own.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUQUANT_", "HF_")) or key in _LIBRARY_VARIABLES
    }
    for name in settings.model_fields_set:
        env[f"RUQUANT_{name.upper()}"] = _setting_value(getattr(settings, name))
    env.update(
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "hf-home"),
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def build_worker_env(tmp_path: Path, **overrides: object) -> WorkerEnv:
    """Create settings with fast heartbeats, migrate the store, and return the environment."""
    values: dict[str, object] = {
        "heartbeat_interval_s": 0.3,
        # Far above the interval, so a worker starved of CPU on a busy runner is not taken
        # for a dead one.
        "heartbeat_stale_s": 5.0,
        "cancel_grace_s": 60.0,
        **overrides,
    }
    settings = make_settings(tmp_path, **values)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.resolved_database_url)
    store = JobStore(
        make_session_factory(make_engine(settings.resolved_database_url)), TokenCipher(TEST_SECRET)
    )
    return WorkerEnv(settings, worker_environment(settings, tmp_path), store, tmp_path)
