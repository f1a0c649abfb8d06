"""The whole service on 127.0.0.1: local Hub, API over HTTP, and a real Celery worker process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from api.main import create_app
from localhub.pytest_plugin import LocalHubFixture
from ruquant_client.client import Client, RetryPolicy
from service.auth import CreatedKey
from tests.service.fixtures import make_key
from tests.service.server import serve
from tests.worker.processes import REAL_WORKER, WorkerEnv, WorkerProcess, build_worker_env

__all__ = ["Stack", "running_stack"]


@dataclass
class Stack:
    """A running service: its Hub, worker environment, API URL, one API key and a client."""

    hub: LocalHubFixture
    env: WorkerEnv
    url: str
    key: CreatedKey
    client: Client
    worker: WorkerProcess


@contextmanager
def running_stack(
    tmp_path: Path,
    hub: LocalHubFixture,
    *,
    worker_module: str = REAL_WORKER,
    worker_env: dict[str, str] | None = None,
    **settings: object,
) -> Iterator[Stack]:
    """Start the API and one worker on ``settings``; by default the production worker."""
    env = build_worker_env(
        tmp_path,
        hub_endpoint=hub.endpoint,
        heartbeat_interval_s=1.0,
        heartbeat_stale_s=10.0,
        progress_interval_s=0.0,
        **settings,
    )
    # One intra-op thread: tiny models gain nothing from more, and the CI runner is shared.
    env.env["OMP_NUM_THREADS"] = "1"
    app = create_app(env.settings, run_reaper=False, events_poll_s=0.1)
    try:
        worker = env.start_worker("e2e", module=worker_module, **(worker_env or {}))
        with serve(app) as url:
            key = make_key(app.state.store, "e2e")
            with Client(url, key.secret, retry=RetryPolicy(attempts=2)) as client:
                yield Stack(hub, env, url, key, client, worker)
    finally:
        env.stop_workers()
