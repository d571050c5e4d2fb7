"""Dropping repeated requests by idempotency key, without dropping a redelivered one.

A marker per key holds the notification id *and the Kafka position* of the first message that
claimed it. A message seen again at the same position is a redelivery (the service restarted before
committing) and goes on; the same key at another position is a duplicate request and is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis


@dataclass(frozen=True)
class Claim:
    """One request's claim on its idempotency key."""

    key: str
    owner: str  # "<notification id>@<topic>:<partition>:<offset>"


class IdempotencyGuard:
    """Claims idempotency keys in Redis, a whole batch in one round trip."""

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def claim(self, claims: Sequence[Claim]) -> list[bool]:
        """For each claim: True if this message owns its key (first seen, or seen again at its own position)."""
        if not claims:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                pipe.set(claim.key, claim.owner, nx=True, ex=self._ttl, get=True)
            previous = await pipe.execute()
        owned: dict[str, str] = {}
        results = []
        for claim, before in zip(claims, previous, strict=True):
            holder = before.decode() if before is not None else owned.setdefault(claim.key, claim.owner)
            # Two messages with one key in the same batch: the first one in the batch wins.
            results.append(holder == claim.owner)
        return results
