"""Building a channel's provider chain from configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from shared.providers.base import Provider, ProviderConfigError
from shared.providers.breaker import BreakerPolicy
from shared.providers.chain import ProviderChain, ProviderLimits
from shared.providers.ratelimit import SendRateLimiter
from shared.sender_settings import SenderSettings

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any])


def build_chain(
    channel: str,
    names: Sequence[str],
    available: Mapping[str, Callable[[], Provider[DeliveryT]]],
    settings: SenderSettings,
    limiter: SendRateLimiter | None,
) -> ProviderChain[DeliveryT]:
    """The chain of the providers ``names`` (in that order, each switched on by being listed).

    Raises:
        ProviderConfigError: an unknown provider name, or a provider whose configuration cannot work.
    """
    variable = f"HERALD_{channel.upper()}_PROVIDERS"
    if not names:
        raise ProviderConfigError(f"{variable}: list at least one provider ({', '.join(available)})")
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ProviderConfigError(f"{variable}: unknown provider(s) {unknown}; available: {', '.join(available)}")
    providers = [available[name]() for name in names]
    limits = {
        name: ProviderLimits(
            timeout_s=settings.provider_timeout_s,
            rate_per_s=settings.provider_rate_limits.get(name),
            burst=max(1, int(settings.provider_rate_limits.get(name, 1))),
        )
        for name in names
    }
    policy = BreakerPolicy(
        failure_rate_threshold=settings.breaker_failure_rate,
        minimum_calls=settings.breaker_minimum_calls,
        window_s=settings.breaker_window_s,
        open_for_s=settings.breaker_open_s,
        half_open_probes=settings.breaker_half_open_probes,
    )
    chain = ProviderChain(providers, breaker_policy=policy, limits=limits, limiter=limiter)
    chain.validate_config()
    return chain
