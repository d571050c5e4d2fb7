"""Router's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.config import CommaSeparated, HeraldSettings, ops_port_field


class RouterSettings(HeraldSettings):
    template_cache_size: int = Field(
        default=1024, ge=1, description="Compiled templates kept in memory; a template's source is the cache key."
    )
    tracking_base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$",
        description=(
            "Herald's own open and click tracking: the gateway's public URL, which tracked links and open pixels "
            "point at. With HERALD_TRACKING_SIGNING_KEY it turns tracking on; set both or neither."
        ),
    )
    tracking_signing_key: SecretStr | None = Field(
        default=None,
        min_length=32,
        description="HMAC key (32+ characters) tracking tokens are signed with; the gateway's must be the same.",
    )
    mandatory_categories: CommaSeparated = Field(
        default_factory=list,
        description=(
            "Notification categories (metadata.category) sent whatever the recipient's preferences, "
            "comma-separated: security,password_reset."
        ),
    )
    ops_port: int = ops_port_field(9102)
