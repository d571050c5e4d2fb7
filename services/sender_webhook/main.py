"""Wires sender-webhook: send.webhook topic -> signed POSTs -> status, delay and DLQ topics."""

from __future__ import annotations

from collections.abc import Callable

from services.sender_webhook.poster import WebhookProvider
from services.sender_webhook.settings import WebhookSenderSettings
from shared import service
from shared.config import load_settings
from shared.messages import WEBHOOK_DELIVERY, WebhookDelivery
from shared.providers.base import Provider
from shared.providers.factory import build_chain
from shared.sender_service import serve_sender
from shared.ssrf import OutboundGuard


def available_providers(settings: WebhookSenderSettings) -> dict[str, Callable[[], Provider[WebhookDelivery]]]:
    """The webhook channel's one provider: Herald's own signed HTTP POST."""
    key = settings.webhook_signing_key.get_secret_value().encode() if settings.webhook_signing_key else None
    return {
        "http": lambda: WebhookProvider(
            key,
            timeout_s=settings.webhook_timeout_s,
            concurrency=settings.webhook_concurrency,
            guard=OutboundGuard(allow_private_networks=settings.webhook_allow_private_networks),
        )
    }


async def serve() -> None:
    settings = load_settings(WebhookSenderSettings)
    await serve_sender(
        service_name="sender-webhook",
        channel="webhook",
        settings=settings,
        contract=WEBHOOK_DELIVERY,
        build_providers=lambda limiter: build_chain(
            "webhook", settings.webhook_providers, available_providers(settings), settings, limiter
        ),
        concurrency=settings.webhook_concurrency,
    )


def main() -> None:
    service.run(serve)
