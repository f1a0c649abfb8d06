"""Fixtures that start real Celery worker processes on a temporary store and broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from service.db.engine import make_engine, make_session_factory
from service.db.migrate import upgrade_to_head
from service.jobs.secrets import TokenCipher
from service.jobs.store import JobStore
from service.settings import Settings
from tests.service.fixtures import TEST_SECRET, make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


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

    def start_worker(self, name: str, **extra_env: str) -> WorkerProcess:
        log = self.tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.worker.fake_worker",
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
        deadline = time.monotonic() + 60
        while " ready." not in worker.log_text():
            if process.poll() is not None or time.monotonic() > deadline:
                worker.stop()
                raise AssertionError(f"worker {name} did not start:\n{worker.log_text()}")
            time.sleep(0.2)
        return worker


def wait_for(
    condition: Callable[[], bool], timeout: float = 30, what: str = "the condition"
) -> None:
    """Poll ``condition`` every 0.1 s until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _env_for(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUQUANT_")}
    env.update(
        RUQUANT_ENVIRONMENT="test",
        RUQUANT_WORK_DIR=str(settings.work_dir),
        RUQUANT_DATABASE_URL=settings.resolved_database_url,
        RUQUANT_SECRET_KEY=TEST_SECRET,
        RUQUANT_HEARTBEAT_INTERVAL_S=str(settings.heartbeat_interval_s),
        RUQUANT_HEARTBEAT_STALE_S=str(settings.heartbeat_stale_s),
        RUQUANT_CANCEL_GRACE_S=str(settings.cancel_grace_s),
        RUQUANT_HUB_ENDPOINT=settings.hub_endpoint,
        FAKE_HUB_STATE=str(tmp_path / "hub.json"),
        PYTHONPATH=str(REPO_ROOT),
    )
    if settings.broker_url:
        env["RUQUANT_BROKER_URL"] = settings.broker_url
    return env


def build_worker_env(tmp_path: Path, **overrides: object) -> WorkerEnv:
    """Create settings with fast heartbeats, migrate the store, and return the environment."""
    settings = make_settings(
        tmp_path,
        heartbeat_interval_s=0.3,
        heartbeat_stale_s=2.0,
        cancel_grace_s=60.0,
        **overrides,
    )
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.resolved_database_url)
    store = JobStore(
        make_session_factory(make_engine(settings.resolved_database_url)), TokenCipher(TEST_SECRET)
    )
    os.environ["FAKE_HUB_STATE"] = str(tmp_path / "hub.json")
    return WorkerEnv(settings, _env_for(settings, tmp_path), store, tmp_path)


@pytest.fixture
def worker_env(tmp_path: Path) -> Iterator[WorkerEnv]:
    """A worker environment on SQLite store and embedded SQLite broker; workers stop at the end."""
    env = build_worker_env(tmp_path)
    try:
        yield env
    finally:
        for worker in env.workers:
            worker.stop()
