"""Sending each push through the provider chain of its device's platform, and retiring dead tokens."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from shared.delivery import Failed, Outcome, token_is_dead
from shared.errors import DeadLetterReason
from shared.messages import PushDelivery
from shared.providers.base import Provider
from shared.providers.chain import ProviderChain, close_providers
from shared.storage.devices import DeviceRepository

log = structlog.get_logger(__name__)

NAME = "push"


class PlatformChains:
    """The push channel's providers: one failover chain per platform (android, ios, web).

    A token a provider reports as unregistered or invalid is disabled in the device registry, so the
    router never fans out to it again; the delivery itself fails with that reason.
    """

    name = NAME

    def __init__(self, chains: Mapping[str, ProviderChain[PushDelivery]], devices: DeviceRepository) -> None:
        self._chains = dict(chains)
        self._devices = devices

    @property
    def providers(self) -> list[Provider[PushDelivery]]:
        """Every provider of every platform, each once."""
        unique = {id(p): p for chain in self._chains.values() for p in chain.providers}
        return list(unique.values())

    def chain(self, platform: str) -> ProviderChain[PushDelivery]:
        return self._chains[platform]

    def validate_config(self) -> None:
        for provider in self.providers:
            provider.validate_config()

    async def health(self) -> None:
        """Healthy while every platform has a provider that answers."""
        for chain in self._chains.values():
            await chain.health()

    async def close(self) -> None:
        # Not chain by chain: a provider serving several platforms (FCM) is closed once.
        await close_providers(self.providers)

    async def send(self, delivery: PushDelivery) -> Outcome:
        """Send through the platform's chain; disable the token if the provider says it is dead."""
        chain = self._chains.get(delivery["platform"])
        if chain is None:
            return Failed(NAME, f"no provider for platform {delivery['platform']!r}", DeadLetterReason.INVALID_PAYLOAD)
        outcome = await chain.send(delivery)
        if token_is_dead(outcome):
            await self._disable(delivery, outcome)
        return outcome

    async def _disable(self, delivery: PushDelivery, outcome: Outcome) -> None:
        try:
            disabled = await self._devices.disable_token(
                delivery["tenant_id"], delivery["token"], f"{outcome.provider}: {outcome.detail}"
            )
        except Exception as error:
            # Not raised: the delivery's outcome stands; the next push to the token fails the same way
            # and disables it then.
            log.warning("device_disable_failed", error=repr(error))
        else:
            log.info("device_disabled", platform=delivery["platform"], disabled=disabled, reason=outcome.detail)
