"""Encryption at rest of the Hub tokens that jobs bring (Fernet, key derived from the settings)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["InvalidToken", "TokenCipher"]


class TokenCipher:
    """Encrypt and decrypt job tokens with a Fernet key derived from the service secret.

    The secret goes through SHA-256 so that any string works as ``RUQUANT_SECRET_KEY``; Fernet
    adds a random IV and an HMAC, so equal tokens encrypt to different ciphertexts.
    """

    def __init__(self, secret: str) -> None:
        digest = hashlib.sha256(b"ruquant-job-token:" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, token: str) -> bytes:
        """Return the ciphertext of ``token``."""
        return self._fernet.encrypt(token.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        """Return the token; raise ``InvalidToken`` if the secret key changed since encryption."""
        return self._fernet.decrypt(ciphertext).decode()
