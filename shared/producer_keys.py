"""Producer keys: how a request produced straight to Kafka proves which tenant it is for.

Kafka tells a consumer nothing about who produced a record, so the record carries the proof: a
``herald-signature`` header, ``v1,<key id>,<HMAC-SHA256 of the record's value>``, made with the secret of a
producer key. That secret is not stored anywhere: it is HMAC-SHA256 under ``HERALD_PRODUCER_SIGNING_KEY``
of the tenant and the key id, so ingest derives it again **for the tenant the request names**. A producer
holding tenant B's key that names tenant A signs with a secret that is not A's: the signature does not
match, and the request is dead-lettered. Keys are created and revoked through the gateway
(``/api/v1/producer-keys``); ingest also checks the key is live. Herald's own services sign with the
reserved key id ``internal``, valid for every tenant and derivable only with the master key.

A producer is given its credential once, as ``hpk.<key id>.<secret>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

# Sets a producer secret's input apart from any other use of the master key.
_DOMAIN = "herald-producer-key"
INTERNAL_KEY_ID = "internal"
CREDENTIAL_PREFIX = "hpk"
SIGNATURE_VERSION = b"v1"


class SignatureError(ValueError):
    """A request's signature is missing, malformed, or not made by a key of the tenant it names."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # validate: the default decoder skips characters outside the alphabet, taking "!!!" for nothing at all.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def producer_secret(master_key: bytes, tenant_id: str, key_id: str) -> bytes:
    """The secret of producer key ``key_id`` of ``tenant_id`` (NUL separates: no tenant or key id holds one)."""
    return hmac.new(master_key, f"{_DOMAIN}\0{tenant_id}\0{key_id}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class ProducerKey:
    """What a producer signs with: a key id and its secret."""

    key_id: str
    secret: bytes

    @classmethod
    def parse(cls, credential: str) -> ProducerKey:
        """The key in a ``hpk.<key id>.<secret>`` credential; ValueError naming what is wrong otherwise."""
        prefix, _, rest = credential.strip().partition(".")
        key_id, _, secret = rest.partition(".")
        if prefix != CREDENTIAL_PREFIX or not key_id or not secret:
            raise ValueError("a producer key looks like hpk.<key id>.<secret>")
        try:
            raw = _unb64(secret)
        except ValueError:
            raise ValueError("a producer key's secret is base64url") from None
        if len(raw) != hashlib.sha256().digest_size:
            raise ValueError("a producer key's secret is 32 bytes")
        return cls(key_id, raw)

    @classmethod
    def derive(cls, master_key: bytes, tenant_id: str, key_id: str) -> ProducerKey:
        """The key ``key_id`` of ``tenant_id``, as whoever holds the master key computes it."""
        return cls(key_id, producer_secret(master_key, tenant_id, key_id))

    @classmethod
    def internal(cls, master_key: bytes | None, tenant_id: str) -> ProducerKey | None:
        """The key Herald's own services sign ``tenant_id``'s requests with (None without a master key)."""
        return None if master_key is None else cls.derive(master_key, tenant_id, INTERNAL_KEY_ID)

    def credential(self) -> str:
        """``hpk.<key id>.<secret>``: what the producer is given."""
        return f"{CREDENTIAL_PREFIX}.{self.key_id}.{_b64(self.secret)}"

    def sign(self, value: bytes) -> bytes:
        """The ``herald-signature`` header of a record whose value is ``value``."""
        mac = hmac.new(self.secret, value, hashlib.sha256).digest()
        return b",".join((SIGNATURE_VERSION, self.key_id.encode(), _b64(mac).encode()))


def verify(master_key: bytes, tenant_id: str, signature: bytes | None, value: bytes) -> str:
    """The key id that signed ``value`` for ``tenant_id``; SignatureError saying why not otherwise.

    Whether that key is live (not revoked) is the caller's question: this only checks the signature.
    """
    key_id, mac = _parts(signature)
    expected = hmac.new(producer_secret(master_key, tenant_id, key_id), value, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise SignatureError(f"the signature is not made by key {key_id!r} of tenant {tenant_id!r}")
    return key_id


def _parts(signature: bytes | None) -> tuple[str, bytes]:
    if signature is None:
        raise SignatureError("the request carries no herald-signature header (see the producer keys guide)")
    parts = signature.split(b",")
    if len(parts) != 3 or parts[0] != SIGNATURE_VERSION or not parts[1] or not parts[2]:
        raise SignatureError("the herald-signature header is not v1,<key id>,<base64url HMAC-SHA256>")
    try:
        return parts[1].decode(), _unb64(parts[2].decode())
    except ValueError:
        raise SignatureError("the herald-signature header's MAC is not base64url") from None
