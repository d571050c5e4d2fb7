"""Settings every channel sender shares (``HERALD_*``): retries, providers' limits and breakers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shared.config import CommaSeparated, HeraldSettings
from shared.delivery import RetryPolicies, RetryPolicy

# A channel's providers in order of preference, from a comma-separated variable.
ProviderNames = CommaSeparated


class RetrySettings(BaseModel):
    """One message type's retries (an entry of ``HERALD_RETRY_POLICIES``); unset fields keep the channel's."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int | None = Field(default=None, ge=1, description="Attempts, the first one included.")
    base_delay_s: float | None = Field(default=None, ge=0, description="The backoff's first delay (seconds).")
    max_delay_s: float | None = Field(default=None, ge=0, description="The longest delay between attempts (seconds).")


class SenderSettings(HeraldSettings):
    max_attempts: int = Field(
        default=5,
        ge=1,
        description=(
            "Attempts (the first one included) before a retryable failure goes to the DLQ as max_attempts_exceeded."
        ),
    )
    retry_base_delay_s: float = Field(
        default=2.0,
        ge=0,
        description=(
            "Exponential backoff with equal jitter: the wait before attempt n is between half and all of "
            "min(HERALD_RETRY_MAX_DELAY_S, this x 2^(n-2)) seconds."
        ),
    )
    retry_max_delay_s: float = Field(default=300.0, ge=0, description="The longest wait between attempts (seconds).")
    retry_policies: dict[str, RetrySettings] = Field(
        default_factory=dict,
        description=(
            'Per message type (metadata "type"), JSON: {"otp": {"max_attempts": 2, "max_delay_s": 10}}; unset '
            "fields keep the channel's (each sender is one channel, so the three settings above are per channel)."
        ),
    )
    provider_timeout_s: float = Field(
        default=10.0, gt=0, description="Bound on every provider call (seconds); a timeout is a retryable failure."
    )
    provider_rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description=(
            'Sends per second per provider, shared by every replica through Redis, JSON: {"smtp": 500}; '
            "unlisted: unlimited."
        ),
    )
    breaker_failure_rate: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description=(
            "A provider's circuit opens when this share of at least HERALD_BREAKER_MINIMUM_CALLS calls in "
            "HERALD_BREAKER_WINDOW_S failed."
        ),
    )
    breaker_minimum_calls: int = Field(default=10, ge=1, description="Calls in the window before a circuit may open.")
    breaker_window_s: float = Field(default=30.0, gt=0, description="The circuit breaker's sliding window (seconds).")
    breaker_open_s: float = Field(
        default=30.0, gt=0, description="How long an open circuit stays open before half-open probes (seconds)."
    )
    breaker_half_open_probes: int = Field(
        default=3, ge=1, description="Successful probes that close a half-open circuit."
    )
    provider_health_interval_s: float = Field(
        default=30.0,
        gt=0,
        description="How often each provider's health is checked (readiness and herald_provider_up), in seconds.",
    )

    def policies(self) -> RetryPolicies:
        """The channel's retry policy and its message types' overrides."""
        default = RetryPolicy(self.max_attempts, self.retry_base_delay_s, self.retry_max_delay_s)
        return RetryPolicies(
            default,
            {
                name: RetryPolicy(
                    override.max_attempts or default.max_attempts,
                    default.base_delay_s if override.base_delay_s is None else override.base_delay_s,
                    default.max_delay_s if override.max_delay_s is None else override.max_delay_s,
                )
                for name, override in self.retry_policies.items()
            },
        )
