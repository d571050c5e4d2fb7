"""Wires sender-push: send.push topic -> the platform's provider chain -> status, delay and DLQ topics."""

from __future__ import annotations

from collections.abc import Callable

from services.sender_push.apns import ApnsConfig, ApnsProvider
from services.sender_push.fcm import FcmConfig, FcmProvider
from services.sender_push.platforms import PlatformChains
from services.sender_push.settings import PushSenderSettings
from services.sender_push.webpush import WebPushConfig, WebPushProvider
from shared import service
from shared.config import load_settings, reveal
from shared.crypto import Encryptor
from shared.messages import PUSH_DELIVERY, PushDelivery
from shared.providers.base import Provider
from shared.providers.factory import build_chains
from shared.providers.ratelimit import SendRateLimiter
from shared.sender_service import serve_sender
from shared.ssrf import OutboundGuard
from shared.storage.database import check, create_pool
from shared.storage.devices import DeviceRepository


def available_providers(settings: PushSenderSettings) -> dict[str, Callable[[], Provider[PushDelivery]]]:
    """Every push provider Herald knows; each is built only when a platform's list names it."""
    apns_key = reveal(settings.apns_key)
    return {
        "fcm": lambda: FcmProvider(
            FcmConfig(
                credentials=reveal(settings.fcm_credentials),
                project_id=settings.fcm_project_id,
                base_url=settings.fcm_base_url,
                timeout_s=settings.provider_timeout_s,
                max_concurrency=settings.fcm_max_concurrency,
            )
        ),
        "apns": lambda: ApnsProvider(
            ApnsConfig(
                key_id=settings.apns_key_id,
                team_id=settings.apns_team_id,
                topic=settings.apns_topic,
                # PEM text, or the path of the .p8 file.
                key_pem=apns_key if "-----BEGIN" in apns_key else None,
                key_path=apns_key if apns_key and "-----BEGIN" not in apns_key else None,
                use_sandbox=settings.apns_use_sandbox,
                host=settings.apns_host,
                port=settings.apns_port,
                ca_file=settings.apns_ca_file,
                timeout_s=settings.provider_timeout_s,
                max_connections=settings.apns_max_connections,
            )
        ),
        "webpush": lambda: WebPushProvider(
            WebPushConfig(
                vapid_private_key=reveal(settings.webpush_vapid_private_key),
                vapid_subject=settings.webpush_subject,
                timeout_s=settings.provider_timeout_s,
                max_connections=settings.webpush_max_connections,
                guard=OutboundGuard(allow_private_networks=settings.webpush_allow_private_networks),
            )
        ),
    }


def platform_chains(
    settings: PushSenderSettings, devices: DeviceRepository, limiter: SendRateLimiter | None
) -> PlatformChains:
    """One chain per platform from ``HERALD_PUSH_<PLATFORM>_PROVIDERS``, sharing providers and breakers."""
    chains = build_chains(
        {
            "HERALD_PUSH_ANDROID_PROVIDERS": settings.push_android_providers,
            "HERALD_PUSH_IOS_PROVIDERS": settings.push_ios_providers,
            "HERALD_PUSH_WEB_PROVIDERS": settings.push_web_providers,
        },
        available_providers(settings),
        settings,
        limiter,
    )
    return PlatformChains(
        {
            "android": chains["HERALD_PUSH_ANDROID_PROVIDERS"],
            "ios": chains["HERALD_PUSH_IOS_PROVIDERS"],
            "web": chains["HERALD_PUSH_WEB_PROVIDERS"],
        },
        devices,
    )


async def serve() -> None:
    settings = load_settings(PushSenderSettings)
    encryptor = Encryptor.from_settings(settings)
    # Postgres holds the device registry, where dead tokens are disabled.
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    try:
        await serve_sender(
            service_name="sender-push",
            channel="push",
            settings=settings,
            contract=PUSH_DELIVERY,
            build_providers=lambda limiter: platform_chains(settings, DeviceRepository(pool, encryptor), limiter),
            concurrency=settings.push_concurrency,
            checks={"postgres": lambda: check(pool)},
        )
    finally:
        await pool.close()


def main() -> None:
    service.run(serve)
