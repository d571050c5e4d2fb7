"""Building a channel's provider chains from configuration."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from shared.providers.base import Provider, ProviderConfigError
from shared.providers.breaker import BreakerPolicy
from shared.providers.chain import ProviderChain, ProviderLimits, breakers_for
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
    return build_chains({variable: names}, available, settings, limiter)[variable]


def build_chains(
    chains: Mapping[str, Sequence[str]],
    available: Mapping[str, Callable[[], Provider[DeliveryT]]],
    settings: SenderSettings,
    limiter: SendRateLimiter | None,
) -> dict[str, ProviderChain[DeliveryT]]:
    """One chain per entry of ``chains`` (the setting that lists its providers -> their names).

    A provider listed in several chains is built once and keeps one breaker (or one per destination),
    so its failures on one chain open its circuit on all of them.

    Raises:
        ProviderConfigError: naming the setting, for an empty list or an unknown provider; or a
            provider whose configuration cannot work.
    """
    for variable, names in chains.items():
        if not names:
            raise ProviderConfigError(f"{variable}: list at least one provider ({', '.join(available)})")
        unknown = [name for name in names if name not in available]
        if unknown:
            raise ProviderConfigError(f"{variable}: unknown provider(s) {unknown}; available: {', '.join(available)}")
    used = list(dict.fromkeys(name for names in chains.values() for name in names))
    providers = {name: available[name]() for name in used}
    limits = {
        name: ProviderLimits(
            timeout_s=settings.provider_timeout_s,
            rate_per_s=settings.provider_rate_limits.get(name),
            burst=max(1, int(settings.provider_rate_limits.get(name, 1))),
        )
        for name in used
    }
    policy = BreakerPolicy(
        failure_rate_threshold=settings.breaker_failure_rate,
        minimum_calls=settings.breaker_minimum_calls,
        window_s=settings.breaker_window_s,
        open_for_s=settings.breaker_open_s,
        half_open_probes=settings.breaker_half_open_probes,
    )
    breakers = {name: breakers_for(providers[name], policy) for name in used}
    built = {
        variable: ProviderChain(
            [providers[name] for name in names],
            breaker_policy=policy,
            limits=limits,
            limiter=limiter,
            breakers=breakers,
        )
        for variable, names in chains.items()
    }
    for provider in providers.values():
        provider.validate_config()
    return built
