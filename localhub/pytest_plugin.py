"""Pytest fixtures that run a local Hub for one test.

Use them from a conftest.py with `from localhub.pytest_plugin import localhub, localhub_endpoint`
(pytest only loads `pytest_plugins` from the root conftest), then::

    def test_upload(localhub):
        api = HfApi(endpoint=localhub.endpoint, token=ALICE_WRITE)

The tokens in `localhub.testing.TEST_TOKENS` are accepted. The fixture also calls
`configure_client`, so plain `hf_hub_download(...)`, `snapshot_download(...)` and transformers'
`from_pretrained`/`push_to_hub` reach the local Hub too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localhub.server import BackgroundHub
from localhub.testing import TEST_TOKENS, configure_client

__all__ = ["LocalHubFixture", "localhub", "localhub_endpoint"]


@dataclass
class LocalHubFixture:
    """A running local Hub and where it keeps its data."""

    server: BackgroundHub
    storage_dir: Path
    cache_dir: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def endpoint(self) -> str:
        """Base URL of the server."""
        return self.server.endpoint

    def restart(self) -> str:
        """Stop the server, start a new one over the same storage, and return its endpoint.

        The new server listens on another port, and the client is pointed at it.
        """
        self.server.stop()
        endpoint = self.server.start()
        configure_client(self.monkeypatch, endpoint, self.cache_dir)
        return endpoint


@pytest.fixture
def localhub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHubFixture]:
    """Run a local Hub over a fresh storage folder for the duration of one test."""
    storage_dir = tmp_path / "localhub-storage"
    cache_dir = tmp_path / "hf-cache"
    server = BackgroundHub(storage_dir, TEST_TOKENS)
    endpoint = server.start()
    configure_client(monkeypatch, endpoint, cache_dir)
    try:
        yield LocalHubFixture(server, storage_dir, cache_dir, monkeypatch)
    finally:
        server.stop()


@pytest.fixture
def localhub_endpoint(localhub: LocalHubFixture) -> str:
    """Base URL of a local Hub running for one test."""
    return localhub.endpoint
