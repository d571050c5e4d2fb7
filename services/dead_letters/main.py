"""Wires the dead-letters service: DLQ topic -> DeadLetterRepository (Postgres), plus retention, the size
gauge and bulk replays."""

from __future__ import annotations

from datetime import timedelta

from services.dead_letters.maintenance import DeadLetterMaintenance
from services.dead_letters.replayer import Replayer
from services.dead_letters.settings import DeadLettersSettings
from services.dead_letters.writer import DeadLetterWriter
from shared import service
from shared.config import HeraldSettings, load_settings
from shared.crypto import Encryptor
from shared.kafka.consumer import ConsumerLoop, service_consumer
from shared.kafka.producer import MessageProducer
from shared.messages import DEAD_LETTER, DeadLetter
from shared.status_events import StatusReporter
from shared.storage.database import check, create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.replays import ReplayStore
from shared.topics import Topics

SERVICE = "dead-letters"


def dead_letter_consumer(
    settings: HeraldSettings, repository: DeadLetterRepository, producer: MessageProducer
) -> ConsumerLoop[DeadLetter]:
    """The service's consumer loop: every record of the DLQ topic into ``repository``."""
    topics = Topics(settings.topic_prefix)
    return service_consumer(
        settings,
        service=SERVICE,
        topics=[topics.dlq],
        contract=DEAD_LETTER,
        handler=DeadLetterWriter(repository, topics, SERVICE),
        producer=producer,
    )


async def serve() -> None:
    settings = load_settings(DeadLettersSettings)
    encryptor = Encryptor.from_settings(settings)
    service.setup(SERVICE, settings)
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    repository = DeadLetterRepository(pool, encryptor)
    producer = MessageProducer(settings, client_id=SERVICE)
    consumer = dead_letter_consumer(settings, repository, producer)
    topics = Topics(settings.topic_prefix)
    replayer = Replayer(repository, ReplayStore(pool), producer, topics, StatusReporter(topics.status, SERVICE))
    maintenance = DeadLetterMaintenance(
        repository,
        retention=timedelta(days=settings.dlq_retention_days),
        interval_s=settings.dlq_maintenance_interval_s,
    )
    try:
        await service.serve_consumers(
            settings,
            [consumer],
            checks={"postgres": lambda: check(pool)},
            background=[maintenance.run, replayer.run],
            producer=producer,
        )
    finally:
        await producer.stop()
        await pool.close()


def main() -> None:
    service.run(serve)
