"""Wires sender-email: send.email topic -> the email provider chain -> status, delay and DLQ topics."""

from __future__ import annotations

from collections.abc import Callable

from services.sender_email.attachments import AttachmentFetcher, WithAttachments
from services.sender_email.settings import EmailSenderSettings
from services.sender_email.smtp import SmtpProvider
from shared import service
from shared.config import load_settings
from shared.messages import EMAIL_DELIVERY, EmailDelivery
from shared.providers.base import Provider
from shared.providers.factory import build_chain
from shared.sender_service import serve_sender
from shared.ssrf import OutboundGuard


def available_providers(settings: EmailSenderSettings) -> dict[str, Callable[[], Provider[EmailDelivery]]]:
    """Every email provider Herald knows; each is built only when HERALD_EMAIL_PROVIDERS lists it. SendGrid's
    and SES's modules, and their SDKs (boto3), are imported only then: their import time stays out of start-up."""
    return {
        "smtp": lambda: SmtpProvider(settings),
        "sendgrid": lambda: _sendgrid(settings),
        "ses": lambda: _ses(settings),
    }


def _sendgrid(settings: EmailSenderSettings) -> Provider[EmailDelivery]:
    from services.sender_email.sendgrid import SendGridConfig, SendGridProvider

    return SendGridProvider(
        SendGridConfig(
            api_key=settings.sendgrid_api_key.get_secret_value() if settings.sendgrid_api_key else "",
            from_address=settings.sendgrid_from,
            base_url=settings.sendgrid_base_url,
            timeout_s=settings.sendgrid_timeout_s,
            max_concurrency=settings.sendgrid_max_concurrency,
            open_tracking=settings.sendgrid_open_tracking,
            click_tracking=settings.sendgrid_click_tracking,
        )
    )


def _ses(settings: EmailSenderSettings) -> Provider[EmailDelivery]:
    from services.sender_email.ses import SesConfig, SesProvider

    return SesProvider(
        SesConfig(
            region=settings.ses_region,
            sender=settings.ses_from,
            access_key_id=settings.ses_access_key_id,
            secret_access_key=settings.ses_secret_access_key,
            endpoint_url=settings.ses_endpoint_url,
            configuration_set=settings.ses_configuration_set,
            timeout_s=settings.ses_timeout_s,
            max_concurrency=settings.ses_max_concurrency,
        )
    )


async def serve() -> None:
    settings = load_settings(EmailSenderSettings)
    await serve_sender(
        service_name="sender-email",
        channel="email",
        settings=settings,
        contract=EMAIL_DELIVERY,
        # URL attachments are fetched once per attempt, before the chain (and its failover) sees the mail.
        build_providers=lambda limiter: WithAttachments(
            build_chain("email", settings.email_providers, available_providers(settings), settings, limiter),
            AttachmentFetcher(
                max_bytes=settings.attachment_max_bytes,
                timeout_s=settings.attachment_fetch_timeout_s,
                guard=OutboundGuard(allow_private_networks=settings.attachment_allow_private_networks),
            ),
        ),
        concurrency=settings.smtp_pool_size,
    )


def main() -> None:
    service.run(serve)
