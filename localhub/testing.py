"""Point the real `huggingface_hub` client (and transformers) at a local Hub inside tests.

huggingface_hub 2.4 reads `HF_ENDPOINT`, `HF_HUB_DISABLE_XET`, `HF_HUB_CACHE` and
`HF_HUB_OFFLINE` once, when `huggingface_hub.constants` is imported. Setting the environment
variables later changes nothing in the running process, so `configure_client` also patches the
constants and the objects built from them at import time:

- `huggingface_hub.hf_api.api`, the `HfApi` behind top-level functions such as
  `huggingface_hub.create_repo`, which stored the endpoint when it was created;
- `transformers.utils.hub._hf_api`, the `HfApi` that `push_to_hub` uses, created on first use
  and then kept (reset so that it is rebuilt with the patched endpoint).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

__all__ = ["ALICE_READ", "ALICE_WRITE", "BOB_WRITE", "TEST_ORG", "TEST_TOKENS", "configure_client"]

ALICE_WRITE = "hf_local_alice_write"
ALICE_READ = "hf_local_alice_read"
BOB_WRITE = "hf_local_bob_write"
TEST_ORG = "ruquant-org"

# Tokens of the `localhub` pytest fixture, in the token file format.
TEST_TOKENS: dict[str, dict[str, object]] = {
    ALICE_WRITE: {"user": "alice", "orgs": [TEST_ORG], "role": "write"},
    ALICE_READ: {"user": "alice", "orgs": [TEST_ORG], "role": "read"},
    BOB_WRITE: {"user": "bob", "orgs": [], "role": "write"},
}


def configure_client(monkeypatch: pytest.MonkeyPatch, endpoint: str, cache_dir: Path) -> None:
    """Send every huggingface_hub call of the current test to `endpoint`, without Xet.

    Also isolates the test from the machine's Hub settings: downloads are cached under
    `cache_dir`, offline mode is off, and no `HF_TOKEN` or saved token is picked up, so calls
    without an explicit token are anonymous.
    """
    from huggingface_hub import constants, hf_api

    token_path = cache_dir / "no-saved-token"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache_dir))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    url_template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_path))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache_dir / "no-stored-tokens"))
    monkeypatch.setattr(hf_api.api, "endpoint", endpoint)

    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)
