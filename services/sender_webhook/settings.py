"""sender-webhook's settings (``HERALD_*``)."""

from pydantic import Field, SecretStr

from shared.sender_settings import ProviderNames, SenderSettings


class WebhookSenderSettings(SenderSettings):
    webhook_providers: ProviderNames = Field(default_factory=lambda: ["http"])
    # Every tenant's signing secret is derived from this key (keep it secret; rotate by re-keying).
    webhook_signing_key: SecretStr | None = Field(default=None, min_length=32)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=32, ge=1)
    # Refuse URLs that resolve to loopback or private addresses (SSRF); only tests and local stacks allow them.
    webhook_allow_private_networks: bool = False
    ops_port: int = 9107
