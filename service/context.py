"""Build the job store and the dispatcher from settings (one place for the wiring)."""

from __future__ import annotations

from service.db.engine import session_factory_for
from service.jobs.secrets import TokenCipher
from service.jobs.store import JobStore
from service.settings import Settings

__all__ = ["store_from_settings"]


def store_from_settings(settings: Settings) -> JobStore:
    """Return a job store on the configured database, with tokens encrypted by the secret key."""
    return JobStore(
        session_factory_for(settings.resolved_database_url),
        TokenCipher(settings.secret_key.get_secret_value()),
    )
