"""Wires sender-email: send.email topic -> DeliveryHandler(email provider chain) -> status, delay, DLQ."""

from __future__ import annotations

from services.sender_email.settings import EmailSenderSettings
from services.sender_email.smtp import SmtpProvider
from shared import service
from shared.config import load_settings, refuse_configuration
from shared.delivery import RetryPolicy
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.messages import EMAIL_DELIVERY, EmailDelivery
from shared.providers.base import ProviderConfigError
from shared.providers.factory import build_chain
from shared.providers.health import ProviderHealth
from shared.providers.ratelimit import SendRateLimiter
from shared.redis import create_redis, key
from shared.sender import DeliveryHandler, DeliveryLedger
from shared.status_events import StatusReporter
from shared.topics import Topics

SERVICE = "sender-email"
CHANNEL = "email"


async def serve() -> None:
    settings = load_settings(EmailSenderSettings)
    service.setup(SERVICE, settings)
    topics = Topics(settings.topic_prefix)
    redis = create_redis(settings)
    smtp = SmtpProvider(settings)
    try:
        chain = build_chain(
            CHANNEL,
            settings.email_providers,
            {"smtp": lambda: smtp},
            settings,
            SendRateLimiter(redis, key(settings, "ratelimit")),
        )
    except ProviderConfigError as error:
        refuse_configuration(f"invalid configuration:\n  {error}")
    health = ProviderHealth(chain.providers, settings.provider_health_interval_s)
    producer = MessageProducer(settings, client_id=SERVICE)
    handler: DeliveryHandler[EmailDelivery] = DeliveryHandler(
        channel=CHANNEL,
        provider=chain,
        contract=EMAIL_DELIVERY,
        ledger=DeliveryLedger(redis, key(settings, "delivered", CHANNEL)),
        reporter=StatusReporter(topics.status, SERVICE),
        policy=RetryPolicy(settings.max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s),
        send_topic=topics.send(CHANNEL),
        delay_topic=topics.delay,
        concurrency=settings.smtp_pool_size,
    )
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topic=topics.send(CHANNEL),
        contract=EMAIL_DELIVERY,
        handler=handler,
        producer=producer,
    )
    await producer.start()
    try:
        await service.serve_consumers(
            settings,
            [consumer],
            checks={"kafka": producer.check, "redis": redis.ping, "providers": health.ready},
            background=[health.run],
        )
    finally:
        await producer.stop()
        smtp.close()
        await redis.aclose()


def main() -> None:
    service.run(serve)
