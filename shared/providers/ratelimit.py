"""A send-rate limit per provider, shared by every replica through Redis.

GCRA (generic cell rate algorithm): one key per provider holds the theoretical arrival time (TAT),
the moment the provider's budget would be back to full. A send is allowed when the TAT is at most
``burst - 1`` emission intervals ahead of now, and moves it on by one interval. One number per
provider, updated atomically in a Lua script, with Redis's clock so replicas with skewed clocks agree.
"""

from __future__ import annotations

from redis.asyncio import Redis

MICROSECONDS_PER_S = 1_000_000

# KEYS[1]: the provider's TAT in microseconds of Redis server time.
# ARGV[1]: emission interval in microseconds (1 / rate). ARGV[2]: burst.
# Returns 0 when the send is allowed (and counted), else the microseconds to wait (and counts nothing).
# Times are whole microseconds, below 2^53, so Lua's doubles hold them exactly.
_GCRA_LUA = """
local server_time = redis.call('TIME')
local now_us = tonumber(server_time[1]) * 1000000 + tonumber(server_time[2])
local interval_us = tonumber(ARGV[1])
local tolerance_us = interval_us * (tonumber(ARGV[2]) - 1)
local tat_us = math.max(tonumber(redis.call('GET', KEYS[1])) or now_us, now_us)
local wait_us = tat_us - tolerance_us - now_us
if wait_us > 0 then
    return wait_us
end
local new_tat_us = tat_us + interval_us
-- The key expires when the budget is full again, where a missing key means the same.
-- '%d' because Lua would write a number this large in exponent notation, losing digits.
redis.call('SET', KEYS[1], string.format('%d', new_tat_us), 'PX', math.ceil((new_tat_us - now_us) / 1000))
return 0
"""


class SendRateLimiter:
    """Allows each provider ``rate_per_s`` sends a second on average, ``burst`` of them at once."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self._key_prefix = key_prefix
        self._gcra = redis.register_script(_GCRA_LUA)

    async def acquire(self, provider: str, rate_per_s: float, burst: int) -> float:
        """0.0 if one send to ``provider`` may go now (and it is counted), else seconds to wait first."""
        if not 0 < rate_per_s <= MICROSECONDS_PER_S:
            raise ValueError(f"rate_per_s must be in (0, {MICROSECONDS_PER_S}], got {rate_per_s}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        interval_us = round(MICROSECONDS_PER_S / rate_per_s)
        wait_us = await self._gcra(keys=[f"{self._key_prefix}:{provider}"], args=[interval_us, burst])
        return int(wait_us) / MICROSECONDS_PER_S
