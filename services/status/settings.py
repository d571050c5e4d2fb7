"""The status service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings


class StatusSettings(HeraldSettings):
    # Status events written per transaction; larger batches mean fewer, bigger writes.
    max_batch: int = Field(default=2000, ge=1)
    ops_port: int = 9105
