"""Ingest's settings (``HERALD_*``)."""

from typing import Annotated

from pydantic import Field

from shared.config import RequestSigningSettings, ops_port_field
from shared.requests import MAX_DEDUP_WINDOW_S, MIN_DEDUP_WINDOW_S


class IngestSettings(RequestSigningSettings):
    dedup_ttl_seconds: int = Field(
        default=86_400,
        ge=1,
        description=(
            "The default dedup window: how long an idempotency key (or notification id) is remembered; requests "
            "repeated within it are dropped."
        ),
    )
    dedup_windows: dict[str, Annotated[int, Field(ge=MIN_DEDUP_WINDOW_S, le=MAX_DEDUP_WINDOW_S)]] = Field(
        default_factory=dict,
        description=(
            'The dedup window per message type (a request\'s metadata "type"), JSON: {"otp": 300, "marketing": '
            "86400}, 1 to 604800 s each; other types get HERALD_DEDUP_TTL_SECONDS, and a request's own "
            "dedup.window_s wins over both."
        ),
    )
    producer_keys_cache_s: float = Field(
        default=30.0,
        ge=0,
        description="How long ingest trusts its answer to whether a producer key is live: a revoked key is refused "
        "within this long.",
    )
    ops_port: int = ops_port_field(9101)
