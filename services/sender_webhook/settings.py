"""sender-webhook's settings (``HERALD_*``)."""

from pydantic import Field

from shared.config import WebhookSettings, ops_port_field
from shared.sender_settings import ProviderNames, SenderSettings


class WebhookSenderSettings(SenderSettings, WebhookSettings):
    webhook_providers: ProviderNames = Field(
        default_factory=lambda: ["http"],
        description="The webhook providers in order of preference, comma-separated (http: signed POSTs).",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Bound on each POST (seconds).")
    webhook_concurrency: int = Field(default=32, ge=1, description="POSTs in flight at once.")
    ops_port: int = ops_port_field(9107)
