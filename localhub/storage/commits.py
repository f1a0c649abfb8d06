"""Apply a list of file operations to a branch as one new commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

from localhub.storage.records import Commit, FileEntry, RepoType
from localhub.storage.repos import RepoStore

__all__ = [
    "AddFile",
    "CommitRejectedError",
    "CommitResult",
    "DeleteFile",
    "DeleteFolder",
    "EntryMissingError",
    "Operation",
    "ParentCommitMismatchError",
    "RevisionMissingError",
    "apply_commit",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddFile:
    """Add or replace the file at `path` with stored content."""

    path: str
    entry: FileEntry


@dataclass(frozen=True)
class DeleteFile:
    """Delete the file at `path`."""

    path: str


@dataclass(frozen=True)
class DeleteFolder:
    """Delete every file under the folder `path`."""

    path: str


Operation = AddFile | DeleteFile | DeleteFolder


class CommitRejectedError(Exception):
    """Raised when the operations cannot be committed as requested."""


class RevisionMissingError(CommitRejectedError):
    """Raised when the target revision does not exist."""


class ParentCommitMismatchError(CommitRejectedError):
    """Raised when the branch head is not the parent commit the client expected."""


class EntryMissingError(CommitRejectedError):
    """Raised when an operation deletes a file or folder that does not exist."""


@dataclass(frozen=True)
class CommitResult:
    """The commit created and, for a new pull request, its number."""

    commit: Commit
    pull_request: int | None


def apply_commit(
    store: RepoStore,
    repo_type: RepoType,
    repo_id: str,
    *,
    revision: str,
    operations: list[Operation],
    summary: str,
    description: str,
    author: str,
    parent_commit: str | None = None,
    create_pr: bool = False,
) -> CommitResult:
    """Commit `operations` on top of `revision`, holding the repository lock throughout.

    `revision` is a branch (`main` or `refs/heads/main`) or a pull request (`refs/pr/<n>`).
    With `create_pr`, the commit goes to a new pull-request ref based on `revision`, which may
    then be any revision.

    Raises:
        RevisionMissingError: `revision` does not exist.
        CommitRejectedError: `revision` is a tag or commit id, so it cannot move, or the
            operations leave a path that is both a file and a folder.
        ParentCommitMismatchError: `parent_commit` is set and is not the current head.
        EntryMissingError: a deletion names a path that does not exist.
    """
    with store.lock(repo_type, repo_id):
        refs = store.read_refs(repo_type, repo_id)
        if create_pr:
            head = store.resolve(repo_type, repo_id, revision)
            if head is None:
                raise RevisionMissingError(f"Invalid rev id: {revision}")
            pull_request: int | None = max(refs.pulls, default=0) + 1
            branch = None
        else:
            branch, pull_request = _parse_target(revision)
            head_oid = refs.branches.get(branch) if branch else refs.pulls.get(pull_request or 0)
            if head_oid is None:
                if store.resolve(repo_type, repo_id, revision) is not None:
                    raise CommitRejectedError(
                        f"Cannot commit to {revision}: only a branch or a pull request ref can "
                        "receive commits"
                    )
                raise RevisionMissingError(f"Invalid rev id: {revision}")
            head = store.read_commit(repo_type, repo_id, head_oid)
            if head is None:
                raise RevisionMissingError(f"Invalid rev id: {revision}")

        if parent_commit is not None and not head.oid.startswith(parent_commit.lower()):
            raise ParentCommitMismatchError(
                f"A commit has happened since: the head of {revision} is {head.oid}, not the "
                f"parent commit {parent_commit}. Refresh and try again."
            )

        files = _apply_operations(head.files, operations)
        commit = store.new_commit(
            parents=(head.oid,),
            files=files,
            summary=summary,
            description=description,
            author=author,
        )
        store.write_commit(repo_type, repo_id, commit)
        if branch is not None:
            refs.branches[branch] = commit.oid
        else:
            assert pull_request is not None  # set by create_pr or by _parse_target
            refs.pulls[pull_request] = commit.oid
        store.write_refs(repo_type, repo_id, refs)

    logger.info(
        "Commit %s on %s %s@%s by %s: %d operation(s)",
        commit.oid,
        repo_type.value,
        repo_id,
        branch if branch is not None else f"refs/pr/{pull_request}",
        author,
        len(operations),
    )
    return CommitResult(commit=commit, pull_request=pull_request if create_pr else None)


def _parse_target(revision: str) -> tuple[str | None, int | None]:
    """Split a commit target into (branch, None) or (None, pull request number)."""
    if revision.startswith("refs/pr/"):
        number = revision.removeprefix("refs/pr/")
        return None, int(number) if number.isdigit() else -1
    return revision.removeprefix("refs/heads/"), None


def _apply_operations(
    base: dict[str, FileEntry], operations: list[Operation]
) -> dict[str, FileEntry]:
    files = dict(base)
    for operation in operations:
        if isinstance(operation, AddFile):
            files[operation.path] = operation.entry
        elif isinstance(operation, DeleteFile):
            if operation.path not in files:
                raise EntryMissingError(f"A file with this name doesn't exist: {operation.path!r}")
            del files[operation.path]
        else:
            prefix = operation.path.rstrip("/") + "/"
            doomed = [path for path in files if path.startswith(prefix)]
            if not doomed:
                raise EntryMissingError(
                    f"A folder with this name doesn't exist: {operation.path!r}"
                )
            for path in doomed:
                del files[path]
    _check_no_file_folder_clash(files)
    return files


def _check_no_file_folder_clash(files: dict[str, FileEntry]) -> None:
    # Git cannot store a path that is both a file and a folder, such as "a" beside "a/b".
    for path in files:
        for parent in PurePosixPath(path).parents:
            if str(parent) != "." and str(parent) in files:
                raise CommitRejectedError(
                    f"Path {path!r} is inside {str(parent)!r}, which is a file"
                )
