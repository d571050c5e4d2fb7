"""The gateway's settings (``HERALD_*``)."""

import ssl
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from services.gateway.callbacks.settings import CallbackSettings
from shared.config import CommaSeparated, RequestSigningSettings, WebhookSettings, WebPushSettings

# A per-minute limit's refill interval is 60 s / limit, in whole microseconds: at least 1.
MAX_PER_MINUTE = 60_000_000


class TenantRateLimits(BaseModel):
    """One tenant's limits (an entry of ``HERALD_RATE_LIMIT_TENANTS``); unset fields keep the defaults."""

    model_config = ConfigDict(extra="forbid")

    per_key: int | None = Field(default=None, ge=0, le=MAX_PER_MINUTE, description="Requests a minute per API key.")
    per_tenant: int | None = Field(
        default=None, ge=0, le=MAX_PER_MINUTE, description="Requests a minute for the tenant, all its keys together."
    )


class GatewaySettings(CallbackSettings, WebhookSettings, WebPushSettings, RequestSigningSettings):
    gateway_host: str = Field(default="0.0.0.0", description="Address the HTTP API listens on.")
    gateway_port: int = Field(default=8080, ge=1, le=65535, description="Port of the HTTP API.")
    dev_api_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description=(
            "The local stack's key: created at start-up as an admin key of HERALD_DEV_TENANT. Leave unset in "
            "production."
        ),
    )
    dev_tenant: str = Field(default="dev", description="The tenant of HERALD_DEV_API_KEY.")
    auth_cache_ttl_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "How long a verified API key is trusted without asking Postgres again (seconds; 0: no cache): also "
            "how long another replica may accept a revoked key."
        ),
    )
    api_key_env: str = Field(
        default="live",
        pattern=r"^[a-z0-9]{1,8}$",
        description=(
            "New API keys look like hk_<env>_<random> (hk_live_…; 1 to 8 lower-case letters or digits): tells a "
            "test key from a production one at a glance."
        ),
    )
    jwt_issuer: str | None = Field(
        default=None,
        description=(
            "The iss every JWT must carry. JWTs are off unless HERALD_JWT_HS256_SECRET or HERALD_JWT_JWKS_URL is "
            "set, and then the issuer and audience are required."
        ),
    )
    jwt_audience: str | None = Field(default=None, description="The aud every JWT must carry.")
    jwt_hs256_secret: SecretStr | None = Field(
        default=None, min_length=32, description="Accept HS256 JWTs signed with this secret (at least 32 characters)."
    )
    jwt_jwks_url: str | None = Field(
        default=None, description="Accept RS256 JWTs signed by a key of this JWKS (the identity provider's keys)."
    )
    jwt_tenant_claim: str = Field(
        default="tenant", description='The claim naming a JWT\'s tenant; its roles come from "role" or "roles".'
    )
    jwt_leeway_s: float = Field(
        default=30.0, ge=0, le=300, description="Clock skew tolerated on exp, nbf and iat (seconds)."
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Larger request bodies get 413.")
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        le=1_048_576,
        description="The request line and headers, in bytes, before any route runs; more is a 431 problem.",
    )
    max_headers: int = Field(
        default=100, ge=10, le=1000, description="Headers a request may have; more is a 431 problem."
    )
    request_header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="A request's headers must arrive within this (seconds), else 408."
    )
    request_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A request's body must arrive within this of its headers (seconds), else the connection closes.",
    )
    bulk_max_items: int = Field(
        default=1000, ge=1, le=10_000, description="POST /api/v1/notifications/bulk: notifications per request."
    )
    bulk_max_body_bytes: int = Field(
        default=16 * 1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description=(
            "POST /api/v1/notifications/bulk's own, larger body limit; every other route keeps HERALD_MAX_BODY_BYTES."
        ),
    )
    tracking_signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description=(
            "Verifies the router's open and click tracking tokens (the router's HERALD_TRACKING_SIGNING_KEY); "
            "unset: the tracking routes answer 404."
        ),
    )
    webhook_secret_grace_s: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description=(
            "After a webhook endpoint's secret is rotated, its deliveries are signed with the previous secret too "
            "for this long (seconds), so its receiver can switch without missing a message."
        ),
    )
    idempotency_ttl_s: int = Field(
        default=86_400,
        ge=1,
        description="How long an Idempotency-Key and the first answer to it are kept (seconds; the draft's 24 h).",
    )
    idempotency_lock_ttl_s: int = Field(
        default=60,
        ge=1,
        description=(
            "How long a key stays claimed by a request still being answered (409 meanwhile); bounds the 409s "
            "after a crash."
        ),
    )
    rate_limit_per_key: int = Field(
        default=100,
        ge=0,
        le=MAX_PER_MINUTE,
        description=(
            "Requests a minute on the authenticated API per API key (0: no limit); services.gateway.http.ratelimit."
        ),
    )
    rate_limit_per_tenant: int = Field(
        default=100,
        ge=0,
        le=MAX_PER_MINUTE,
        description="Requests a minute per tenant, all its keys together (0: no limit).",
    )
    rate_limit_global: int = Field(
        default=0,
        ge=0,
        le=MAX_PER_MINUTE,
        description=(
            "Requests a minute for the whole gateway, every replica (0: no limit; set it to what the deployment can "
            "take)."
        ),
    )
    rate_limit_tenants: dict[str, TenantRateLimits] = Field(
        default_factory=dict,
        description=(
            'A tenant\'s own limits, JSON: {"acme": {"per_key": 600, "per_tenant": 1200}}; unset fields keep the '
            "defaults."
        ),
    )
    cors_origins: CommaSeparated = Field(
        default_factory=list,
        description=(
            "Browser origins allowed to call the API, comma-separated (https://app.example.com,...); empty: no CORS "
            "headers."
        ),
    )
    gateway_tls_cert_file: Path | None = Field(
        default=None,
        description=(
            "Serve HTTPS only, with this PEM certificate (chain included) and HERALD_GATEWAY_TLS_KEY_FILE; both or "
            "neither (plain HTTP). Loaded at start-up; a new certificate needs a restart."
        ),
    )
    gateway_tls_key_file: Path | None = Field(
        default=None, validate_default=True, description="The PEM private key of HERALD_GATEWAY_TLS_CERT_FILE."
    )

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
