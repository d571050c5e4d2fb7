"""How the status store finds a person's notifications without holding who they are.

``notifications.recipient_hash`` is a keyed hash (HMAC-SHA256 under ``HERALD_BLIND_INDEX_KEY``, per
tenant) of the notification's routing key: its user id, else its email, else its phone, as the request
gave it. Keyed, so nobody with the table alone can confirm a guessed address by hashing it.

Rows written before the key was used hold a plain SHA-256 of ``tenant:person``: it cannot be turned into
the keyed form (the person is not stored), so lookups match either until those rows are archived.
"""

from __future__ import annotations

import hashlib

from shared.crypto import Context, Encryptor
from shared.kafka.records import message_key

COLUMN = "notifications.recipient"


class RecipientIndex:
    """The stored hash of a person, and every form a lookup of them must match."""

    def __init__(self, encryptor: Encryptor) -> None:
        self._encryptor = encryptor

    def of(self, tenant_id: str, person: str) -> bytes:
        """What a new notification to ``person`` stores."""
        return self._encryptor.blind_index(person, Context(COLUMN, tenant_id))

    def matching(self, tenant_id: str, person: str) -> tuple[bytes, ...]:
        """What a lookup of ``person`` matches: the keyed hash, and the unkeyed one of older rows."""
        return self.of(tenant_id, person), hashlib.sha256(message_key(tenant_id, person)).digest()
