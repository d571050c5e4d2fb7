"""sender-webhook's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import WebhookSettings
from shared.sender_settings import ProviderNames, SenderSettings


class WebhookSenderSettings(SenderSettings, WebhookSettings):
    webhook_providers: ProviderNames = Field(default_factory=lambda: ["http"])
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_concurrency: int = Field(default=32, ge=1)
    ops_port: int = 9107
