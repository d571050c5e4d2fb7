"""The retry service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings


class RetrySettings(HeraldSettings):
    # Jobs fired per database transaction.
    fire_batch_size: int = Field(default=500, ge=1)
    # Longest sleep between looks at the store: bounds how late a job scheduled by another replica fires.
    max_idle_s: float = Field(default=0.5, gt=0)
    ops_port: int = 9104
