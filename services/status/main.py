"""Wires the status service: status topic -> StatusRepository (Postgres), a batch per transaction."""

from __future__ import annotations

from collections.abc import Sequence

from services.status.repository import StatusRepository
from services.status.settings import StatusSettings
from shared import service, status
from shared.config import load_settings
from shared.errors import DeadLetterReason
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Consumed, Output, Reject
from shared.messages import STATUS_EVENT, StatusEvent
from shared.observability import metrics
from shared.storage.database import check, create_pool
from shared.topics import Topics

SERVICE = "status"


class StatusWriter:
    """The consumer loop's handler: one transaction per batch of status events."""

    def __init__(self, repository: StatusRepository) -> None:
        self._repository = repository

    async def __call__(self, batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        known = [message for message in batch if message.value["status"] in status.RANKS]
        duplicates = [message.value for message in batch if message.value["status"] == status.DUPLICATE]
        await self._repository.apply([message.value for message in known])
        await self._repository.record_duplicates(duplicates)
        metrics.STATUS_EVENTS_STORED.inc(len(known) + len(duplicates))
        return [
            Reject(message, DeadLetterReason.INVALID_PAYLOAD, f"unknown status {message.value['status']!r}")
            for message in batch
            if message.value["status"] not in status.RANKS and message.value["status"] != status.DUPLICATE
        ]


async def serve() -> None:
    settings = load_settings(StatusSettings)
    service.setup(SERVICE, settings)
    topics = Topics(settings.topic_prefix)
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    producer = MessageProducer(settings, client_id=SERVICE)
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topic=topics.status,
        contract=STATUS_EVENT,
        handler=StatusWriter(StatusRepository(pool)),
        producer=producer,
        max_batch=settings.max_batch,
    )
    await producer.start()
    try:
        await service.serve_consumers(
            settings, [consumer], checks={"kafka": producer.check, "postgres": lambda: check(pool)}
        )
    finally:
        await producer.stop()
        await pool.close()


def main() -> None:
    service.run(serve)
