"""What a delivery attempt can end in, and when to try again. Shared by every channel's sender."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import DeadLetterReason


@dataclass(frozen=True)
class Delivered:
    """The provider accepted the message."""

    provider: str
    detail: str | None = None


@dataclass(frozen=True)
class Retry:
    """A failure that may pass (timeout, 4xx SMTP, 5xx/429 HTTP): try again later."""

    provider: str
    detail: str
    reason: str = "provider_unavailable"
    # The earliest sensible retry (a rate limit's wait, an open circuit's remaining time), if known.
    after_s: float | None = None


@dataclass(frozen=True)
class Failed:
    """A failure that will not pass (bad address, rejected content): never try again."""

    provider: str
    detail: str
    reason: DeadLetterReason = DeadLetterReason.PROVIDER_REJECTED


Outcome = Delivered | Retry | Failed

DEAD_TOKEN_REASONS = frozenset({DeadLetterReason.UNREGISTERED_TOKEN, DeadLetterReason.INVALID_TOKEN})


def token_is_dead(outcome: Outcome) -> bool:
    """Whether a push provider refused the delivery because its device token must never be used again."""
    return isinstance(outcome, Failed) and outcome.reason in DEAD_TOKEN_REASONS


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter; ``max_attempts`` counts the first try."""

    max_attempts: int = 5
    base_delay_s: float = 2.0
    max_delay_s: float = 300.0

    def delay_before(self, attempt: int) -> float | None:
        """Seconds to wait before ``attempt`` (2, 3, ...), or None when attempts are exhausted."""
        if attempt > self.max_attempts:
            return None
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 2))
        # Equal jitter: the random half spreads retries of a failed burst so they don't hit the provider at
        # once; the fixed half keeps every wait at least half the backoff, so a delivery's retries span at
        # least half their ceilings' sum (15 s with the defaults), never next to nothing as full jitter may.
        return random.uniform(ceiling / 2, ceiling)


# The metadata label that names a message's type (e.g. "otp", "marketing"): retries and dedup windows
# can be set per type.
MESSAGE_TYPE = "type"


@dataclass(frozen=True)
class RetryPolicies:
    """A channel's retry policy, and the ones its message types override it with."""

    default: RetryPolicy
    by_type: Mapping[str, RetryPolicy] = field(default_factory=dict)

    def for_message(self, metadata: Mapping[str, str]) -> RetryPolicy:
        """The policy of the message's type (``metadata["type"]``), else the channel's."""
        return self.by_type.get(metadata.get(MESSAGE_TYPE, ""), self.default)
