"""A channel's providers in order of preference, with failover, circuit breakers, rate limits and timeouts.

For each delivery the chain tries its providers in order. A provider is skipped while its circuit is
open (for a provider that calls customers' endpoints, the circuit of the delivery's destination) or
its shared rate limit would make the delivery wait too long; a retryable failure (timeout, 4xx
SMTP, 5xx HTTP, 429) counts against its breaker and the next provider is tried; a permanent failure
(a bad address) ends the attempt, since another provider would refuse it too. When no provider
could take it, the result is a :class:`Retry` with the earliest time worth trying again.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import structlog

from shared.delivery import Outcome, Retry
from shared.providers.base import DestinationProvider, Provider
from shared.providers.breaker import BreakerPolicy, BreakerState, CircuitBreaker, DestinationBreakers
from shared.providers.ratelimit import SendRateLimiter

log = structlog.get_logger(__name__)

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any])
# Waiting this long for a rate-limit slot beats a round trip through the retry service.
MAX_THROTTLE_WAIT_S = 1.0


@dataclass(frozen=True)
class ProviderLimits:
    """How one provider may be used."""

    timeout_s: float = 10.0
    # Sends per second across every replica; None means unlimited.
    rate_per_s: float | None = None
    burst: int = 1


# What guards one provider: one breaker, or one per destination of a provider that calls customers' endpoints.
Breakers = CircuitBreaker | DestinationBreakers[DeliveryT]


def breakers_for(provider: Provider[DeliveryT], policy: BreakerPolicy) -> Breakers[DeliveryT]:
    """A new breaker for ``provider``, or breakers per destination for a :class:`DestinationProvider`."""
    if isinstance(provider, DestinationProvider):
        return DestinationBreakers(provider, policy)
    return CircuitBreaker(provider.name, policy)


async def close_providers(providers: Sequence[Provider[Any]]) -> None:
    """Close each provider that has a ``close`` (sync or async)."""
    for provider in providers:
        close = getattr(provider, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result


class ProviderChain(Generic[DeliveryT]):
    """Sends through the first provider that can take the delivery."""

    def __init__(
        self,
        providers: Sequence[Provider[DeliveryT]],
        *,
        breaker_policy: BreakerPolicy,
        limits: Mapping[str, ProviderLimits],
        limiter: SendRateLimiter | None,
        breakers: Mapping[str, Breakers[DeliveryT]] | None = None,
    ) -> None:
        """``breakers`` lets chains that share a provider share its breaker (push: FCM serves every platform)."""
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self._providers = list(providers)
        shared = breakers or {}
        self._breakers = {
            p.name: shared[p.name] if p.name in shared else breakers_for(p, breaker_policy) for p in providers
        }
        self._limits = {p.name: limits.get(p.name, ProviderLimits()) for p in providers}
        self._limiter = limiter

    @property
    def name(self) -> str:
        return ",".join(provider.name for provider in self._providers)

    @property
    def providers(self) -> list[Provider[DeliveryT]]:
        return list(self._providers)

    def breaker(self, provider: str, destination: str | None = None) -> CircuitBreaker:
        """``provider``'s breaker; for one with breakers per destination, ``destination``'s."""
        breakers = self._breakers[provider]
        if isinstance(breakers, CircuitBreaker):
            return breakers
        if destination is None:
            raise ValueError(f"{provider} has a circuit breaker per destination: name one")
        return breakers.get(destination)

    def validate_config(self) -> None:
        for provider in self._providers:
            provider.validate_config()

    async def close(self) -> None:
        """Release what providers hold open (connections, clients), for those that hold any."""
        await close_providers(self._providers)

    async def health(self) -> None:
        """Healthy while at least one provider answers."""
        errors = []
        for provider in self._providers:
            try:
                await provider.health()
            except Exception as error:
                errors.append(f"{provider.name}: {error!r}")
            else:
                return
        raise ConnectionError("; ".join(errors))

    async def send(self, delivery: DeliveryT) -> Outcome:
        """Try each provider in turn; see the module docstring for the rules."""
        skipped: list[Retry] = []
        for provider in self._providers:
            outcome = await self._try(provider, delivery)
            if not isinstance(outcome, Retry):
                return outcome
            skipped.append(outcome)
            log.info("provider_failover", provider=provider.name, reason=outcome.reason, detail=outcome.detail)
        waits = [retry.after_s for retry in skipped if retry.after_s is not None]
        last = skipped[-1]
        if len(skipped) == 1:
            return last
        detail = "; ".join(f"{retry.provider}: {retry.detail}" for retry in skipped)
        return Retry(last.provider, detail, last.reason, after_s=min(waits) if len(waits) == len(skipped) else None)

    async def _try(self, provider: Provider[DeliveryT], delivery: DeliveryT) -> Outcome:
        breakers = self._breakers[provider.name]
        breaker = breakers if isinstance(breakers, CircuitBreaker) else breakers.for_delivery(delivery)
        limits = self._limits[provider.name]
        if breaker.state is BreakerState.OPEN:
            circuit = "circuit open" if breaker.destination is None else f"circuit open for {breaker.destination}"
            return Retry(provider.name, circuit, "circuit_open", after_s=breaker.retry_after_s())
        if self._limiter is not None and limits.rate_per_s is not None:
            wait = await self._limiter.acquire(provider.name, limits.rate_per_s, limits.burst)
            while 0 < wait <= MAX_THROTTLE_WAIT_S:
                await asyncio.sleep(wait)
                wait = await self._limiter.acquire(provider.name, limits.rate_per_s, limits.burst)
            if wait > 0:
                return Retry(provider.name, f"rate limited for {wait:.1f} s", "rate_limited", after_s=wait)
        # Checked last: in half-open, allow() hands out one of the few probe slots.
        if not breaker.allow():
            return Retry(provider.name, "circuit half-open, probes busy", "circuit_open", after_s=1.0)
        try:
            async with asyncio.timeout(limits.timeout_s):
                outcome = await provider.send(delivery)
        except TimeoutError:
            outcome = Retry(provider.name, f"no answer within {limits.timeout_s:g} s", "provider_timeout")
        if isinstance(outcome, Retry):
            breaker.record_failure()
        else:
            # A permanent failure is about the message (a bad address), not the provider's health.
            breaker.record_success()
        return outcome
