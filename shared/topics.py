"""Topic names: ``<prefix>.<name>.v<contract version>``, e.g. ``herald.send.email.v1``."""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1
CHANNELS = ("email", "sms", "push", "webhook")


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
        """The topic a channel's sender consumes."""
        return self._name(f"send.{channel}")

    def group(self, service: str) -> str:
        """The consumer group of a service: every replica of it shares the work."""
        return f"{self.prefix}.{service}"

    def all(self) -> list[str]:
        """Every topic, for creating them up front."""
        return [self.requests, self.routable, self.status, self.delay, self.dlq] + [
            self.send(channel) for channel in CHANNELS
        ]

    def by_name(self) -> dict[str, str]:
        """Every topic under its name without prefix and version (``send.email``), which settings and the
        topic declarations (``shared/kafka/topic_specs.py``) use."""
        prefix, suffix = f"{self.prefix}.", f".v{CONTRACT_VERSION}"
        return {topic.removeprefix(prefix).removesuffix(suffix): topic for topic in self.all()}
