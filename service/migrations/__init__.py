"""Alembic migrations of the job store; run them with ``ruquant-service migrate``."""
