"""Dropping repeated requests by idempotency key, without dropping a redelivered one.

A marker per key holds the notification id *and the Kafka position* of the first message that
claimed it. A message seen again at the same position is a redelivery (the service restarted before
committing) and goes on; the same key at another position is a duplicate request and is dropped.

How long a key is remembered (its dedup window) is chosen per request by :class:`DedupPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from shared.messages import NotificationRequest
from shared.redis import KeyClaim, KeyClaimer

# The metadata label naming a request's message type ("otp", "marketing"), which picks its window.
TYPE_LABEL = "type"


@dataclass(frozen=True)
class DedupPolicy:
    """A request's dedup window: its own ``dedup.window_s``, else its message type's, else the default."""

    default_s: int
    by_type: Mapping[str, int] = field(default_factory=dict)

    def window_s(self, request: NotificationRequest) -> int | None:
        """Seconds a repeat of the request's key is dropped; None when it bypasses de-duplication."""
        dedup = request["dedup"]
        if dedup["bypass"]:
            return None
        if dedup["window_s"] is not None:
            return dedup["window_s"]
        return self.by_type.get(request["metadata"].get(TYPE_LABEL, ""), self.default_s)


@dataclass(frozen=True)
class Claim:
    """One request's claim on its idempotency key."""

    key: str
    owner: str  # "<notification id>@<topic>:<partition>:<offset>"
    ttl_s: int  # how long the key is remembered: the request's dedup window


class IdempotencyGuard:
    """Claims idempotency keys in Redis, a whole batch in one round trip (one script call)."""

    def __init__(self, redis: Redis) -> None:
        self._claimer = KeyClaimer(redis)

    async def claim(self, claims: Sequence[Claim]) -> list[bool]:
        """For each claim: True if this message owns its key (first seen, or seen again at its own position)."""
        previous = await self._claimer.claim([KeyClaim(claim.key, claim.owner, claim.ttl_s) for claim in claims])
        # Claims are made in batch order, so of two messages with one key in a batch the first wins.
        return [
            before is None or before.decode() == claim.owner for claim, before in zip(claims, previous, strict=True)
        ]
