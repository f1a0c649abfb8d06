"""Persistent storage of the local Hub: blobs, repositories and the server's own secret."""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
from pathlib import Path
from typing import IO

from localhub.storage.blobs import BlobStore
from localhub.storage.repos import RepoStore

__all__ = ["Storage", "StorageBusyError"]

logger = logging.getLogger(__name__)


class StorageBusyError(RuntimeError):
    """Raised when another server process already serves the storage folder."""


class Storage:
    """The storage folder: `blobs/`, `repos/`, the upload-signing key and the server lock."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.root / "blobs")
        self.repos = RepoStore(self.root, self.blobs)
        self._lock_file: IO[str] | None = None

    def acquire(self) -> None:
        """Take the exclusive server lock on the folder and clean up interrupted uploads.

        Raises:
            StorageBusyError: another process holds the lock.
        """
        lock_file = (self.root / "server.lock").open("w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock_file.close()
            raise StorageBusyError(
                f"storage folder {self.root} is in use by another localhub server; stop it or "
                "pass another --storage folder"
            ) from exc
        self._lock_file = lock_file
        self.blobs.remove_stale_uploads()

    def release(self) -> None:
        """Release the server lock taken by `acquire`."""
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def signing_key(self) -> bytes:
        """Return the key that signs LFS upload URLs, creating it on first use.

        The key persists so that upload URLs handed out before a restart stay valid.
        """
        path = self.root / "upload-signing.key"
        try:
            return bytes.fromhex(path.read_text("ascii").strip())
        except FileNotFoundError:
            pass
        key = secrets.token_bytes(32)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w", encoding="ascii") as file:
            file.write(key.hex())
        logger.info("Created the upload signing key in %s", self.root)
        return key
