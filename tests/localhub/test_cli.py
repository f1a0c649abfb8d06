"""The command line: token file edits and admin commands on a storage folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError

from localhub.cli import main
from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE, BOB_WRITE
from localhub.tokens import Role, load_token_file

ApiFactory = Callable[[str | None], HfApi]


def test_add_token_prints_new_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = tmp_path / "tokens.json"

    status = main(
        ["add-token", "--tokens", str(tokens), "--user", "carol", "--role", "write", "--org", "lab"]
    )

    token = capsys.readouterr().out.strip()
    assert status == 0
    assert token.startswith("hf_")
    assert len(token) == 37
    record = load_token_file(tokens)[token]
    assert (record.user, record.orgs, record.role) == ("carol", ("lab",), Role.WRITE)
    assert tokens.stat().st_mode & 0o077 == 0  # readable by the owner only


def test_add_token_yaml_given_value(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"

    main(["add-token", "--tokens", str(tokens), "--user", "dan", "--token", "hf_dan"])
    status = main(["add-token", "--tokens", str(tokens), "--user", "dan", "--token", "hf_dan"])

    assert status == 1  # the same token twice is rejected
    assert yaml.safe_load(tokens.read_text()) == {
        "hf_dan": {"user": "dan", "orgs": [], "role": "read"}
    }


def test_running_server_sees_new_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from localhub import BackgroundHub

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({}))
    with BackgroundHub(tmp_path / "storage", tokens) as hub:
        main(["add-token", "--tokens", str(tokens), "--user", "erin", "--role", "write"])
        token = capsys.readouterr().out.strip()

        name = HfApi(endpoint=hub.endpoint, token=token).whoami()["name"]

    assert name == "erin"


def test_invalid_token_file_rejected(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"hf_x": {"user": "a b", "role": "write"}}))

    with pytest.raises(ValueError, match="token entry #1: 'user' must be a valid user name"):
        load_token_file(tokens)


def test_gate_and_grant_commands(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/gated")
    api.upload_file(path_or_fileobj=b"w", path_in_repo="w.bin", repo_id="alice/gated")
    storage = str(localhub.storage_dir)

    assert main(["gate", "--storage", storage, "alice/gated", "--mode", "manual"]) == 0
    with pytest.raises(GatedRepoError):
        hf_hub_download("alice/gated", "w.bin", token=BOB_WRITE, cache_dir=localhub.cache_dir)
    assert main(["grant", "--storage", storage, "alice/gated", "bob"]) == 0
    granted = hf_hub_download("alice/gated", "w.bin", token=BOB_WRITE, cache_dir=localhub.cache_dir)
    assert main(["revoke", "--storage", storage, "alice/gated", "bob"]) == 0
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            "alice/gated", "w.bin", token=BOB_WRITE, cache_dir=localhub.cache_dir / "again"
        )
    assert main(["gate", "--storage", storage, "alice/gated", "--mode", "off"]) == 0

    assert Path(granted).read_bytes() == b"w"
    assert api.model_info("alice/gated").gated is False


def test_gate_unknown_repo_fails(tmp_path: Path) -> None:
    assert main(["gate", "--storage", str(tmp_path), "alice/missing"]) == 1
