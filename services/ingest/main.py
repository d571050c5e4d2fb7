"""Wires ingest: requests topic -> SignedRequests (producer keys in Postgres) -> IngestHandler -> routable and
status topics."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from services.ingest.dedup import DedupPolicy, IdempotencyGuard
from services.ingest.handlers import IngestHandler
from services.ingest.producer_auth import SignedRequests
from services.ingest.scheduling import RequestScheduler
from services.ingest.settings import IngestSettings
from shared import service
from shared.config import load_settings
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Handler
from shared.messages import NOTIFICATION_REQUEST, NotificationRequest
from shared.observability.ops import Check
from shared.redis import create_redis, key, require_supported_version
from shared.status_events import StatusReporter
from shared.storage.database import check, create_pool
from shared.storage.producer_keys import LiveProducerKeys, ProducerKeyRepository
from shared.topics import Topics

SERVICE = "ingest"
PRODUCER_KEYS_POOL_SIZE = 2


async def serve() -> None:
    settings = load_settings(IngestSettings)
    service.setup(SERVICE, settings)
    await require_supported_version(settings)
    settings.check_request_signing()
    signing_key = settings.request_signing_key()
    topics = Topics(settings.topic_prefix)
    redis = create_redis(settings)
    producer = MessageProducer(settings, client_id=SERVICE)
    reporter = StatusReporter(topics.status, SERVICE)
    handler = IngestHandler(
        guard=IdempotencyGuard(redis),
        dedup=DedupPolicy(settings.dedup_ttl_seconds, settings.dedup_windows),
        reporter=reporter,
        topics=topics,
        key_prefix=key(settings, "idempotency"),
        scheduler=RequestScheduler(topics),
        min_recurrence_interval=timedelta(seconds=settings.recurrence_min_interval_s),
    )
    checks: dict[str, Check] = {"redis": redis.ping}
    pool = None
    verified: Handler[NotificationRequest] = handler
    if settings.require_signed_requests and signing_key is not None:
        # Postgres says which producer keys are live (revoked ones are refused): a lookup per new key and
        # cache period, so two connections do.
        pool = await create_pool(settings.database_url, min(settings.database_pool_size, PRODUCER_KEYS_POOL_SIZE))
        live = LiveProducerKeys(ProducerKeyRepository(pool), settings.producer_keys_cache_s)
        verified = SignedRequests(signing_key, live, handler)
        checks["postgres"] = partial(check, pool)
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topics=topics.lanes("requests"),
        contract=NOTIFICATION_REQUEST,
        handler=verified,
        producer=producer,
        on_reject=reporter.failed,
    )
    try:
        await service.serve_consumers(settings, [consumer], checks=checks, producer=producer)
    finally:
        await producer.stop()
        await redis.aclose()
        if pool is not None:
            await pool.close()


def main() -> None:
    service.run(serve)
