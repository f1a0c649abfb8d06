"""Fixtures for the local Hub tests: a server per test and clients for the test users."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from huggingface_hub import HfApi

from localhub.pytest_plugin import LocalHubFixture, localhub, localhub_endpoint

__all__ = ["localhub", "localhub_endpoint"]


@pytest.fixture
def hub_api(localhub: LocalHubFixture) -> Callable[[str | None], HfApi]:
    """Factory of `HfApi` clients of the local Hub: `hub_api(token)`; None is anonymous."""

    def make(token: str | None) -> HfApi:
        # token=False makes HfApi send no token at all, rather than look for a saved one.
        return HfApi(endpoint=localhub.endpoint, token=token if token is not None else False)

    return make
