"""A send-rate limit per provider, shared by every replica through Redis (GCRA, :mod:`shared.gcra`)."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.gcra import Bucket, Gcra


class SendRateLimiter:
    """Allows each provider ``rate_per_s`` sends a second on average, ``burst`` of them at once."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._key_prefix = key_prefix
        self._gcra = Gcra(redis)

    async def acquire(self, provider: str, rate_per_s: float, burst: int) -> float:
        """0.0 if one send to ``provider`` may go now (and it is counted), else seconds to wait first."""
        decision = await self._gcra.take([Bucket.per_second(f"{self._key_prefix}:{provider}", rate_per_s, burst)])
        return decision.wait_s
