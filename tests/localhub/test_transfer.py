"""Uploads and downloads through the real client: LFS and regular files, revisions, errors."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    RepoFile,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from localhub.lfs_rules import LFS_SIZE_THRESHOLD
from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE

ApiFactory = Callable[[str | None], HfApi]

REPO = "alice/tiny"


@pytest.fixture
def api(hub_api: ApiFactory) -> HfApi:
    """Client of alice, who owns the empty model repository `REPO`."""
    client = hub_api(ALICE_WRITE)
    client.create_repo(REPO)
    return client


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with one file above the LFS size threshold and small files in a subfolder."""
    root = tmp_path / "upload"
    (root / "sub").mkdir(parents=True)
    (root / "big.dat").write_bytes(random.Random(0).randbytes(LFS_SIZE_THRESHOLD + 1024))
    (root / "notes.txt").write_text("small regular file\n")
    (root / "sub" / "config.json").write_text('{"hidden_size": 8}\n')
    return root


def _relative_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_upload_folder_one_commit(api: HfApi, folder: Path) -> None:
    before = api.list_repo_commits(REPO)

    commit = api.upload_folder(repo_id=REPO, folder_path=folder)

    after = api.list_repo_commits(REPO)
    assert len(after) == len(before) + 1
    assert after[0].commit_id == commit.oid
    tree = api.list_repo_tree(REPO, recursive=True)
    files = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    assert files["big.dat"].lfs is not None  # sent through the LFS batch API and PUT
    assert files["notes.txt"].lfs is None  # sent inline in the commit as base64
    assert files["sub/config.json"].lfs is None


def test_snapshot_download_same_bytes(localhub: LocalHubFixture, api: HfApi, folder: Path) -> None:
    api.upload_folder(repo_id=REPO, folder_path=folder)

    snapshot = Path(snapshot_download(REPO, cache_dir=localhub.cache_dir))

    downloaded = _relative_files(snapshot)
    assert downloaded.pop(".gitattributes").startswith(b"*.7z filter=lfs")
    assert downloaded == _relative_files(folder)


def test_hf_hub_download_same_bytes(localhub: LocalHubFixture, api: HfApi, folder: Path) -> None:
    commit = api.upload_folder(repo_id=REPO, folder_path=folder)

    for name in ("big.dat", "notes.txt", "sub/config.json"):
        path = hf_hub_download(REPO, name, revision=commit.oid, cache_dir=localhub.cache_dir)
        assert Path(path).read_bytes() == (folder / name).read_bytes(), name


def test_download_headers_and_range(localhub: LocalHubFixture, api: HfApi, folder: Path) -> None:
    commit = api.upload_folder(repo_id=REPO, folder_path=folder)
    big = (folder / "big.dat").read_bytes()
    url = f"{localhub.endpoint}/{REPO}/resolve/main/big.dat"

    head = httpx2.head(url)
    part = httpx2.get(url, headers={"Range": "bytes=10-19"})

    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == commit.oid
    assert head.headers["X-Linked-Size"] == str(len(big))
    assert head.headers["X-Linked-Etag"] == head.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(big))
    assert part.status_code == 206
    assert part.content == big[10:20]


def test_upload_skips_unchanged_files(api: HfApi, folder: Path) -> None:
    first = api.upload_folder(repo_id=REPO, folder_path=folder)

    second = api.upload_folder(repo_id=REPO, folder_path=folder)

    # The preupload response gives each file's remote oid, so the client finds nothing to commit.
    assert second.oid == first.oid


def test_delete_file_and_folder(api: HfApi, folder: Path) -> None:
    api.upload_folder(repo_id=REPO, folder_path=folder)

    api.create_commit(
        repo_id=REPO,
        operations=[
            CommitOperationDelete("notes.txt"),
            CommitOperationDelete("sub/", is_folder=True),
        ],
        commit_message="Remove small files",
    )

    paths = api.list_repo_files(REPO)
    assert paths == [".gitattributes", "big.dat"]
    with pytest.raises(EntryNotFoundError):
        api.delete_file("notes.txt", repo_id=REPO)


def test_missing_file_entry_not_found(localhub: LocalHubFixture, api: HfApi) -> None:
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.bin", cache_dir=localhub.cache_dir)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, path_in_repo="missing-folder"))
    assert not api.file_exists(REPO, "missing.bin")


def test_unknown_revision_not_found(localhub: LocalHubFixture, api: HfApi) -> None:
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, ".gitattributes", revision="v9", cache_dir=localhub.cache_dir)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(
            path_or_fileobj=b"x", path_in_repo="a.txt", repo_id=REPO, revision="no-such-branch"
        )


def test_parent_commit_mismatch_rejected(api: HfApi) -> None:
    start = api.model_info(REPO).sha
    assert start is not None
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=REPO)

    with pytest.raises(HfHubHTTPError) as raised:
        api.create_commit(
            repo_id=REPO,
            operations=[CommitOperationAdd("two.txt", b"2")],
            commit_message="Stale parent",
            parent_commit=start,
        )

    assert raised.value.response.status_code == 412
    assert "two.txt" not in api.list_repo_files(REPO)


def test_branch_tag_and_pull_request(localhub: LocalHubFixture, api: HfApi) -> None:
    api.create_branch(REPO, branch="dev")
    api.upload_file(path_or_fileobj=b"dev", path_in_repo="dev.txt", repo_id=REPO, revision="dev")
    api.create_tag(REPO, tag="v1", revision="dev")
    pull = api.upload_file(
        path_or_fileobj=b"pr", path_in_repo="pr.txt", repo_id=REPO, create_pr=True
    )

    refs = api.list_repo_refs(REPO, include_pull_requests=True)

    assert sorted(branch.name for branch in refs.branches) == ["dev", "main"]
    assert [tag.name for tag in refs.tags] == ["v1"]
    assert pull.pr_revision == "refs/pr/1"
    assert "dev.txt" not in api.list_repo_files(REPO)
    assert "dev.txt" in api.list_repo_files(REPO, revision="v1")
    assert "pr.txt" in api.list_repo_files(REPO, revision="refs/pr/1")
    path = hf_hub_download(REPO, "pr.txt", revision="refs/pr/1", cache_dir=localhub.cache_dir)
    assert Path(path).read_bytes() == b"pr"


def test_dataset_upload_and_download(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/calib", repo_type="dataset")

    api.upload_file(
        path_or_fileobj=b"text\n",
        path_in_repo="train.txt",
        repo_id="alice/calib",
        repo_type="dataset",
    )
    path = hf_hub_download(
        "alice/calib", "train.txt", repo_type="dataset", cache_dir=localhub.cache_dir
    )

    assert Path(path).read_bytes() == b"text\n"
    assert api.list_repo_files("alice/calib", repo_type="dataset") == [
        ".gitattributes",
        "train.txt",
    ]
    with pytest.raises(RepositoryNotFoundError):  # no model repository has that id
        hf_hub_download("alice/calib", "train.txt", cache_dir=localhub.cache_dir / "model")
