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

    max_attempts: int | None = Field(default=None, ge=1)
    base_delay_s: float | None = Field(default=None, ge=0)
    max_delay_s: float | None = Field(default=None, ge=0)


class SenderSettings(HeraldSettings):
    max_attempts: int = Field(default=5, ge=1)
    retry_base_delay_s: float = Field(default=2.0, ge=0)
    retry_max_delay_s: float = Field(default=300.0, ge=0)
    # Per message type (metadata "type"), e.g. {"otp": {"max_attempts": 2, "max_delay_s": 10}}.
    retry_policies: dict[str, RetrySettings] = Field(default_factory=dict)
    # Every provider call is bounded by this (seconds).
    provider_timeout_s: float = Field(default=10.0, gt=0)
    # Sends per second per provider, shared by every replica, e.g. {"smtp": 500}; unlisted: unlimited.
    provider_rate_limits: dict[str, float] = Field(default_factory=dict)
    # A provider's circuit opens when this share of its calls failed in the window (with enough calls).
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_minimum_calls: int = Field(default=10, ge=1)
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_open_s: float = Field(default=30.0, gt=0)
    breaker_half_open_probes: int = Field(default=3, ge=1)
    provider_health_interval_s: float = Field(default=30.0, gt=0)

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
