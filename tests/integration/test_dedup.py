"""Idempotency keys claimed in a real Redis: duplicates dropped, redeliveries let through.

Then ingest's handler on that guard: each request's dedup window (its own, its type's, the default),
the urgent bypass, and the duplicates it reports, counted by the status service and shown by the API.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from services.ingest.dedup import Claim, DedupPolicy, IdempotencyGuard
from services.ingest.handlers import IngestHandler
from services.ingest.scheduling import RequestScheduler
from services.status.main import status_writer
from shared import status
from shared.config import HeraldSettings
from shared.kafka.records import Consumed, Output, Produce
from shared.messages import NOTIFICATION_REQUEST, STATUS_EVENT, NotificationRequest, StatusEvent
from shared.redis import key
from shared.requests import build_request
from shared.status_events import StatusReporter
from shared.storage.database import Pool
from shared.topics import Topics
from tests.conftest import ENCRYPTOR
from tests.integration.conftest import DEV_TENANT, auth

# Counted by tenant: with tenant labels on, another tenant's requests in the process count apart.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("tenant_labels")]

TTL_S = 600


@pytest.fixture
def guard(redis: Redis) -> IdempotencyGuard:
    return IdempotencyGuard(redis)


def claim(settings: HeraldSettings, idempotency_key: str, notification_id: str, offset: int) -> Claim:
    return Claim(
        key=key(settings, "idem", "acme", idempotency_key),
        owner=f"{notification_id}@{settings.topic_prefix}.requests.v1:0:{offset}",
        ttl_s=TTL_S,
    )


async def test_first_claim_owns_the_key(guard: IdempotencyGuard, redis: Redis, settings: HeraldSettings) -> None:
    first = claim(settings, "order-1", "n-1", 10)
    assert await guard.claim([first]) == [True]
    assert await redis.get(first.key) == first.owner.encode()


async def test_same_owner_again_owns_it(guard: IdempotencyGuard, settings: HeraldSettings) -> None:
    """A redelivery (same message at the same position, after a crash before the commit) goes on."""
    first = claim(settings, "order-1", "n-1", 10)
    assert await guard.claim([first]) == [True]
    assert await guard.claim([claim(settings, "order-1", "n-1", 10)]) == [True]


async def test_another_owner_of_the_key_does_not(
    guard: IdempotencyGuard, redis: Redis, settings: HeraldSettings
) -> None:
    first = claim(settings, "order-1", "n-1", 10)
    assert await guard.claim([first]) == [True]
    # The same request sent again lands at another offset: a duplicate.
    assert await guard.claim([claim(settings, "order-1", "n-1", 11)]) == [False]
    # The marker still names the first owner.
    assert await redis.get(first.key) == first.owner.encode()


async def test_two_claims_of_one_key_in_a_batch(guard: IdempotencyGuard, settings: HeraldSettings) -> None:
    batch = [
        claim(settings, "order-1", "n-1", 10),
        claim(settings, "order-2", "n-2", 11),
        claim(settings, "order-1", "n-1", 12),
        claim(settings, "order-2", "n-2", 13),
    ]
    assert await guard.claim(batch) == [True, True, False, False]


async def test_redelivered_batch_with_a_duplicate_in_it(guard: IdempotencyGuard, settings: HeraldSettings) -> None:
    """Replaying a batch after a crash gives the same verdicts as the first time."""
    batch = [claim(settings, "order-1", "n-1", 10), claim(settings, "order-1", "n-1", 11)]
    assert await guard.claim(batch) == [True, False]
    assert await guard.claim(batch) == [True, False]


async def test_keys_of_other_tenants_are_independent(guard: IdempotencyGuard, settings: HeraldSettings) -> None:
    acme = Claim(key=key(settings, "idem", "acme", "order-1"), owner="n-1@t:0:1", ttl_s=TTL_S)
    globex = Claim(key=key(settings, "idem", "globex", "order-1"), owner="n-2@t:0:2", ttl_s=TTL_S)
    assert await guard.claim([acme, globex]) == [True, True]


async def test_ttl_is_set(guard: IdempotencyGuard, redis: Redis, settings: HeraldSettings) -> None:
    first = claim(settings, "order-1", "n-1", 10)
    await guard.claim([first])
    ttl = await redis.ttl(first.key)
    assert 0 < ttl <= TTL_S


async def test_empty_batch(guard: IdempotencyGuard) -> None:
    assert await guard.claim([]) == []


async def test_each_claim_is_kept_for_its_own_window(
    guard: IdempotencyGuard, redis: Redis, settings: HeraldSettings
) -> None:
    short = Claim(key=key(settings, "idem", "acme", "otp-1"), owner="n-1@t:0:1", ttl_s=30)
    long = Claim(key=key(settings, "idem", "acme", "digest-1"), owner="n-2@t:0:2", ttl_s=TTL_S)
    assert await guard.claim([short, long]) == [True, True]
    assert 0 < await redis.ttl(short.key) <= 30 < await redis.ttl(long.key) <= TTL_S


# --- ingest's handler: windows, bypass and the duplicates it reports ---------------------------------

TYPE_WINDOWS = {"otp": 30}


@pytest.fixture
def handler(guard: IdempotencyGuard, settings: HeraldSettings) -> IngestHandler:
    topics = Topics(settings.topic_prefix)
    return IngestHandler(
        guard=guard,
        dedup=DedupPolicy(TTL_S, TYPE_WINDOWS),
        reporter=StatusReporter(topics.status, "ingest"),
        topics=topics,
        key_prefix=key(settings, "idempotency"),
        scheduler=RequestScheduler(topics),
    )


def requested(
    settings: HeraldSettings, offset: int, idempotency_key: str, **fields: Any
) -> Consumed[NotificationRequest]:
    """A request as ingest consumes it, at ``offset`` of the requests topic; the tenant is the test's namespace."""
    request = build_request(
        tenant_id=fields.pop("tenant_id", settings.topic_prefix),
        channels=["email"],
        recipient={"email": "ada@example.com"},
        content={"subject": "Your code", "text": "123456"},
        idempotency_key=idempotency_key,
        **fields,
    )
    data = NOTIFICATION_REQUEST.encode(request)
    topic = Topics(settings.topic_prefix).requests
    return Consumed(topic, 0, offset, b"k", NOTIFICATION_REQUEST.decode(data), data)


def events(settings: HeraldSettings, outputs: list[Output]) -> list[StatusEvent]:
    topic = Topics(settings.topic_prefix).status
    return [STATUS_EVENT.decode(o.value) for o in outputs if isinstance(o, Produce) and o.topic == topic]


def routed(settings: HeraldSettings, outputs: list[Output]) -> int:
    """How many requests went on to the router."""
    topic = Topics(settings.topic_prefix).routable
    return sum(1 for o in outputs if isinstance(o, Produce) and o.topic == topic)


def duplicates_counted(tenant: str) -> float:
    return REGISTRY.get_sample_value("herald_notifications_duplicate_total", {"tenant": tenant}) or 0.0


async def test_a_repeat_is_dropped_and_reported_once_as_a_duplicate(
    handler: IngestHandler, settings: HeraldSettings
) -> None:
    batch = [requested(settings, 10, "code-1"), requested(settings, 11, "code-1"), requested(settings, 12, "code-1")]
    outputs = await handler(batch)
    assert routed(settings, outputs) == 1
    reported = events(settings, outputs)
    assert [e["status"] for e in reported] == [status.ACCEPTED, status.DUPLICATE, status.DUPLICATE]
    assert {e["notification_id"] for e in reported} == {batch[0].value["notification_id"]}
    assert duplicates_counted(settings.topic_prefix) == 2
    # Redelivered after a crash: the same verdicts and the same event ids, so nothing counts twice.
    again = events(settings, await handler(batch))
    assert [e["event_id"] for e in again] == [e["event_id"] for e in reported]
    assert len({e["event_id"] for e in reported}) == 3


async def test_an_urgent_request_bypasses_dedup_and_claims_nothing(
    handler: IngestHandler, redis: Redis, settings: HeraldSettings
) -> None:
    urgent = {"dedup": {"bypass": True}}
    outputs = await handler(
        [
            requested(settings, 10, "alert-1"),
            requested(settings, 11, "alert-1", **urgent),
            requested(settings, 12, "alert-2", **urgent),
        ]
    )
    assert routed(settings, outputs) == 3
    assert status.DUPLICATE not in [e["status"] for e in events(settings, outputs)]
    assert await redis.exists(key(settings, "idempotency", settings.topic_prefix, "alert-2")) == 0
    bypassed = REGISTRY.get_sample_value("herald_dedup_bypassed_total", {"tenant": settings.topic_prefix})
    assert bypassed == 2


async def test_the_window_is_the_requests_own_else_its_types_else_the_default(
    handler: IngestHandler, redis: Redis, settings: HeraldSettings
) -> None:
    await handler(
        [
            requested(settings, 10, "typed", metadata={"type": "otp"}),
            requested(settings, 11, "own", metadata={"type": "otp"}, dedup={"window_s": 120}),
            requested(settings, 12, "untyped", metadata={"type": "newsletter"}),
        ]
    )

    async def ttl(idempotency_key: str) -> int:
        return int(await redis.ttl(key(settings, "idempotency", settings.topic_prefix, idempotency_key)))

    assert 0 < await ttl("typed") <= TYPE_WINDOWS["otp"] < await ttl("own") <= 120 < await ttl("untyped") <= TTL_S


async def test_duplicates_are_counted_on_the_notification_and_shown_by_the_api(
    handler: IngestHandler, client: TestClient, db_pool: Pool, settings: HeraldSettings
) -> None:
    """Ingest's duplicate events, through the status service's writer, appear as the notification's
    ``duplicates``; its status and history stay as they were."""
    created = client.post(
        "/api/v1/notifications",
        json={
            "channels": ["email"],
            "recipient": {"email": "ada@example.com"},
            "content": {"subject": "s", "text": "t"},
        },
        headers={**auth(), "Idempotency-Key": "order-7"},
    )
    assert created.status_code == 202, created.text
    # The same key produced straight to Kafka twice more (an upstream service retrying).
    batch = [requested(settings, offset, "order-7", tenant_id=DEV_TENANT) for offset in (20, 21, 22)]
    assert batch[0].value["notification_id"] == created.json()["id"]
    reported = events(settings, await handler(batch))
    writer = status_writer(db_pool, ENCRYPTOR, Topics(settings.topic_prefix), endpoints_cache_s=0)
    consumed = [Consumed("status", 0, i, None, e, b"") for i, e in enumerate(reported)]
    assert await writer(consumed) == []
    assert await writer(consumed[1:]) == []  # redelivered: stored once

    view = client.get(f"/api/v1/notifications/{created.json()['id']}", headers=auth()).json()
    assert view["duplicates"] == 2
    assert view["status"] == status.ACCEPTED
    assert [change["status"] for change in view["history"]] == [status.ACCEPTED]
