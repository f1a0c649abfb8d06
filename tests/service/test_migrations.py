"""Alembic migrations: upgrade on an empty database matches the ORM metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from service.db.migrate import upgrade_to_head
from service.db.models import Base
from tests.service.fixtures import sqlite_url


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return list(diff)


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    upgrade_to_head(url)
    upgrade_to_head(url)  # a second run is a no-op
    assert _diff(url) == []


def test_postgres_schema_matches_models(request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_database")
    upgrade_to_head(url)
    assert _diff(url) == []
