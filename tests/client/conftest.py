"""A real uvicorn server of the app, and an API key for it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.main import create_app
from service.auth import CreatedKey
from service.jobs.store import JobStore
from tests.service.fixtures import make_key, make_settings
from tests.service.server import serve


@dataclass
class Service:
    """A served app: its URL, store and one key."""

    url: str
    store: JobStore
    key: CreatedKey


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    """The API on 127.0.0.1 with a SQLite store and embedded broker (no worker)."""
    app = create_app(make_settings(tmp_path), run_reaper=False, events_poll_s=0.05)
    with serve(app) as url:
        store: JobStore = app.state.store
        yield Service(url=url, store=store, key=make_key(store))
