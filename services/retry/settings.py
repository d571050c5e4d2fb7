"""The retry service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import RequestSigningSettings, ops_port_field


class RetrySettings(RequestSigningSettings):
    fire_batch_size: int = Field(default=500, ge=1, description="Delayed jobs fired per database transaction.")
    max_idle_s: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Longest sleep between looks at the store: bounds how late a job scheduled by another replica fires "
            "(a scheduled notification goes out within about this of its time)."
        ),
    )
    ops_port: int = ops_port_field(9104)
