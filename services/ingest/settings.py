"""Ingest's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings


class IngestSettings(HeraldSettings):
    # How long an idempotency key (or notification id) is remembered; requests repeated within it are dropped.
    dedup_ttl_seconds: int = Field(default=86_400, ge=1)
    ops_port: int = 9101
