"""Fixtures that start real Celery worker processes against a local Hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localhub.pytest_plugin import LocalHubFixture, localhub, localhub_endpoint  # noqa: F401
from tests.worker.processes import WorkerEnv, build_worker_env

__all__ = ["localhub", "localhub_endpoint", "worker_env"]


@pytest.fixture
def worker_env(tmp_path: Path, localhub: LocalHubFixture) -> Iterator[WorkerEnv]:  # noqa: F811
    """Workers on a SQLite store and embedded SQLite broker, talking to a local Hub."""
    env = build_worker_env(tmp_path, hub_endpoint=localhub.endpoint)
    try:
        yield env
    finally:
        env.stop_workers()
