"""Signed, expiring URLs for LFS object uploads.

`huggingface_hub` sends the PUT of an LFS object to the `href` that the batch endpoint returns
and adds no Authorization header to it, as for a presigned storage URL. The signature in the
query string is what authorizes that PUT.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

__all__ = ["UPLOAD_URL_LIFETIME_S", "UploadSigner"]

UPLOAD_URL_LIFETIME_S = 3600


class UploadSigner:
    """Sign and check upload URLs for one object of a given sha256 and size."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _signature(self, oid: str, size: int, expires: int) -> str:
        message = f"{oid}:{size}:{expires}".encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def upload_url(self, base_url: str, oid: str, size: int) -> str:
        """Return a URL that accepts a PUT of object `oid` for the next hour."""
        expires = int(time.time()) + UPLOAD_URL_LIFETIME_S
        query = urlencode(
            {"size": size, "expires": expires, "signature": self._signature(oid, size, expires)}
        )
        return f"{base_url}/lfs/objects/{oid}?{query}"

    def is_valid(self, oid: str, size: int, expires: int, signature: str) -> bool:
        """Return whether the signature matches and has not expired."""
        if expires < time.time():
            return False
        return hmac.compare_digest(self._signature(oid, size, expires), signature)
