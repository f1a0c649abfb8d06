"""Decide whether a file is uploaded as a regular git blob or through LFS."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import PurePosixPath

__all__ = ["LFS_SIZE_THRESHOLD", "lfs_patterns", "upload_mode"]

# Files larger than this (10 MiB) go through LFS whatever their name. The Hub decides upload
# modes on its side and does not publish its rule, so this threshold only approximates it.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024


def lfs_patterns(gitattributes: str) -> list[str]:
    """Return the patterns that a `.gitattributes` file routes to LFS (`filter=lfs`)."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def _matches(path: str, pattern: str) -> bool:
    # A gitattributes pattern without a slash matches the file name at any depth; one with a
    # slash matches the whole path from the repository root.
    if "/" not in pattern.strip("/"):
        return fnmatchcase(PurePosixPath(path).name, pattern)
    return fnmatchcase(path, pattern.lstrip("/"))


def upload_mode(path: str, size: int, sample: bytes, patterns: list[str]) -> str:
    """Return `"lfs"` or `"regular"` for a file about to be uploaded.

    A file goes to LFS when it is larger than `LFS_SIZE_THRESHOLD`, when its path matches an LFS
    pattern, or when its first bytes (the `sample` the client sends, up to 512 bytes) contain
    a NUL byte, which marks binary content. Empty files are always regular.

    NOTE: fnmatch approximates gitattributes matching: `*` also matches `/`, and `**` has no
    special meaning.
    """
    if size == 0:
        return "regular"
    if size > LFS_SIZE_THRESHOLD or b"\0" in sample:
        return "lfs"
    return "lfs" if any(_matches(path, pattern) for pattern in patterns) else "regular"
