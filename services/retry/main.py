"""Wires the retry service: delay topic -> DelayedJobStore (Postgres) -> target topics when due."""

from __future__ import annotations

from services.retry.scheduler import DelayedJobIntake, DelayedJobScheduler
from services.retry.settings import RetrySettings
from shared import service
from shared.config import load_settings
from shared.crypto import Encryptor
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.messages import DELAYED_MESSAGE
from shared.storage.database import check, create_pool
from shared.storage.delayed_jobs import DelayedJobStore
from shared.topics import Topics

SERVICE = "retry"


async def serve() -> None:
    settings = load_settings(RetrySettings)
    encryptor = Encryptor.from_settings(settings)
    service.setup(SERVICE, settings)
    topics = Topics(settings.topic_prefix)
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    producer = MessageProducer(settings, client_id=SERVICE)
    store = DelayedJobStore(pool, encryptor)
    settings.check_request_signing()
    scheduler = DelayedJobScheduler(
        store, producer, settings.fire_batch_size, settings.max_idle_s, settings.request_signing_key()
    )
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topics=[topics.delay],
        contract=DELAYED_MESSAGE,
        handler=DelayedJobIntake(store),
        producer=producer,
    )
    try:
        await service.serve_consumers(
            settings,
            [consumer],
            checks={"postgres": lambda: check(pool)},
            background=[scheduler.run],
            producer=producer,
        )
    finally:
        await producer.stop()
        await pool.close()


def main() -> None:
    service.run(serve)
