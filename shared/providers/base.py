"""The one small interface every provider implements (SMTP, SendGrid, Twilio, FCM, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

from shared.delivery import Outcome

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any], contravariant=True)
SetDeliveryT = TypeVar("SetDeliveryT", bound=Mapping[str, Any])


class ProviderConfigError(ValueError):
    """A provider's configuration cannot work (a missing key, a bad URL); raised at start-up."""


class Provider(Protocol[DeliveryT]):
    """One way of reaching people on a channel."""

    @property
    def name(self) -> str:
        """Short and stable: it labels metrics, statuses and configuration (``smtp``, ``sendgrid``)."""
        ...

    def validate_config(self) -> None:
        """Raise :class:`ProviderConfigError` naming what is wrong; called once at start-up."""
        ...

    async def send(self, delivery: DeliveryT) -> Outcome:
        """Send one delivery. Provider failures are returned as outcomes, never raised.

        Must not block the event loop; the caller bounds it with a timeout.
        """
        ...

    async def health(self) -> None:
        """Raise if the provider cannot be reached now (a cheap call: a connection, a NOOP)."""
        ...


@runtime_checkable
class DestinationProvider(Provider[DeliveryT], Protocol[DeliveryT]):
    """A provider that calls wherever each delivery says (a customer's webhook URL), not one service of its own.

    Its circuit breakers are per destination: one customer's dead endpoint must not stop the others'.
    """

    def destination(self, delivery: DeliveryT) -> str:
        """Where ``delivery`` goes, as one breaker covers it: ``host:port``."""
        ...


class ProviderSet(Provider[SetDeliveryT], Protocol[SetDeliveryT]):
    """What a sender sends through: a provider made of providers (a failover chain, or a chain per platform)."""

    @property
    def providers(self) -> list[Provider[SetDeliveryT]]:
        """Every provider inside, each once (for health checks)."""
        ...

    async def close(self) -> None:
        """Release what the providers hold open."""
        ...
