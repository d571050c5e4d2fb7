"""Ingest's producer check against Postgres's producer keys: a request reaches the handler only signed by a
live key of the tenant it names; anything else is dead-lettered as ``unauthenticated_producer``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from services.ingest.producer_auth import SignedRequests
from shared.errors import DeadLetterReason
from shared.kafka.records import Consumed, Output, Reject
from shared.messages import NOTIFICATION_REQUEST, NotificationRequest
from shared.producer_keys import ProducerKey
from shared.requests import build_request, request_record
from shared.storage.database import Pool
from shared.storage.producer_keys import LiveProducerKeys, ProducerKeyRepository

pytestmark = pytest.mark.integration

MASTER = b"integration-producer-signing-key-0123456789"


class Passed:
    """The handler after the check: records what reached it."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    async def __call__(self, batch: Sequence[Consumed[NotificationRequest]]) -> list[Output]:
        self.requests.extend(message.value["notification_id"] for message in batch)
        return []


def consumed(tenant_id: str, signer: ProducerKey | None, offset: int) -> Consumed[NotificationRequest]:
    request = build_request(
        tenant_id=tenant_id,
        channels=["email"],
        recipient={"email": "ada@example.com"},
        content={"text": "t", "subject": "s"},
    )
    record = request_record(request, "requests", None, signer)
    return Consumed(
        "requests", 0, offset, record.key, NOTIFICATION_REQUEST.decode(record.value), record.value, record.headers
    )


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("herald_requests_unauthenticated_total", {"reason": reason}) or 0.0


async def test_only_a_live_key_of_the_tenant_a_request_names_lets_it_through(db_pool: Pool) -> None:
    keys = ProducerKeyRepository(db_pool)
    acme = await keys.create("acme", "acme's billing")
    globex = await keys.create("globex", "globex's shop")
    revoked = await keys.create("acme", "acme's old key")
    assert await keys.revoke("acme", revoked.id)
    passed = Passed()
    check = SignedRequests(MASTER, LiveProducerKeys(keys, ttl_s=0), passed)
    before = {reason: refused(reason) for reason in ("unsigned", "bad_signature", "key_not_live")}

    batch = [
        good := consumed("acme", ProducerKey.derive(MASTER, "acme", acme.id), 0),
        # Globex's key, naming acme: its secret is not acme's, whatever key id it claims.
        consumed("acme", ProducerKey.derive(MASTER, "globex", globex.id), 1),
        consumed("acme", None, 2),
        consumed("acme", ProducerKey.derive(MASTER, "acme", revoked.id), 3),
        # A key id acme never had, signed with the secret it would have: no row, no entry.
        consumed("acme", ProducerKey.derive(MASTER, "acme", "pkMadeUp"), 4),
        internal := consumed("globex", ProducerKey.internal(MASTER, "globex"), 5),
    ]
    outputs = await check(batch)

    assert passed.requests == [good.value["notification_id"], internal.value["notification_id"]]
    rejects = [output for output in outputs if isinstance(output, Reject)]
    assert [reject.message.offset for reject in rejects] == [1, 2, 3, 4]
    assert {reject.reason for reject in rejects} == {DeadLetterReason.UNAUTHENTICATED_PRODUCER}
    assert "not made by key" in rejects[0].detail
    assert "revoked or unknown" in rejects[2].detail
    # Nothing but dead letters: no status event for a notification id the producer chose.
    assert len(outputs) == len(rejects)
    assert refused("bad_signature") == before["bad_signature"] + 1
    assert refused("unsigned") == before["unsigned"] + 1
    assert refused("key_not_live") == before["key_not_live"] + 2


async def test_a_revocation_takes_effect_once_the_cached_answer_expires(db_pool: Pool) -> None:
    keys = ProducerKeyRepository(db_pool)
    key = await keys.create("acme", "rotating")
    live = LiveProducerKeys(keys, ttl_s=3600)
    assert await live.live({("acme", key.id)}) == {("acme", key.id)}
    assert await keys.revoke("acme", key.id)
    # Still trusted within the cache's time: the documented bound on how soon a revocation bites.
    assert await live.live({("acme", key.id)}) == {("acme", key.id)}
    assert await LiveProducerKeys(keys, ttl_s=0).live({("acme", key.id)}) == set()
    assert not await keys.revoke("acme", key.id)


async def test_keys_are_listed_per_tenant_newest_first(db_pool: Pool) -> None:
    keys = ProducerKeyRepository(db_pool)
    first = await keys.create("acme", "first")
    second = await keys.create("acme", "second")
    await keys.create("globex", "theirs")
    assert [key.id for key in await keys.list_keys("acme")] == [second.id, first.id]
    assert not await keys.revoke("globex", first.id)
