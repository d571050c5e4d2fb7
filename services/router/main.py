"""Wires the router: routable topic -> RouterHandler (push devices from Postgres) -> send.<channel>, status."""

from __future__ import annotations

from services.router import tracking
from services.router.handlers import RouterHandler, with_batch_lookups
from services.router.settings import RouterSettings
from shared import service
from shared.config import load_settings
from shared.crypto import Encryptor
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.messages import ROUTABLE_NOTIFICATION
from shared.status_events import StatusReporter
from shared.storage.database import check, create_pool
from shared.storage.devices import DeviceRepository
from shared.storage.recipients import RecipientRepository
from shared.storage.suppressions import SuppressionRepository
from shared.storage.templates import TemplateRepository
from shared.templates import TemplateRenderer
from shared.topics import Topics

SERVICE = "router"


async def serve() -> None:
    settings = load_settings(RouterSettings)
    email_tracking = tracking.from_settings(settings)
    encryptor = Encryptor.from_settings(settings)
    service.setup(SERVICE, settings)
    topics = Topics(settings.topic_prefix)
    # Postgres holds the push devices a push notification fans out to, the suppressed addresses, and the
    # recipients' stored contact details and preferences, and the stored templates.
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    producer = MessageProducer(settings, client_id=SERVICE)
    reporter = StatusReporter(topics.status, SERVICE)
    handler = RouterHandler(
        renderer=TemplateRenderer(settings.template_cache_size),
        reporter=reporter,
        topics=topics,
        tracking=email_tracking,
        mandatory_categories=settings.mandatory_categories,
    )
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topics=topics.lanes("routable"),
        contract=ROUTABLE_NOTIFICATION,
        handler=with_batch_lookups(
            handler,
            DeviceRepository(pool, encryptor),
            SuppressionRepository(pool, encryptor),
            RecipientRepository(pool, encryptor),
            TemplateRepository(pool),
        ),
        producer=producer,
        on_reject=reporter.failed,
    )
    try:
        await service.serve_consumers(settings, [consumer], checks={"postgres": lambda: check(pool)}, producer=producer)
    finally:
        await producer.stop()
        await pool.close()


def main() -> None:
    service.run(serve)
