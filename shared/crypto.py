"""Encryption of personal data at rest: AES-256-GCM with rotating keys, and keyed blind indexes.

Keys come from ``HERALD_ENCRYPTION_KEYS``, a comma-separated list of ``<key id>:<base64 of 32 bytes>``:
the first key encrypts, every listed key decrypts, so a new key is added in front, old rows are
rewritten under it (``python -m shared.storage.reseal``) and only then is the old key removed.

A sealed value is ``version (1 byte) | key id length (1 byte) | key id | nonce (12 bytes) | ciphertext
and tag``. The associated data is that header plus a *context* (the column and the row's tenant), so
a value copied to another column or tenant, or a header edited to name another key, fails to open.

Values looked up by equality (a device token, a suppressed address) also get a blind index:
HMAC-SHA256 under ``HERALD_BLIND_INDEX_KEY`` over the same context and the value. It is a key of its
own so that rotating the encryption keys leaves every index valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.config import HeraldSettings, refuse_configuration, reveal

logger = structlog.get_logger(__name__)

VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class DecryptionError(ValueError):
    """A sealed value that does not open: tampered with, moved to another row or column, or its key is gone."""


@dataclass(frozen=True)
class Context:
    """Where a sealed value lives; part of the associated data, so it only opens there."""

    column: str
    tenant_id: str | None

    def encode(self) -> bytes:
        # NUL cannot occur in a Postgres text column, so the two parts cannot be confused.
        return f"{self.column}\x00{self.tenant_id or ''}".encode()


def _decode_key(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be {KEY_BYTES} bytes (base64 of 32 random bytes), got {len(key)}")
    return key


def parse_keys(value: str) -> list[tuple[str, bytes]]:
    """``id:base64,id:base64`` as ``[(id, key)]``, primary first; ValueError (naming no key material) if bad."""
    keys: list[tuple[str, bytes]] = []
    for position, item in enumerate((part.strip() for part in value.split(",") if part.strip()), start=1):
        key_id, separator, encoded = item.partition(":")
        if not separator or not _KEY_ID.match(key_id):
            raise ValueError(f"entry {position} is not '<key id>:<base64 key>' (key id: letters, digits, . _ -)")
        if key_id in (known for known, _ in keys):
            raise ValueError(f"key id {key_id!r} is listed twice")
        keys.append((key_id, _decode_key(encoded, f"key {key_id!r}")))
    if not keys:
        raise ValueError("no key given")
    return keys


def parse_index_key(value: str) -> bytes:
    """The blind index key from its base64 form; ValueError if it is not 32 bytes."""
    return _decode_key(value, "the blind index key")


def generate_key() -> str:
    """A fresh key in the settings' base64 form (for ``HERALD_ENCRYPTION_KEYS`` or ``HERALD_BLIND_INDEX_KEY``)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


class Encryptor:
    """Seals and opens values under the configured keys; computes blind indexes."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], index_key: bytes) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self.primary_key_id = keys[0][0]
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self._index_key = index_key

    @classmethod
    def from_settings(cls, settings: HeraldSettings) -> Encryptor:
        """The encryptor the settings describe; refuses to start without one (PII is never stored in clear)."""
        if settings.encryption_keys is None or settings.blind_index_key is None:
            refuse_configuration(
                "invalid configuration:\n  HERALD_ENCRYPTION_KEYS and HERALD_BLIND_INDEX_KEY are required: this "
                "service stores personal data, which is encrypted at rest (see the README's 'Data at rest')"
            )
        return cls(parse_keys(reveal(settings.encryption_keys)), parse_index_key(reveal(settings.blind_index_key)))

    def _header(self, key_id: str) -> bytes:
        encoded = key_id.encode()
        return bytes([VERSION, len(encoded)]) + encoded

    def seal(self, plaintext: bytes, context: Context) -> bytes:
        """``plaintext`` encrypted under the primary key, bound to ``context``."""
        header = self._header(self.primary_key_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.primary_key_id].encrypt(nonce, plaintext, header + context.encode())
        return header + nonce + sealed

    def open(self, sealed: bytes, context: Context) -> bytes:
        """The plaintext of ``sealed``; raises :class:`DecryptionError` if it does not open in ``context``."""
        key_id = self.key_id(sealed)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(f"sealed under key {key_id!r}, which is not configured")
        header_length = 2 + len(key_id.encode())
        nonce = sealed[header_length : header_length + NONCE_BYTES]
        try:
            return cipher.decrypt(
                nonce, sealed[header_length + NONCE_BYTES :], sealed[:header_length] + context.encode()
            )
        except InvalidTag:
            raise DecryptionError(f"a value in {context.column} failed authentication") from None

    def seal_text(self, plaintext: str, context: Context) -> bytes:
        """:meth:`seal` for text."""
        return self.seal(plaintext.encode(), context)

    def open_text(self, sealed: bytes, context: Context) -> str:
        """:meth:`open` for text."""
        return self.open(sealed, context).decode()

    @staticmethod
    def key_id(sealed: bytes) -> str:
        """The id of the key ``sealed`` was encrypted with (read from its header, not verified)."""
        if len(sealed) < 2 or sealed[0] != VERSION or len(sealed) < 2 + sealed[1] + NONCE_BYTES + 16:
            raise DecryptionError("not a sealed value of a known version")
        try:
            return sealed[2 : 2 + sealed[1]].decode()
        except UnicodeDecodeError:
            raise DecryptionError("not a sealed value of a known version") from None

    def is_current(self, sealed: bytes) -> bool:
        """Whether ``sealed`` is under the primary key (else re-sealing moves it there)."""
        return self.key_id(sealed) == self.primary_key_id

    def blind_index(self, value: str, context: Context) -> bytes:
        """A deterministic keyed digest of ``value`` in ``context``: equal values give equal indexes."""
        return hmac.new(self._index_key, context.encode() + b"\x00" + value.encode(), hashlib.sha256).digest()
