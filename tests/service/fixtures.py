"""Fixtures shared by the service, API and worker tests: migrated job stores, keys, settings."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.auth import CreatedKey, create_key
from service.db.engine import make_engine, make_session_factory
from service.db.migrate import upgrade_to_head
from service.jobs.secrets import TokenCipher
from service.jobs.store import JobStore
from service.settings import Settings

__all__ = [
    "POSTGRES_ADMIN_URL",
    "make_key",
    "make_settings",
    "postgres_database",
    "sqlite_url",
    "store_for",
]

POSTGRES_ADMIN_URL = os.environ.get(
    "RUQUANT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TEST_SECRET = "test-secret-key-for-token-encryption"


def sqlite_url(tmp_path: Path) -> str:
    """Return a SQLite URL for a new file under ``tmp_path``."""
    return f"sqlite:///{tmp_path / 'jobs.sqlite'}"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database for this test session and drop it afterwards."""
    name = f"ruquant_test_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any connection failure means "no server here"
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}")
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def store_for(url: str) -> JobStore:
    """Migrate the database at ``url`` and return a store on it."""
    upgrade_to_head(url)
    return JobStore(make_session_factory(make_engine(url)), TokenCipher(TEST_SECRET))


def make_key(store: JobStore, name: str = "tester") -> CreatedKey:
    """Create an API key in the store's database."""
    with store.session() as session:
        return create_key(session, name)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Return test settings with an isolated work dir and SQLite files under ``tmp_path``."""
    values: dict[str, object] = {
        "environment": "test",
        "work_dir": tmp_path / "work",
        "database_url": sqlite_url(tmp_path),
        "secret_key": TEST_SECRET,
        "hub_endpoint": "http://127.0.0.1:9",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
