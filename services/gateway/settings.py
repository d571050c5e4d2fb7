"""The gateway's settings (``HERALD_*``)."""

import ssl
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from services.gateway.feedback.settings import CallbackSettings
from shared.config import CommaSeparated, WebhookSettings, WebPushSettings

# A per-minute limit's refill interval is 60 s / limit, in whole microseconds: at least 1.
MAX_PER_MINUTE = 60_000_000


class TenantRateLimits(BaseModel):
    """One tenant's limits (an entry of ``HERALD_RATE_LIMIT_TENANTS``); unset fields keep the defaults."""

    model_config = ConfigDict(extra="forbid")

    per_key: int | None = Field(default=None, ge=0, le=MAX_PER_MINUTE)
    per_tenant: int | None = Field(default=None, ge=0, le=MAX_PER_MINUTE)


class GatewaySettings(CallbackSettings, WebhookSettings, WebPushSettings):
    gateway_host: str = "0.0.0.0"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    # The local stack's key: created at start-up for the tenant below. Leave unset in production.
    dev_api_key: SecretStr | None = Field(default=None, min_length=16)
    dev_tenant: str = "dev"
    # How long a verified API key is trusted without asking Postgres again (seconds).
    auth_cache_ttl_s: float = Field(default=30.0, ge=0)
    # New API keys look like hk_<env>_<random> (hk_live_…): tells a test key from a production one at a glance.
    api_key_env: str = Field(default="live", pattern=r"^[a-z0-9]{1,8}$")
    # JWTs (services.gateway.auth): off unless a secret (HS256) or a JWKS URL (RS256) is set, and then the
    # issuer and audience are required. The tenant comes from the claim named here, the role from
    # "role" or "roles".
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_hs256_secret: SecretStr | None = Field(default=None, min_length=32)
    jwt_jwks_url: str | None = None
    jwt_tenant_claim: str = "tenant"
    # Clock skew tolerated on exp/nbf/iat (seconds).
    jwt_leeway_s: float = Field(default=30.0, ge=0, le=300)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # What one request may hold and take before its route runs (services.gateway.http_limits): the
    # request line and headers (bytes, and how many headers), and the time to send them and the body.
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1_048_576)
    max_headers: int = Field(default=100, ge=10, le=1000)
    request_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    request_body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # POST /api/v1/notifications/bulk: notifications per request, and its own (larger, bounded) body limit.
    bulk_max_items: int = Field(default=1000, ge=1, le=10_000)
    bulk_max_body_bytes: int = Field(default=16 * 1_048_576, ge=1024, le=64 * 1_048_576)
    # Verifies the router's open/click tracking tokens (the router's HERALD_TRACKING_SIGNING_KEY);
    # unset: the tracking routes answer 404.
    tracking_signing_key: SecretStr | None = Field(default=None, min_length=32)
    # After a webhook endpoint's secret is rotated, its deliveries are signed with the previous secret
    # too for this long (seconds), so its receiver can switch without missing a message.
    webhook_secret_grace_s: int = Field(default=86_400, ge=0, le=30 * 86_400)
    # How long an Idempotency-Key and the first response to it are kept (seconds; the draft's 24 h).
    idempotency_ttl_s: int = Field(default=86_400, ge=1)
    # How long a key stays claimed by a request still being answered; bounds the 409s after a crash.
    idempotency_lock_ttl_s: int = Field(default=60, ge=1)
    # Requests a minute on the authenticated API (0: no limit), per API key, per tenant (all its keys
    # together) and for the whole gateway (every replica); services.gateway.ratelimit.
    rate_limit_per_key: int = Field(default=100, ge=0, le=MAX_PER_MINUTE)
    rate_limit_per_tenant: int = Field(default=100, ge=0, le=MAX_PER_MINUTE)
    rate_limit_global: int = Field(default=0, ge=0, le=MAX_PER_MINUTE)
    # Per tenant, JSON: {"acme": {"per_key": 600, "per_tenant": 1200}}.
    rate_limit_tenants: dict[str, TenantRateLimits] = Field(default_factory=dict)
    # Browser origins allowed to call the API (https://app.example.com,...); empty: no CORS headers.
    cors_origins: CommaSeparated = Field(default_factory=list)
    # Serve HTTPS with this certificate (chain) and private key, both PEM; neither: plain HTTP.
    gateway_tls_cert_file: Path | None = None
    gateway_tls_key_file: Path | None = Field(default=None, validate_default=True)

    @model_validator(mode="after")
    def _jwt_is_complete(self) -> Self:
        # A token checked without its issuer or audience would be accepted from anyone sharing the key.
        if (self.jwt_hs256_secret or self.jwt_jwks_url) and not (self.jwt_issuer and self.jwt_audience):
            raise ValueError("set HERALD_JWT_ISSUER and HERALD_JWT_AUDIENCE to accept JWTs")
        return self

    @field_validator("gateway_tls_key_file")
    @classmethod
    def _tls_pair_loads(cls, key_file: Path | None, info: ValidationInfo) -> Path | None:
        # Checked here, not when uvicorn starts: a bad pair stops start-up with a message naming it.
        cert_file = info.data.get("gateway_tls_cert_file")
        if (cert_file is None) != (key_file is None):
            raise ValueError("set both HERALD_GATEWAY_TLS_CERT_FILE and HERALD_GATEWAY_TLS_KEY_FILE, or neither")
        if cert_file is not None and key_file is not None:
            try:
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"cannot load certificate {cert_file} with key {key_file}: {error}") from None
        return key_file
