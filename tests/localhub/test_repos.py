"""Repository lifecycle, visibility, gating and write permissions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

from localhub import admin
from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_READ, ALICE_WRITE, BOB_WRITE, TEST_ORG

ApiFactory = Callable[[str | None], HfApi]


def test_create_repo_returns_url(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    url = hub_api(ALICE_WRITE).create_repo("alice/tiny")

    assert url == f"{localhub.endpoint}/alice/tiny"
    assert url.repo_id == "alice/tiny"
    assert url.repo_type == "model"


def test_create_repo_twice_conflicts(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/tiny")

    with pytest.raises(HfHubHTTPError) as raised:
        api.create_repo("alice/tiny")
    assert raised.value.response.status_code == 409

    assert api.create_repo("alice/tiny", exist_ok=True).repo_id == "alice/tiny"


def test_create_dataset_repo(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)

    url = api.create_repo("alice/calib", repo_type="dataset")

    assert url == f"{localhub.endpoint}/datasets/alice/calib"
    assert api.dataset_info("alice/calib").id == "alice/calib"
    assert not api.repo_exists("alice/calib")  # no model of that name


def test_create_repo_in_org(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)

    api.create_repo(f"{TEST_ORG}/shared")

    assert api.model_info(f"{TEST_ORG}/shared").author == TEST_ORG


def test_delete_repo(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/tiny")

    api.delete_repo("alice/tiny")

    assert not api.repo_exists("alice/tiny")
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo("alice/tiny")
    api.delete_repo("alice/tiny", missing_ok=True)


def test_new_repo_has_gitattributes(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/tiny")

    info = api.model_info("alice/tiny")

    assert info.sha is not None
    assert len(info.sha) == 40
    assert [sibling.rfilename for sibling in info.siblings or []] == [".gitattributes"]
    assert info.private is False
    assert info.gated is False


def test_repo_info_card_config_safetensors(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/tiny")
    card = "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- ruquant\n---\n# Tiny\n"
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8}
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}})
    safetensors = len(header).to_bytes(8, "little") + header.encode() + bytes(24)
    for path, content in (
        ("README.md", card.encode()),
        ("config.json", json.dumps(config).encode()),
        ("model.safetensors", safetensors),
    ):
        api.upload_file(path_or_fileobj=content, path_in_repo=path, repo_id="alice/tiny")

    info = api.model_info("alice/tiny")

    assert info.card_data is not None
    assert info.card_data.license == "apache-2.0"
    assert info.tags == ["ruquant"]
    assert info.library_name == "transformers"
    assert info.config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert info.safetensors is not None
    assert info.safetensors.total == 6
    assert info.safetensors.parameters == {"F32": 6}


def test_private_repo_hidden_from_others(hub_api: ApiFactory) -> None:
    hub_api(ALICE_WRITE).create_repo("alice/secret", private=True)

    assert hub_api(ALICE_WRITE).model_info("alice/secret").private is True
    assert hub_api(ALICE_READ).model_info("alice/secret").private is True
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        hub_api(None).model_info("alice/secret")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as other_user:
        hub_api(BOB_WRITE).model_info("alice/secret")
    assert other_user.value.response.status_code == 404


def test_private_repo_download_hidden(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/secret", private=True)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="alice/secret")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("alice/secret", "a.txt", token=BOB_WRITE, cache_dir=localhub.cache_dir)
    assert hub_api(None).repo_exists("alice/secret") is False


def test_settings_make_repo_private(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/tiny")

    api.update_repo_settings("alice/tiny", private=True)

    with pytest.raises(RepositoryNotFoundError):
        hub_api(BOB_WRITE).model_info("alice/tiny")


def test_gated_repo_rejects_download(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/gated")
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id="alice/gated")
    admin.set_gated(localhub.storage_dir, "alice/gated", admin.GateMode.MANUAL)

    assert hub_api(BOB_WRITE).model_info("alice/gated").gated == "manual"
    with pytest.raises(GatedRepoError) as authenticated:
        hf_hub_download("alice/gated", "w.bin", token=BOB_WRITE, cache_dir=localhub.cache_dir)
    assert authenticated.value.response.status_code == 403
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("alice/gated", "w.bin", token=False, cache_dir=localhub.cache_dir)
    assert anonymous.value.response.status_code == 401


def test_gated_repo_owner_and_grantee(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/gated")
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id="alice/gated")
    api.update_repo_settings("alice/gated", gated="auto")

    owner_copy = hf_hub_download(
        "alice/gated", "w.bin", token=ALICE_WRITE, cache_dir=localhub.cache_dir
    )
    admin.grant_access(localhub.storage_dir, "alice/gated", "bob")
    bob_copy = hf_hub_download(
        "alice/gated", "w.bin", token=BOB_WRITE, cache_dir=localhub.cache_dir / "bob"
    )

    assert Path(owner_copy).read_bytes() == b"weights"
    assert Path(bob_copy).read_bytes() == b"weights"


def test_read_token_cannot_create(hub_api: ApiFactory) -> None:
    with pytest.raises(HfHubHTTPError) as raised:
        hub_api(ALICE_READ).create_repo("alice/tiny")

    assert raised.value.response.status_code == 403
    assert "read role" in str(raised.value)


def test_read_token_cannot_push(hub_api: ApiFactory) -> None:
    hub_api(ALICE_WRITE).create_repo("alice/tiny")

    with pytest.raises(HfHubHTTPError) as raised:
        hub_api(ALICE_READ).upload_file(
            path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="alice/tiny"
        )

    assert raised.value.response.status_code == 403
    assert "403 Forbidden" in str(raised.value)
    assert "read role" in str(raised.value)


def test_other_namespace_cannot_push(hub_api: ApiFactory) -> None:
    hub_api(ALICE_WRITE).create_repo("alice/tiny")

    with pytest.raises(HfHubHTTPError) as push:
        hub_api(BOB_WRITE).upload_file(
            path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="alice/tiny"
        )
    with pytest.raises(HfHubHTTPError) as create:
        hub_api(BOB_WRITE).create_repo("alice/other")

    assert push.value.response.status_code == 403
    assert "cannot write to alice/tiny" in str(push.value)
    assert create.value.response.status_code == 403
    assert "namespace 'alice'" in str(create.value)


def test_anonymous_cannot_push(hub_api: ApiFactory) -> None:
    hub_api(ALICE_WRITE).create_repo("alice/tiny")

    with pytest.raises(HfHubHTTPError) as raised:
        hub_api(None).upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="alice/tiny")

    assert raised.value.response.status_code == 401
