"""Store fixtures for the service tests: one SQLite and one PostgreSQL variant."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from service.jobs.store import JobStore
from tests.service.fixtures import postgres_database, sqlite_url, store_for

__all__ = ["postgres_database", "store"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    """A migrated, empty job store on SQLite or PostgreSQL."""
    if request.param == "sqlite":
        return store_for(sqlite_url(tmp_path))
    database = request.getfixturevalue("postgres_database")
    job_store = store_for(database)
    with job_store.session() as session:
        for table in ("job_transitions", "job_secrets", "jobs", "api_keys"):
            session.execute(text(f"DELETE FROM {table}"))
    return job_store
