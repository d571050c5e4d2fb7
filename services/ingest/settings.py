"""Ingest's settings (``HERALD_*``)."""

from typing import Annotated

from pydantic import Field

from shared.config import HeraldSettings
from shared.requests import MAX_DEDUP_WINDOW_S, MIN_DEDUP_WINDOW_S


class IngestSettings(HeraldSettings):
    # How long an idempotency key (or notification id) is remembered; requests repeated within it are dropped.
    dedup_ttl_seconds: int = Field(default=86_400, ge=1)
    # The dedup window per message type (a request's metadata "type"), JSON: {"otp": 300, "marketing": 86400};
    # other types get dedup_ttl_seconds, and a request's own dedup.window_s wins over both.
    dedup_windows: dict[str, Annotated[int, Field(ge=MIN_DEDUP_WINDOW_S, le=MAX_DEDUP_WINDOW_S)]] = Field(
        default_factory=dict
    )
    ops_port: int = 9101
