"""Wires sender-sms: send.sms topic -> the SMS provider chain -> status, delay and DLQ topics."""

from __future__ import annotations

from collections.abc import Callable

from services.sender_sms.settings import SmsSenderSettings
from shared import service
from shared.config import load_settings, reveal
from shared.messages import SMS_DELIVERY, SmsDelivery
from shared.providers.base import Provider
from shared.providers.factory import build_chain
from shared.sender_service import serve_sender


def available_providers(settings: SmsSenderSettings) -> dict[str, Callable[[], Provider[SmsDelivery]]]:
    """Every SMS provider Herald knows, built from settings only when configured to be used. A provider's
    module, and its SDK (twilio, boto3), is imported only then: the others' import time stays out of start-up."""
    return {"twilio": lambda: _twilio(settings), "sns": lambda: _sns(settings)}


def _twilio(settings: SmsSenderSettings) -> Provider[SmsDelivery]:
    from services.sender_sms.twilio_sms import TwilioConfig, TwilioSmsProvider

    return TwilioSmsProvider(
        TwilioConfig(
            account_sid=settings.twilio_account_sid or "",
            auth_token=reveal(settings.twilio_auth_token),
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            status_callback_url=settings.twilio_status_callback_url,
            base_url=settings.twilio_base_url,
            timeout_s=settings.provider_timeout_s,
        )
    )


def _sns(settings: SmsSenderSettings) -> Provider[SmsDelivery]:
    from services.sender_sms.sns import SnsConfig, SnsSmsProvider

    return SnsSmsProvider(
        SnsConfig(
            region=settings.sns_region,
            endpoint_url=settings.sns_endpoint_url,
            sender_id=settings.sns_sender_id,
            timeout_s=settings.provider_timeout_s,
        )
    )


async def serve() -> None:
    settings = load_settings(SmsSenderSettings)
    await serve_sender(
        service_name="sender-sms",
        channel="sms",
        settings=settings,
        contract=SMS_DELIVERY,
        build_providers=lambda limiter: build_chain(
            "sms", settings.sms_providers, available_providers(settings), settings, limiter
        ),
        concurrency=settings.sms_concurrency,
    )


def main() -> None:
    service.run(serve)
