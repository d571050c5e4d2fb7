"""The dead-letters service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings, ops_port_field


class DeadLettersSettings(HeraldSettings):
    dlq_retention_days: int = Field(
        default=14, ge=1, description="Dead letters are deleted this many days after they were dead-lettered."
    )
    dlq_maintenance_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often expired dead letters are deleted and herald_dead_letters_stored is refreshed.",
    )
    ops_port: int = ops_port_field(9109)
