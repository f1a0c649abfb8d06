"""Validation of file paths inside a repository."""

from __future__ import annotations

from localhub import errors

__all__ = ["check_repo_path"]


def check_repo_path(path: object) -> str:
    """Return `path` when it is a valid file path inside a repository.

    A valid path is relative, uses `/` between non-empty parts, has no `.` or `..` part and
    does not point into `.git`.

    Raises:
        HubError: 400 for an invalid path.
    """
    if not isinstance(path, str) or not path:
        raise errors.bad_request(f"Invalid path {path!r}: expected a non-empty string")
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise errors.bad_request(
            f"Invalid path {path!r}: use a relative path with no empty, '.' or '..' parts"
        )
    if parts[0] == ".git":
        raise errors.bad_request(f"Invalid path {path!r}: files under .git cannot be committed")
    return path
