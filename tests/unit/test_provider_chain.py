"""The provider chain: failover, breakers, timeouts. Providers here are scripted doubles of Herald's own
interface (the SMTP provider itself is tested against a real SMTP server in tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.providers.breaker import BreakerPolicy, BreakerState
from shared.providers.chain import ProviderChain, ProviderLimits
from tests.factories import DELIVERY, DestinationScriptedProvider, ScriptedProvider

pytestmark = pytest.mark.unit


def chain(
    *providers: ScriptedProvider, policy: BreakerPolicy | None = None, timeout_s: float = 10.0
) -> ProviderChain[Any]:
    return ProviderChain(
        list(providers),
        breaker_policy=policy or BreakerPolicy(),
        limits={p.name: ProviderLimits(timeout_s=timeout_s) for p in providers},
        limiter=None,
    )


async def test_the_primary_sends_when_it_can() -> None:
    primary, secondary = ScriptedProvider("a", [Delivered("a")]), ScriptedProvider("b", [Delivered("b")])
    assert await chain(primary, secondary).send(DELIVERY) == Delivered("a")
    assert secondary.calls == 0


async def test_a_retryable_failure_fails_over_to_the_next_provider() -> None:
    primary = ScriptedProvider("a", [Retry("a", "503 unavailable")])
    secondary = ScriptedProvider("b", [Delivered("b")])
    assert await chain(primary, secondary).send(DELIVERY) == Delivered("b")
    assert primary.calls == 1


async def test_a_permanent_failure_does_not_fail_over() -> None:
    primary = ScriptedProvider("a", [Failed("a", "550 no such user", DeadLetterReason.PROVIDER_REJECTED)])
    secondary = ScriptedProvider("b", [Delivered("b")])
    outcome = await chain(primary, secondary).send(DELIVERY)
    assert isinstance(outcome, Failed)
    assert secondary.calls == 0


async def test_when_every_provider_fails_the_result_is_a_retry_naming_each() -> None:
    outcome = await chain(
        ScriptedProvider("a", [Retry("a", "down")]), ScriptedProvider("b", [Retry("b", "busy")])
    ).send(DELIVERY)
    assert isinstance(outcome, Retry)
    assert outcome.detail == "a: down; b: busy"


async def test_a_hanging_provider_times_out_and_the_next_one_sends() -> None:
    slow, fast = ScriptedProvider("slow", [5.0]), ScriptedProvider("fast", [Delivered("fast")])
    assert await chain(slow, fast, timeout_s=0.05).send(DELIVERY) == Delivered("fast")


async def test_a_timeout_is_a_retryable_failure() -> None:
    outcome = await chain(ScriptedProvider("slow", [5.0]), timeout_s=0.05).send(DELIVERY)
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_timeout"


async def test_repeated_failures_open_the_breaker_and_the_provider_is_skipped() -> None:
    policy = BreakerPolicy(failure_rate_threshold=0.5, minimum_calls=4, open_for_s=60)
    primary = ScriptedProvider("a", [Retry("a", "down")])
    secondary = ScriptedProvider("b", [Delivered("b")])
    providers = chain(primary, secondary, policy=policy)
    for _ in range(4):
        assert await providers.send(DELIVERY) == Delivered("b")
    assert providers.breaker("a").state is BreakerState.OPEN
    assert await providers.send(DELIVERY) == Delivered("b")
    assert primary.calls == 4, "an open circuit is not called"


async def test_an_open_circuit_alone_asks_to_retry_when_it_half_opens() -> None:
    policy = BreakerPolicy(minimum_calls=1, open_for_s=60)
    only = chain(ScriptedProvider("a", [Retry("a", "down")]), policy=policy)
    await only.send(DELIVERY)
    outcome = await only.send(DELIVERY)
    assert isinstance(outcome, Retry)
    assert outcome.reason == "circuit_open"
    assert outcome.after_s is not None
    assert 0 < outcome.after_s <= 60


async def test_a_permanent_failure_does_not_count_against_the_provider() -> None:
    policy = BreakerPolicy(minimum_calls=2)
    provider = ScriptedProvider("a", [Failed("a", "bad address")])
    providers = chain(provider, policy=policy)
    for _ in range(5):
        await providers.send(DELIVERY)
    assert providers.breaker("a").state is BreakerState.CLOSED


async def test_a_dead_destination_opens_its_own_circuit_and_no_other() -> None:
    policy = BreakerPolicy(failure_rate_threshold=0.5, minimum_calls=2, open_for_s=60)
    hooks = DestinationScriptedProvider("hooks", [Retry("hooks", "503"), Retry("hooks", "503"), Delivered("hooks")])
    providers = chain(hooks, policy=policy)
    for _ in range(2):
        await providers.send({**DELIVERY, "url": "dead.example:443"})
    assert providers.breaker("hooks", "dead.example:443").state is BreakerState.OPEN
    assert await providers.send({**DELIVERY, "url": "healthy.example:443"}) == Delivered("hooks")
    skipped = await providers.send({**DELIVERY, "url": "dead.example:443"})
    assert isinstance(skipped, Retry)
    assert (skipped.reason, skipped.detail) == ("circuit_open", "circuit open for dead.example:443")
    assert hooks.calls == 3
    with pytest.raises(ValueError, match="per destination"):
        providers.breaker("hooks")


def test_a_chain_needs_a_provider() -> None:
    with pytest.raises(ValueError, match="at least one provider"):
        ProviderChain([], breaker_policy=BreakerPolicy(), limits={}, limiter=None)
