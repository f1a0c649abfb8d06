"""Git object ids and LFS pointers, computed the way git and git-lfs compute them.

The Hub reports a git blob id (`oid`/`blobId`) for every file. For a file stored with LFS, git
stores a small pointer file instead of the content, so the blob id is the id of that pointer and
the content is identified by its sha256.
"""

from __future__ import annotations

import hashlib

__all__ = ["git_blob_oid", "lfs_pointer", "tree_oid"]


def git_blob_oid(data: bytes) -> str:
    """Return the git blob id of `data`: sha1 over the header ``blob <size>\\0`` and the bytes."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """Return the git-lfs pointer file (spec v1) that git stores for an LFS object."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    ).encode("ascii")


def tree_oid(children: list[tuple[str, str]]) -> str:
    """Return a stable id for a folder from its `(name, oid)` children.

    NOTE: this is not git's tree id (git hashes a binary tree object with file modes), only a
    value that changes whenever the folder's content changes, which is all clients rely on.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    for name, oid in sorted(children):
        digest.update(f"{name}\0{oid}\n".encode())
    return digest.hexdigest()
