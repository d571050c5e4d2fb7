"""Topic names: ``<prefix>.<name>.v<contract version>``, e.g. ``herald.send.email.v1``.

Requests, routable notifications and each channel's deliveries flow in three priority lanes. The normal
lane keeps the stream's own name (what a producer that knows no lanes writes to, and what Herald had
before lanes); high and low have topics of their own, ``herald.send.email.high.v1``. Consumers read all
three, higher lanes first (``shared/kafka/lanes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1
CHANNELS = ("email", "sms", "push", "webhook")
# Highest first: the order consumers take them in.
LANES = ("high", "normal", "low")


@dataclass(frozen=True)
class Topics:
    """Every topic of one Herald installation (``prefix`` separates installations and test runs)."""

    prefix: str

    def _name(self, name: str) -> str:
        return f"{self.prefix}.{name}.v{CONTRACT_VERSION}"

    @property
    def requests(self) -> str:
        return self._name("requests")

    @property
    def routable(self) -> str:
        return self._name("routable")

    @property
    def status(self) -> str:
        return self._name("status")

    @property
    def delay(self) -> str:
        return self._name("delay")

    @property
    def dlq(self) -> str:
        return self._name("dlq")

    def send(self, channel: str) -> str:
        """The normal lane of a channel's deliveries."""
        return self._name(f"send.{channel}")

    def _lane(self, stream: str, priority: str) -> str:
        if priority not in LANES:
            raise ValueError(f"unknown priority {priority!r}; one of {', '.join(LANES)}")
        return self._name(stream if priority == "normal" else f"{stream}.{priority}")

    def requests_for(self, priority: str) -> str:
        """The requests topic of ``priority``'s lane."""
        return self._lane("requests", priority)

    def routable_for(self, priority: str) -> str:
        """The routable topic of ``priority``'s lane."""
        return self._lane("routable", priority)

    def send_for(self, channel: str, priority: str) -> str:
        """The topic of ``channel``'s deliveries in ``priority``'s lane."""
        return self._lane(f"send.{channel}", priority)

    def lanes(self, stream: str) -> list[str]:
        """The topics of a prioritised stream (``requests``, ``routable``, ``send.email``), highest lane first."""
        return [self._lane(stream, priority) for priority in LANES]

    def channel_of(self, topic: str) -> str | None:
        """The channel whose deliveries ``topic`` carries, in whichever lane; None for another topic."""
        return next((channel for channel in CHANNELS if topic in self.lanes(f"send.{channel}")), None)

    def group(self, service: str) -> str:
        """The consumer group of a service: every replica of it shares the work."""
        return f"{self.prefix}.{service}"

    def all(self) -> list[str]:
        """Every topic, for creating them up front."""
        sends = [topic for channel in CHANNELS for topic in self.lanes(f"send.{channel}")]
        return [*self.lanes("requests"), *self.lanes("routable"), self.status, self.delay, self.dlq, *sends]

    def by_name(self) -> dict[str, str]:
        """Every topic under its name without prefix and version (``send.email``), which settings and the
        topic declarations (``shared/kafka/topic_specs.py``) use."""
        prefix, suffix = f"{self.prefix}.", f".v{CONTRACT_VERSION}"
        return {topic.removeprefix(prefix).removesuffix(suffix): topic for topic in self.all()}
