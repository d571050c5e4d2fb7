"""The gateway's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import HeraldSettings


class GatewaySettings(HeraldSettings):
    gateway_host: str = "0.0.0.0"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    # The local stack's key: created at start-up for the tenant below. Leave unset in production.
    dev_api_key: SecretStr | None = Field(default=None, min_length=16)
    dev_tenant: str = "dev"
    # How long a verified API key is trusted without asking Postgres again (seconds).
    auth_cache_ttl_s: float = Field(default=30.0, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Verifies the router's open/click tracking tokens (the router's HERALD_TRACKING_SIGNING_KEY);
    # unset: the tracking routes answer 404.
    tracking_signing_key: SecretStr | None = Field(default=None, min_length=32)
    # How long an Idempotency-Key and the first response to it are kept (seconds; the draft's 24 h).
    idempotency_ttl_s: int = Field(default=86_400, ge=1)
    # How long a key stays claimed by a request still being answered; bounds the 409s after a crash.
    idempotency_lock_ttl_s: int = Field(default=60, ge=1)
