"""Run the Alembic migrations of the job store from code (no alembic.ini needed)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from service.db.engine import make_engine

__all__ = ["alembic_config", "upgrade_to_head"]

logger = logging.getLogger(__name__)

_SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed 64-bit number works; it only has to be the same in every process that migrates.
_PG_LOCK_ID = 7_314_220_518


def alembic_config(url: str) -> Config:
    """Return an Alembic config for ``url`` pointing at this package's migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Upgrade the database at ``url`` to the latest revision.

    On PostgreSQL an advisory lock makes concurrent callers (several API replicas starting at
    once) run the migrations one after the other.
    """
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
    logger.info("job store schema is at head (%s)", engine.url.render_as_string(hide_password=True))
