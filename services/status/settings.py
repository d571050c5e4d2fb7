"""The status service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings


class StatusSettings(HeraldSettings):
    # Status events written per transaction; larger batches mean fewer, bigger writes.
    max_batch: int = Field(default=2000, ge=1)
    # How long a tenant's webhook endpoints are reused before Postgres is asked again: a new endpoint
    # gets events from at most this many seconds after it was registered.
    webhook_endpoints_cache_s: float = Field(default=5.0, ge=0)
    ops_port: int = 9105
