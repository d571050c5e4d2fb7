"""Rate limits shared by every replica through Redis: GCRA over one or several buckets at once.

GCRA (generic cell rate algorithm): one key per bucket holds its theoretical arrival time (TAT), the
moment the bucket's budget would be back to full. A request is allowed when the TAT is at most
``burst - 1`` emission intervals ahead of now, and moves it on by one interval. One number per
bucket, updated atomically in a Lua script, with Redis's clock so replicas with skewed clocks agree.

Several buckets (an API key's, its tenant's, everyone's) are checked in the same script call: one
round trip, and a request is counted in every bucket or in none, so a refusal costs no budget.
On Redis Cluster the keys of one call must share a hash slot (a ``{...}`` hash tag in the prefix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

MICROSECONDS_PER_S = 1_000_000

# KEYS[i]: bucket i's TAT in microseconds of Redis server time.
# ARGV[2i-1], ARGV[2i]: bucket i's emission interval in microseconds (1 / rate) and its burst.
# Returns {wait, ahead_1, ahead_2, ...}: wait is 0 when every bucket allows the request (and it is
# counted in each), else the microseconds until they all would (and nothing is counted); ahead_i is
# bucket i's TAT minus now after the decision, from which its remaining budget follows.
# Times are whole microseconds, below 2^53, so Lua's doubles hold them exactly.
_GCRA_LUA = """
local server_time = redis.call('TIME')
local now_us = tonumber(server_time[1]) * 1000000 + tonumber(server_time[2])
local tats = {}
local wait_us = 0
for i, key in ipairs(KEYS) do
    local interval_us = tonumber(ARGV[2 * i - 1])
    local tolerance_us = interval_us * (tonumber(ARGV[2 * i]) - 1)
    tats[i] = math.max(tonumber(redis.call('GET', key)) or now_us, now_us)
    wait_us = math.max(wait_us, tats[i] - tolerance_us - now_us)
end
local result = {wait_us}
for i, key in ipairs(KEYS) do
    if wait_us == 0 then
        tats[i] = tats[i] + tonumber(ARGV[2 * i - 1])
        -- The key expires when the budget is full again, where a missing key means the same.
        -- '%d' because Lua would write a number this large in exponent notation, losing digits.
        redis.call('SET', key, string.format('%d', tats[i]), 'PX', math.ceil((tats[i] - now_us) / 1000))
    end
    result[i + 1] = tats[i] - now_us
end
return result
"""


@dataclass(frozen=True)
class Bucket:
    """A budget of ``burst`` requests at once, refilled at one per ``interval_us``."""

    key: str
    interval_us: int
    burst: int

    @classmethod
    def per_second(cls, key: str, rate_per_s: float, burst: int) -> Bucket:
        """``rate_per_s`` on average, ``burst`` of them at once."""
        if not 0 < rate_per_s <= MICROSECONDS_PER_S:
            raise ValueError(f"rate_per_s must be in (0, {MICROSECONDS_PER_S}], got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        return cls(key, round(MICROSECONDS_PER_S / rate_per_s), burst)

    def wait_us(self, ahead_us: int) -> int:
        """How long until this bucket allows a request, given its TAT ``ahead_us`` from now."""
        return max(0, ahead_us - self.interval_us * (self.burst - 1))

    def remaining(self, ahead_us: int) -> int:
        """Requests this bucket would still allow at once, given its TAT ``ahead_us`` from now."""
        return max(0, (self.burst * self.interval_us - ahead_us) // self.interval_us)


@dataclass(frozen=True)
class Decision:
    """The answer for one request: ``wait_us`` 0 if it was allowed (and counted), and each bucket's
    TAT ahead of now afterwards, in the order the buckets were given."""

    wait_us: int
    ahead_us: tuple[int, ...]

    @property
    def wait_s(self) -> float:
        return self.wait_us / MICROSECONDS_PER_S


def whole_seconds(microseconds: int) -> int:
    """Rounded up: a client waiting this long is never early."""
    return math.ceil(microseconds / MICROSECONDS_PER_S)


class Gcra:
    """Checks and counts requests against buckets in Redis, one script call per request."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_GCRA_LUA)

    async def take(self, buckets: Sequence[Bucket]) -> Decision:
        """Count one request in every bucket if each allows it; else count nothing and say how long to wait."""
        args = [value for bucket in buckets for value in (bucket.interval_us, bucket.burst)]
        result = await self._script(keys=[bucket.key for bucket in buckets], args=args)
        return Decision(int(result[0]), tuple(int(ahead) for ahead in result[1:]))
