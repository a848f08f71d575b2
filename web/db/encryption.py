"""Encryption of secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a key from Settings."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from web.errors import SecretKeyError


class SecretCipher:
    """Encrypts and decrypts stored secrets with a key derived from `Settings.encryption_key()`.

    Any string works as a key: it is stretched with SHA-256 into Fernet's 32-byte key. Values are
    authenticated, so a wrong key or a tampered column raises `SecretKeyError`, never garbage.
    """

    def __init__(self, key: str) -> None:
        if not key:
            raise SecretKeyError(
                "the encryption key is empty; set KAPAL_ENCRYPTION_KEY or unset it"
            )
        digest = hashlib.sha256(b"kapal secrets at rest\0" + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, value: str) -> bytes:
        """The stored form of `value`."""
        return self._fernet.encrypt(value.encode("utf-8"))

    def decrypt(self, stored: bytes) -> str:
        """The value `encrypt` was given."""
        try:
            return self._fernet.decrypt(stored).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret cannot be decrypted: KAPAL_ENCRYPTION_KEY (or the data dir's "
                "secret.key) is not the key it was stored with; restore that key"
            ) from None
