"""SendRateLimiter on a real Redis: bursts, waits, one budget across replicas, one per provider."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from shared.config import HeraldSettings
from shared.providers.ratelimit import SendRateLimiter
from shared.redis import create_redis, key

pytestmark = pytest.mark.integration

RATE_PER_S = 5.0
BURST = 4
INTERVAL_S = 1 / RATE_PER_S


@pytest.fixture
def key_prefix(settings: HeraldSettings) -> str:
    return key(settings, "ratelimit")


@pytest.fixture
def limiter(redis: Redis, key_prefix: str) -> SendRateLimiter:
    return SendRateLimiter(redis, key_prefix)


async def acquire_burst(limiter: SendRateLimiter, provider: str) -> list[float]:
    return [await limiter.acquire(provider, RATE_PER_S, BURST) for _ in range(BURST)]


async def test_a_burst_goes_at_once_then_the_next_waits_about_one_interval(limiter: SendRateLimiter) -> None:
    started_s = time.monotonic()
    burst = await acquire_burst(limiter, "smtp")
    wait_s = await limiter.acquire("smtp", RATE_PER_S, BURST)
    elapsed_s = time.monotonic() - started_s
    assert burst == [0.0] * BURST
    # The budget refills while the calls run, so the wait is one interval less at most the time they took.
    assert 0 < wait_s <= INTERVAL_S
    assert wait_s == pytest.approx(INTERVAL_S, abs=elapsed_s)


async def test_refused_attempts_count_nothing(limiter: SendRateLimiter) -> None:
    await acquire_burst(limiter, "smtp")
    first_wait_s = await limiter.acquire("smtp", RATE_PER_S, BURST)
    second_wait_s = await limiter.acquire("smtp", RATE_PER_S, BURST)
    # Had the first refusal been counted, the second would wait a whole interval longer.
    assert 0 < second_wait_s <= first_wait_s


async def test_one_more_goes_after_the_returned_wait(limiter: SendRateLimiter) -> None:
    await acquire_burst(limiter, "smtp")
    wait_s = await limiter.acquire("smtp", RATE_PER_S, BURST)
    assert wait_s > 0
    await asyncio.sleep(wait_s)
    assert await limiter.acquire("smtp", RATE_PER_S, BURST) == 0.0
    assert await limiter.acquire("smtp", RATE_PER_S, BURST) > 0


async def test_two_replicas_share_one_budget(redis: Redis, settings: HeraldSettings, key_prefix: str) -> None:
    other_client = create_redis(settings)
    try:
        replicas = [SendRateLimiter(redis, key_prefix), SendRateLimiter(other_client, key_prefix)]
        waits_s = [await replicas[i % 2].acquire("smtp", RATE_PER_S, BURST) for i in range(BURST + 2)]
    finally:
        await other_client.aclose()
    assert waits_s[:BURST] == [0.0] * BURST
    assert all(wait_s > 0 for wait_s in waits_s[BURST:])


async def test_providers_have_separate_budgets(limiter: SendRateLimiter) -> None:
    await acquire_burst(limiter, "smtp")
    assert await limiter.acquire("smtp", RATE_PER_S, BURST) > 0
    assert await acquire_burst(limiter, "ses") == [0.0] * BURST
    assert await limiter.acquire("ses", RATE_PER_S, BURST) > 0


async def test_an_idle_key_expires_once_the_budget_is_full_again(
    limiter: SendRateLimiter, redis: Redis, key_prefix: str
) -> None:
    await acquire_burst(limiter, "smtp")
    ttl_ms = await redis.pttl(f"{key_prefix}:smtp")
    assert 0 < ttl_ms <= BURST * INTERVAL_S * 1000


async def test_a_long_run_keeps_to_the_rate(limiter: SendRateLimiter) -> None:
    rate_per_s, burst, sends = 1000.0, 10, 200
    started_s = time.monotonic()
    sent = 0
    while sent < sends:
        wait_s = await limiter.acquire("smtp", rate_per_s, burst)
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        else:
            sent += 1
    # After the burst, each send needs one interval of its own.
    assert time.monotonic() - started_s >= (sends - burst) / rate_per_s


@pytest.mark.parametrize(
    ("rate_per_s", "burst", "named"),
    [(0.0, 1, "rate_per_s"), (-1.0, 1, "rate_per_s"), (2_000_000.0, 1, "rate_per_s"), (1.0, 0, "burst")],
)
async def test_refuses_a_rate_or_burst_that_makes_no_sense(
    limiter: SendRateLimiter, rate_per_s: float, burst: int, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        await limiter.acquire("smtp", rate_per_s, burst)
