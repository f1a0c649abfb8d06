"""API keys: creation, lookup by hash, revocation.

A key is ``rq_<id>_<secret>`` with 256 random bits of secret. Only its SHA-256 is stored; a salt
or a slow hash adds nothing for random keys of that length, and SHA-256 keeps lookup one index hit.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.models import ApiKey, utcnow

__all__ = ["CreatedKey", "authenticate", "create_key", "hash_key", "list_keys", "revoke_key"]

_PREFIX = "rq_"


@dataclass(frozen=True)
class CreatedKey:
    """A newly created key; ``secret`` is shown once and never stored."""

    id: str
    name: str
    secret: str


def hash_key(secret: str) -> str:
    """Return the hex SHA-256 of a full key string."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str) -> CreatedKey:
    """Create and store a key named ``name``; the caller commits."""
    key_id = secrets.token_hex(6)
    secret = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, name=name, key_hash=hash_key(secret)))
    return CreatedKey(id=key_id, name=name, secret=secret)


def authenticate(session: Session, secret: str) -> ApiKey | None:
    """Return the active key matching ``secret``, or ``None``."""
    if not secret.startswith(_PREFIX):
        return None
    digest = hash_key(secret)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if key is None or key.revoked_at is not None:
        return None
    return key


def list_keys(session: Session) -> list[ApiKey]:
    """Return every key, revoked ones included, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def revoke_key(session: Session, key_id: str) -> bool:
    """Revoke ``key_id``; return whether an active key was revoked. The caller commits."""
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
