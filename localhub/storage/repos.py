"""Repositories on disk: one folder each with its settings, refs and commit records.

Layout under the storage root::

    repos/<type>/<namespace>/<name>/settings.json
    repos/<type>/<namespace>/<name>/refs.json
    repos/<type>/<namespace>/<name>/commits/<oid>.json

Commit records never change once written. Settings and refs are replaced atomically, so a reader
that takes no lock reads either the old or the new file. Writers hold the repository lock.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localhub.storage.blobs import BlobStore
from localhub.storage.gitobjects import git_blob_oid
from localhub.storage.records import (
    Commit,
    FileEntry,
    GateMode,
    Refs,
    RepoSettings,
    RepoType,
    commit_oid,
    utc_timestamp,
)

__all__ = [
    "DEFAULT_BRANCH",
    "RepoExistsError",
    "RepoStore",
    "is_valid_repo_id",
    "write_atomic",
]

logger = logging.getLogger(__name__)

DEFAULT_BRANCH = "main"

_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_COMMIT_OID_RE = re.compile(r"[0-9a-f]{40}")
_MAX_NAME_LENGTH = 96

# Patterns that new repositories route to LFS (this list is this server's own choice). The
# preupload endpoint reads .gitattributes at the target revision, so a repository can change
# the list by committing a new file.
_INITIAL_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.ftz",
        "*.gguf",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lz4",
        "*.mlmodel",
        "*.model",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.ot",
        "*.parquet",
        "*.pb",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.rar",
        "*.safetensors",
        "*.tar",
        "*.tflite",
        "*.tgz",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
).encode()


class RepoExistsError(Exception):
    """Raised when creating a repository whose id is already taken."""


def is_valid_repo_id(repo_id: str) -> bool:
    """Return whether `repo_id` is `namespace/name` with Hub-valid parts.

    Each part starts and ends with a letter or digit, may contain `-`, `_` and `.`, has no `--`
    or `..`, and is at most 96 characters. The name may not end with `.git`.
    """
    parts = repo_id.split("/")
    if len(parts) != 2:
        return False
    for part in parts:
        if len(part) > _MAX_NAME_LENGTH or "--" in part or ".." in part:
            return False
        if _NAME_RE.fullmatch(part) is None:
            return False
    return not parts[1].endswith(".git")


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers never see a partly written file."""
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


class RepoStore:
    """Create, read and update repositories stored under `root`."""

    def __init__(self, root: Path, blobs: BlobStore) -> None:
        self.root = root / "repos"
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = blobs
        self._locks: dict[tuple[RepoType, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @contextmanager
    def lock(self, repo_type: RepoType, repo_id: str) -> Iterator[None]:
        """Hold the write lock of one repository, so that commits to it run one at a time.

        NOTE: the lock lives in this process only. The app holds a lock on the whole storage
        folder while it serves, so a second server on the same folder fails to start.
        """
        key = (repo_type, repo_id)
        with self._locks_guard:
            repo_lock = self._locks.setdefault(key, threading.Lock())
        with repo_lock:
            yield

    def _repo_dir(self, repo_type: RepoType, repo_id: str) -> Path:
        if not is_valid_repo_id(repo_id):
            raise ValueError(f"invalid repo id {repo_id!r}: expected 'namespace/name'")
        return self.root / repo_type.value / repo_id

    def load_settings(self, repo_type: RepoType, repo_id: str) -> RepoSettings | None:
        """Return the settings of a repository, or None when it does not exist."""
        if not is_valid_repo_id(repo_id):
            return None
        try:
            text = (self._repo_dir(repo_type, repo_id) / "settings.json").read_text("utf-8")
        except FileNotFoundError:
            return None
        return RepoSettings.from_json(text)

    def save_settings(self, settings: RepoSettings) -> None:
        """Store changed settings. The caller holds the repository lock."""
        repo_dir = self._repo_dir(settings.repo_type, settings.repo_id)
        write_atomic(repo_dir / "settings.json", settings.to_json())

    def create(
        self,
        repo_type: RepoType,
        repo_id: str,
        *,
        private: bool,
        created_by: str,
        gated: GateMode | None = None,
    ) -> RepoSettings:
        """Create a repository whose `main` branch has one commit adding `.gitattributes`.

        `gated` creates the repository already gated, for seeding a storage folder directly.

        Raises:
            RepoExistsError: a repository of this type already has this id.
        """
        repo_dir = self._repo_dir(repo_type, repo_id)
        with self.lock(repo_type, repo_id):
            if (repo_dir / "settings.json").exists():
                raise RepoExistsError(f"{repo_type.value} repository {repo_id} already exists")
            (repo_dir / "commits").mkdir(parents=True, exist_ok=True)
            now = utc_timestamp()
            settings = RepoSettings(
                repo_type=repo_type,
                repo_id=repo_id,
                private=private,
                created_at=now,
                created_by=created_by,
                gated=gated,
            )
            attributes_sha256 = self.blobs.put_bytes(_INITIAL_GITATTRIBUTES)
            files = {
                ".gitattributes": FileEntry(
                    sha256=attributes_sha256,
                    size=len(_INITIAL_GITATTRIBUTES),
                    lfs=False,
                    git_oid=git_blob_oid(_INITIAL_GITATTRIBUTES),
                )
            }
            initial = self.new_commit(
                parents=(),
                files=files,
                summary="initial commit",
                description="",
                author=created_by,
                date=now,
            )
            self.write_commit(repo_type, repo_id, initial)
            self.write_refs(repo_type, repo_id, Refs(branches={DEFAULT_BRANCH: initial.oid}))
            # settings.json is written last: its presence marks the repository as complete.
            self.save_settings(settings)
        logger.info(
            "Created %s repository %s (private=%s, gated=%s)",
            repo_type.value,
            repo_id,
            private,
            gated.value if gated else "no",
        )
        return settings

    def delete(self, repo_type: RepoType, repo_id: str) -> bool:
        """Delete a repository's records and return whether it existed.

        Blobs stay in the blob store, because other repositories may share them.
        """
        repo_dir = self._repo_dir(repo_type, repo_id)
        with self.lock(repo_type, repo_id):
            if not (repo_dir / "settings.json").exists():
                return False
            # Renaming first makes the repository disappear at once for readers.
            trash = repo_dir.with_name(f".deleted-{repo_dir.name}-{uuid.uuid4().hex}")
            repo_dir.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
        logger.info("Deleted %s repository %s", repo_type.value, repo_id)
        return True

    def read_refs(self, repo_type: RepoType, repo_id: str) -> Refs:
        """Return the refs of an existing repository."""
        path = self._repo_dir(repo_type, repo_id) / "refs.json"
        return Refs.from_json(path.read_text("utf-8"))

    def write_refs(self, repo_type: RepoType, repo_id: str, refs: Refs) -> None:
        """Replace the refs of a repository. The caller holds the repository lock."""
        write_atomic(self._repo_dir(repo_type, repo_id) / "refs.json", refs.to_json())

    def read_commit(self, repo_type: RepoType, repo_id: str, oid: str) -> Commit | None:
        """Return commit `oid` of a repository, or None when the repository has no such commit."""
        if _COMMIT_OID_RE.fullmatch(oid) is None:
            return None
        path = self._repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json"
        try:
            return Commit.from_json(path.read_text("utf-8"))
        except FileNotFoundError:
            return None

    def write_commit(self, repo_type: RepoType, repo_id: str, commit: Commit) -> None:
        """Store a new commit record."""
        path = self._repo_dir(repo_type, repo_id) / "commits" / f"{commit.oid}.json"
        write_atomic(path, commit.to_json())

    @staticmethod
    def new_commit(
        *,
        parents: tuple[str, ...],
        files: dict[str, FileEntry],
        summary: str,
        description: str,
        author: str,
        date: str | None = None,
    ) -> Commit:
        """Build a commit record, computing its id from its content."""
        date = date or utc_timestamp()
        oid = commit_oid(
            parents=parents,
            files=files,
            summary=summary,
            description=description,
            author=author,
            date=date,
        )
        return Commit(
            oid=oid,
            parents=parents,
            files=dict(files),
            summary=summary,
            description=description,
            author=author,
            date=date,
        )

    def resolve(self, repo_type: RepoType, repo_id: str, revision: str) -> Commit | None:
        """Return the commit a revision names, or None when it names nothing in this repository.

        A revision is a branch or tag name, `refs/heads/<branch>`, `refs/tags/<tag>`,
        `refs/pr/<number>`, or a full 40-hex commit id.
        """
        refs = self.read_refs(repo_type, repo_id)
        oid: str | None = None
        if revision.startswith("refs/heads/"):
            oid = refs.branches.get(revision.removeprefix("refs/heads/"))
        elif revision.startswith("refs/tags/"):
            oid = refs.tags.get(revision.removeprefix("refs/tags/"))
        elif revision.startswith("refs/pr/"):
            number = revision.removeprefix("refs/pr/")
            oid = refs.pulls.get(int(number)) if number.isdigit() else None
        elif revision in refs.branches:
            oid = refs.branches[revision]
        elif revision in refs.tags:
            oid = refs.tags[revision]
        else:
            oid = revision
        return self.read_commit(repo_type, repo_id, oid) if oid is not None else None

    def history(self, repo_type: RepoType, repo_id: str, start: Commit) -> Iterator[Commit]:
        """Yield `start` and its first-parent ancestors, newest first."""
        commit: Commit | None = start
        while commit is not None:
            yield commit
            if not commit.parents:
                return
            commit = self.read_commit(repo_type, repo_id, commit.parents[0])
