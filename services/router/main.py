"""Wires the router: routable topic -> RouterHandler -> send.<channel> and status topics."""

from __future__ import annotations

from services.router.handlers import RouterHandler
from services.router.settings import RouterSettings
from services.router.templates import TemplateRenderer
from shared import service
from shared.config import load_settings
from shared.kafka.consumer import service_consumer
from shared.kafka.handlers import for_each
from shared.kafka.producer import MessageProducer
from shared.messages import ROUTABLE_NOTIFICATION
from shared.status_events import StatusReporter
from shared.topics import Topics

SERVICE = "router"


async def serve() -> None:
    settings = load_settings(RouterSettings)
    service.setup(SERVICE, settings)
    topics = Topics(settings.topic_prefix)
    producer = MessageProducer(settings, client_id=SERVICE)
    handler = RouterHandler(
        renderer=TemplateRenderer(settings.template_cache_size),
        reporter=StatusReporter(topics.status, SERVICE),
        topics=topics,
    )
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topic=topics.routable,
        contract=ROUTABLE_NOTIFICATION,
        handler=for_each(handler),
        producer=producer,
    )
    await producer.start()
    try:
        await service.serve_consumers(settings, [consumer], checks={"kafka": producer.check})
    finally:
        await producer.stop()


def main() -> None:
    service.run(serve)
