"""Idempotency keys claimed in a real Redis: duplicates dropped, redeliveries let through."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from services.ingest.dedup import Claim, IdempotencyGuard
from shared.config import HeraldSettings
from shared.redis import key

pytestmark = pytest.mark.integration

TTL_S = 600


@pytest.fixture
def guard(redis: Redis) -> IdempotencyGuard:
    return IdempotencyGuard(redis, ttl_seconds=TTL_S)


def claim(settings: HeraldSettings, idempotency_key: str, notification_id: str, offset: int) -> Claim:
    return Claim(
        key=key(settings, "idem", "acme", idempotency_key),
        owner=f"{notification_id}@{settings.topic_prefix}.requests.v1:0:{offset}",
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
    acme = Claim(key=key(settings, "idem", "acme", "order-1"), owner="n-1@t:0:1")
    globex = Claim(key=key(settings, "idem", "globex", "order-1"), owner="n-2@t:0:2")
    assert await guard.claim([acme, globex]) == [True, True]


async def test_ttl_is_set(guard: IdempotencyGuard, redis: Redis, settings: HeraldSettings) -> None:
    first = claim(settings, "order-1", "n-1", 10)
    await guard.claim([first])
    ttl = await redis.ttl(first.key)
    assert 0 < ttl <= TTL_S


async def test_empty_batch(guard: IdempotencyGuard) -> None:
    assert await guard.claim([]) == []
