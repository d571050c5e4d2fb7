"""Wires ingest: requests topic -> IngestHandler -> routable and status topics."""

from __future__ import annotations

from datetime import timedelta

from services.ingest.dedup import DedupPolicy, IdempotencyGuard
from services.ingest.handlers import IngestHandler
from services.ingest.scheduling import RequestScheduler
from services.ingest.settings import IngestSettings
from shared import service
from shared.config import load_settings
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.messages import NOTIFICATION_REQUEST
from shared.redis import create_redis, key, require_supported_version
from shared.status_events import StatusReporter
from shared.topics import Topics

SERVICE = "ingest"


async def serve() -> None:
    settings = load_settings(IngestSettings)
    service.setup(SERVICE, settings)
    await require_supported_version(settings)
    topics = Topics(settings.topic_prefix)
    redis = create_redis(settings)
    producer = MessageProducer(settings, client_id=SERVICE)
    reporter = StatusReporter(topics.status, SERVICE)
    handler = IngestHandler(
        guard=IdempotencyGuard(redis),
        dedup=DedupPolicy(settings.dedup_ttl_seconds, settings.dedup_windows),
        reporter=reporter,
        routable_topic=topics.routable,
        key_prefix=key(settings, "idempotency"),
        scheduler=RequestScheduler(topics.delay, topics.requests),
        min_recurrence_interval=timedelta(seconds=settings.recurrence_min_interval_s),
    )
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topic=topics.requests,
        contract=NOTIFICATION_REQUEST,
        handler=handler,
        producer=producer,
        on_reject=reporter.failed,
    )
    try:
        await service.serve_consumers(settings, [consumer], checks={"redis": redis.ping}, producer=producer)
    finally:
        await producer.stop()
        await redis.aclose()


def main() -> None:
    service.run(serve)
