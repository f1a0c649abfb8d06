"""Content-addressed blob store: every file body is kept once, named by its sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["BlobMismatchError", "BlobStore", "BlobWriter", "is_sha256"]

logger = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: str) -> bool:
    """Return whether `value` is a lower-case hex sha256 digest."""
    return _SHA256_RE.fullmatch(value) is not None


class BlobMismatchError(ValueError):
    """Raised when uploaded bytes do not match the sha256 or size announced for them."""


class BlobWriter:
    """Stream bytes into a temporary file, then publish it as a blob once its hash is checked.

    Use as a context manager: a writer that is not finished removes its temporary file on exit.
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        handle, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="upload-")
        self._file = os.fdopen(handle, "wb")
        self._tmp_path = Path(name)
        self._digest = hashlib.sha256()
        self._size = 0
        self._published = False

    def write(self, chunk: bytes) -> None:
        """Append `chunk` to the blob being written."""
        self._file.write(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    def finish(self, expected_sha256: str | None = None, expected_size: int | None = None) -> str:
        """Check the content against the expected sha256 and size, publish it and return its sha256.

        Raises:
            BlobMismatchError: the content does not have the expected sha256 or size.
        """
        self._file.close()
        sha256 = self._digest.hexdigest()
        if expected_size is not None and self._size != expected_size:
            raise BlobMismatchError(
                f"size mismatch: expected {expected_size} bytes, received {self._size}"
            )
        if expected_sha256 is not None and sha256 != expected_sha256:
            raise BlobMismatchError(
                f"sha256 mismatch: expected {expected_sha256}, received content has {sha256}"
            )
        target = self._store.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        # os.replace is atomic, so a reader sees either no blob or the whole blob. Two uploads of
        # the same content race harmlessly because both write identical bytes.
        os.replace(self._tmp_path, target)
        self._published = True
        return sha256

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._file.closed:
            self._file.close()
        if not self._published:
            self._tmp_path.unlink(missing_ok=True)


class BlobStore:
    """Blobs on disk under `root/ab/cd/<sha256>`, written atomically through a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Return where the blob `sha256` is (or would be) stored."""
        if not is_sha256(sha256):
            raise ValueError(f"invalid sha256 {sha256!r}: expected 64 lower-case hex digits")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def size(self, sha256: str) -> int | None:
        """Return the size in bytes of blob `sha256`, or None when it is not stored."""
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def writer(self) -> BlobWriter:
        """Open a writer for a new blob."""
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> str:
        """Store `data` and return its sha256."""
        with self.writer() as writer:
            writer.write(data)
            return writer.finish()

    def read_bytes(self, sha256: str) -> bytes:
        """Return the content of blob `sha256`."""
        return self.path(sha256).read_bytes()

    def read_prefix(self, sha256: str, size: int) -> bytes:
        """Return at most the first `size` bytes of blob `sha256`."""
        with self.path(sha256).open("rb") as file:
            return file.read(size)

    def remove_stale_uploads(self) -> None:
        """Delete temporary files left by uploads that a crash interrupted.

        Call it only while holding the storage lock, because a running server's uploads in
        progress look the same.
        """
        for stale in self.tmp_dir.glob("upload-*"):
            logger.info("Removing interrupted upload %s", stale.name)
            stale.unlink(missing_ok=True)
