"""End-to-end fixtures: the local Hub, and the Redis database the broker uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from localhub.pytest_plugin import localhub, localhub_endpoint  # noqa: F401

__all__ = ["localhub", "localhub_endpoint", "redis_url"]

# A database of the local Redis that no other test uses; it is emptied before and after.
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of an empty Redis database; the test is skipped when Redis is not reachable."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()
