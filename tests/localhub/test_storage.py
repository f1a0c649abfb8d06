"""Storage units: blobs, commits and their rules, without HTTP."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from localhub.lfs_rules import LFS_SIZE_THRESHOLD, lfs_patterns, upload_mode
from localhub.storage import Storage
from localhub.storage.blobs import BlobMismatchError
from localhub.storage.commits import (
    AddFile,
    CommitRejectedError,
    DeleteFile,
    DeleteFolder,
    EntryMissingError,
    ParentCommitMismatchError,
    RevisionMissingError,
    apply_commit,
)
from localhub.storage.gitobjects import git_blob_oid
from localhub.storage.records import FileEntry, RepoType
from localhub.storage.repos import is_valid_repo_id

MODEL = RepoType.MODEL


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    store = Storage(tmp_path / "storage")
    store.repos.create(MODEL, "alice/tiny", private=False, created_by="alice")
    return store


def _add(storage: Storage, path: str, data: bytes) -> AddFile:
    sha256 = storage.blobs.put_bytes(data)
    return AddFile(path, FileEntry(sha256, len(data), lfs=False, git_oid=git_blob_oid(data)))


def _commit(storage: Storage, *operations: object, **options: object) -> str:
    result = apply_commit(
        storage.repos,
        MODEL,
        "alice/tiny",
        revision=str(options.pop("revision", "main")),
        operations=list(operations),  # type: ignore[arg-type]
        summary="test",
        description="",
        author="alice",
        **options,  # type: ignore[arg-type]
    )
    return result.commit.oid


def test_git_blob_oid_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin` prints this id.
    assert git_blob_oid(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_blob_writer_rejects_wrong_sha256(storage: Storage) -> None:
    wrong = hashlib.sha256(b"other").hexdigest()

    with storage.blobs.writer() as writer, pytest.raises(BlobMismatchError, match="sha256"):
        writer.write(b"content")
        writer.finish(expected_sha256=wrong, expected_size=7)

    assert storage.blobs.size(wrong) is None
    assert list(storage.blobs.tmp_dir.iterdir()) == []


def test_commit_adds_and_deletes(storage: Storage) -> None:
    _commit(storage, _add(storage, "a/b.txt", b"1"), _add(storage, "a/c.txt", b"2"))
    oid = _commit(storage, DeleteFile("a/b.txt"))

    head = storage.repos.resolve(MODEL, "alice/tiny", "main")
    assert head is not None
    assert head.oid == oid
    assert sorted(head.files) == [".gitattributes", "a/c.txt"]
    _commit(storage, DeleteFolder("a"))
    head = storage.repos.resolve(MODEL, "alice/tiny", oid)
    assert head is not None
    assert "a/c.txt" in head.files  # an old commit is unchanged


def test_commit_rejects_file_folder_clash(storage: Storage) -> None:
    _commit(storage, _add(storage, "a", b"file"))

    with pytest.raises(CommitRejectedError, match="inside 'a'"):
        _commit(storage, _add(storage, "a/b", b"nested"))


def test_commit_rejects_missing_deletions(storage: Storage) -> None:
    with pytest.raises(EntryMissingError):
        _commit(storage, DeleteFile("missing.txt"))
    with pytest.raises(EntryMissingError):
        _commit(storage, DeleteFolder("missing"))


def test_commit_checks_parent_and_target(storage: Storage) -> None:
    first = _commit(storage, _add(storage, "a.txt", b"1"))
    _commit(storage, _add(storage, "b.txt", b"2"))

    with pytest.raises(ParentCommitMismatchError):
        _commit(storage, _add(storage, "c.txt", b"3"), parent_commit=first)
    with pytest.raises(RevisionMissingError):
        _commit(storage, _add(storage, "c.txt", b"3"), revision="nope")
    with pytest.raises(CommitRejectedError, match="only a branch"):
        _commit(storage, _add(storage, "c.txt", b"3"), revision=first)


def test_repo_ids() -> None:
    assert is_valid_repo_id("alice/tiny-llama_v1.0")
    for invalid in ("tiny", "a/b/c", "alice/../x", "alice/x--y", "alice/-x", "alice/x.git", "../x"):
        assert not is_valid_repo_id(invalid), invalid


def test_upload_mode_rules() -> None:
    patterns = lfs_patterns(
        "*.safetensors filter=lfs diff=lfs merge=lfs -text\n# *.txt filter=lfs\n"
    )

    assert patterns == ["*.safetensors"]
    assert upload_mode("sub/model.safetensors", 10, b"{}", patterns) == "lfs"
    assert upload_mode("notes.txt", 10, b"text", patterns) == "regular"
    assert upload_mode("notes.txt", LFS_SIZE_THRESHOLD + 1, b"text", patterns) == "lfs"
    assert upload_mode("raw.dat", 10, b"\x00\x01", patterns) == "lfs"
    assert upload_mode("model.safetensors", 0, b"", patterns) == "regular"
