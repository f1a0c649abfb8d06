"""API test fixtures: an app on a fresh SQLite store and embedded broker, and two API keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from service.auth import CreatedKey
from service.jobs.store import JobStore
from service.settings import Settings
from tests.service.fixtures import make_key, make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with the job store and the broker as SQLite files under ``tmp_path``."""
    return make_settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The real app with the real Celery dispatcher; the reaper loop is off for determinism."""
    return create_app(settings, run_reaper=False, events_poll_s=0.05)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An httpx-based client running the app's lifespan (migrations included)."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def store(app: FastAPI, client: TestClient) -> JobStore:
    """The app's job store, after its migrations ran."""
    job_store: JobStore = app.state.store
    return job_store


@pytest.fixture
def key(store: JobStore) -> CreatedKey:
    """An API key of the caller."""
    return make_key(store, "alice")


@pytest.fixture
def other_key(store: JobStore) -> CreatedKey:
    """An API key of another client."""
    return make_key(store, "bob")


def auth(key: CreatedKey) -> dict[str, str]:
    """Return the Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key.secret}"}
