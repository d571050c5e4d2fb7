"""Tenants bound to producers on the Kafka door: a producer holding another tenant's producer key cannot
create anything of the dev tenant (dead-lettered as ``unauthenticated_producer``, counted, nothing sent,
nothing stored, no idempotency key of the dev tenant spent), and the dev tenant's own key, made through the
API, delivers; a revoked key does not."""

from __future__ import annotations

from typing import Any

import pytest

from shared.messages import DEAD_LETTER
from shared.producer_keys import ProducerKey
from shared.storage.database import create_pool
from shared.storage.producer_keys import ProducerKeyRepository
from tests.e2e.conftest import Pipeline
from tests.kafka_helpers import find_record

pytestmark = pytest.mark.e2e

TENANT = "dev"  # the tenant of the gateway's dev key
OTHER = "mallory"


async def other_tenants_credential(pipeline: Pipeline) -> str:
    """A live producer key of another tenant, made as its admins would (through its own row)."""
    pool = await create_pool(pipeline.database_url, 1)
    try:
        key = await ProducerKeyRepository(pool).create(OTHER, "mallory's service")
    finally:
        await pool.close()
    master = pipeline.environment["HERALD_PRODUCER_SIGNING_KEY"].encode()
    return ProducerKey.derive(master, OTHER, key.id).credential()


async def send(pipeline: Pipeline, credential: str, subject: str, idempotency_key: str | None = None) -> str:
    async with pipeline.kafka_client(TENANT, credential) as client:
        return await client.send(
            channels=["email"],
            recipient={"email": "ada@example.com"},
            content={"subject": subject, "text": "Who sent this?"},
            idempotency_key=idempotency_key,
        )


async def dead_letter_of(pipeline: Pipeline, notification_id: str) -> dict[str, Any]:
    record = await find_record(
        pipeline.broker.bootstrap_servers,
        pipeline.topics.dlq,
        lambda record: DEAD_LETTER.decode(record.value)["notification_id"] == notification_id,
        timeout=60,
    )
    return dict(DEAD_LETTER.decode(record.value))


async def test_another_tenants_key_creates_nothing_and_the_tenants_own_key_delivers(pipeline: Pipeline) -> None:
    refused_before = await pipeline.metric("ingest", "herald_requests_unauthenticated_total")
    forged_credential = await other_tenants_credential(pipeline)
    forged = await send(pipeline, forged_credential, "Forged")
    # An idempotency key gives the id (the tenant's and the key's); a forger spending it would drop the real one.
    shared_key = "order-1001-shipped"
    forged_keyed = await send(pipeline, forged_credential, "Forged", idempotency_key=shared_key)

    for notification_id in (forged, forged_keyed):
        letter = await dead_letter_of(pipeline, notification_id)
        assert (letter["reason_category"], letter["service"]) == ("unauthenticated_producer", "ingest")
        assert f"of tenant '{TENANT}'" in letter["reason"]
    assert await pipeline.metric("ingest", "herald_requests_unauthenticated_total") == refused_before + 2

    async with pipeline.client() as client:
        # The forged request left nothing behind: no notification.
        assert (await client.get(f"/api/v1/notifications/{forged}")).status_code == 404
        created = await client.post("/api/v1/producer-keys", json={"name": "billing service"})
        assert created.status_code == 201, created.text
        genuine = await send(pipeline, created.json()["credential"], "Genuine", idempotency_key=shared_key)
        assert genuine == forged_keyed
        # Sent, not dropped as a duplicate of the forged request.
        await pipeline.wait_for_status(genuine, "sent", timeout=60)
    assert [mail.subject for mail in pipeline.mails_for(forged)] == []
    assert [mail.subject for mail in pipeline.mails_for(genuine)] == ["Genuine"]


async def test_a_revoked_key_is_refused(pipeline: Pipeline) -> None:
    async with pipeline.client() as client:
        created = (await client.post("/api/v1/producer-keys", json={"name": "old service"})).json()
        assert (await client.delete(f"/api/v1/producer-keys/{created['id']}")).status_code == 204
        notification_id = await send(pipeline, created["credential"], "After revocation")
        letter = await dead_letter_of(pipeline, notification_id)
        assert letter["reason_category"] == "unauthenticated_producer"
        assert "revoked or unknown" in letter["reason"]
        assert (await client.get(f"/api/v1/notifications/{notification_id}")).status_code == 404
