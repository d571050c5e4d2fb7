"""Router's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import CommaSeparated, HeraldSettings


class RouterSettings(HeraldSettings):
    # Compiled templates kept in memory; a request's template source is the cache key.
    template_cache_size: int = Field(default=1024, ge=1)
    # Herald's own open and click tracking: the gateway's public URL, which tracked links and pixels
    # point at, and the key their tokens are signed with (the gateway's too). Both, or neither (off).
    tracking_base_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    tracking_signing_key: SecretStr | None = Field(default=None, min_length=32)
    # Categories (metadata.category) sent whatever the recipient's preferences: password resets, security alerts.
    mandatory_categories: CommaSeparated = Field(default_factory=list)
    ops_port: int = 9102
