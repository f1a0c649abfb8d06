"""whoami and token handling, through the real huggingface_hub client."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from localhub.testing import ALICE_READ, ALICE_WRITE, TEST_ORG


def test_whoami_write_token(hub_api: Callable[[str | None], HfApi]) -> None:
    info = hub_api(ALICE_WRITE).whoami()

    assert info["name"] == "alice"
    assert info["type"] == "user"
    assert [org["name"] for org in info["orgs"]] == [TEST_ORG]
    assert info["auth"]["accessToken"]["role"] == "write"


def test_whoami_read_token(hub_api: Callable[[str | None], HfApi]) -> None:
    info = hub_api(ALICE_READ).whoami()

    assert info["name"] == "alice"
    assert info["auth"]["accessToken"]["role"] == "read"


def test_whoami_unknown_token(hub_api: Callable[[str | None], HfApi]) -> None:
    with pytest.raises(HfHubHTTPError) as raised:
        hub_api("hf_not_a_known_token").whoami()

    assert raised.value.response.status_code == 401
    assert "Invalid user token" in str(raised.value)
