"""Router's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import HeraldSettings


class RouterSettings(HeraldSettings):
    # Compiled templates kept in memory; a request's template source is the cache key.
    template_cache_size: int = Field(default=1024, ge=1)
    ops_port: int = 9102
