"""Running one channel's sender: the same wiring for email, SMS, push and webhooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from shared import service
from shared.codec import Contract
from shared.config import refuse_configuration
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.observability.ops import Check
from shared.providers.base import ProviderConfigError, ProviderSet
from shared.providers.health import ProviderHealth
from shared.providers.ratelimit import SendRateLimiter
from shared.redis import create_redis, key, require_supported_version
from shared.sender import DeliveryHandler, DeliveryLedger
from shared.sender_settings import SenderSettings
from shared.status_events import StatusReporter
from shared.topics import Topics

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any])


async def serve_sender(
    *,
    service_name: str,
    channel: str,
    settings: SenderSettings,
    contract: Contract[DeliveryT],
    build_providers: Callable[[SendRateLimiter], ProviderSet[DeliveryT]],
    concurrency: int,
    checks: Mapping[str, Check] | None = None,
) -> None:
    """Consume ``send.<channel>`` and deliver through the configured providers until SIGTERM.

    ``build_providers`` makes them (usually :func:`build_chain`) with the rate limiter every replica
    shares; ``checks`` are readiness checks beyond Kafka, Redis and the providers.
    """
    service.setup(service_name, settings)
    await require_supported_version(settings)
    topics = Topics(settings.topic_prefix)
    redis = create_redis(settings)
    try:
        chain = build_providers(SendRateLimiter(redis, key(settings, "ratelimit")))
    except ProviderConfigError as error:
        refuse_configuration(f"invalid configuration:\n  {error}")
    health = ProviderHealth(chain.providers, settings.provider_health_interval_s)
    producer = MessageProducer(settings, client_id=service_name)
    handler: DeliveryHandler[DeliveryT] = DeliveryHandler(
        channel=channel,
        provider=chain,
        contract=contract,
        ledger=DeliveryLedger(redis, key(settings, "delivered", channel)),
        reporter=StatusReporter(topics.status, service_name),
        policies=settings.policies(),
        delay_topic=topics.delay,
        concurrency=concurrency,
    )
    consumer = service_consumer(
        settings,
        service=service_name,
        topics=topics.lanes(f"send.{channel}"),
        contract=contract,
        handler=handler,
        producer=producer,
        on_reject=handler.rejected,
    )
    try:
        await service.serve_consumers(
            settings,
            [consumer],
            checks={"redis": redis.ping, **(checks or {})},
            # Down providers are the breakers' and the delay path's to handle: an unready sender would
            # only stall rollouts and node drains under its PodDisruptionBudget.
            reported={"providers": health.ready},
            background=[health.run],
            producer=producer,
        )
    finally:
        await producer.stop()
        await chain.close()
        await redis.aclose()
