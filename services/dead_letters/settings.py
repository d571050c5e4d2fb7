"""The dead-letters service's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings


class DeadLettersSettings(HeraldSettings):
    # Dead letters are deleted this many days after they were dead-lettered.
    dlq_retention_days: int = Field(default=14, ge=1)
    # How often expired dead letters are deleted and herald_dead_letters_stored is refreshed.
    dlq_maintenance_interval_s: float = Field(default=60.0, gt=0)
    ops_port: int = 9109
