"""The status service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings, ops_port_field


class StatusSettings(HeraldSettings):
    max_batch: int = Field(
        default=2000,
        ge=1,
        description="Status events written per transaction; larger batches mean fewer, bigger writes.",
    )
    webhook_endpoints_cache_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a tenant's list of webhook endpoints is reused before Postgres is asked again: a new or "
            "changed endpoint gets events within this many seconds."
        ),
    )
    ops_port: int = ops_port_field(9105)
