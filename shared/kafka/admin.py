"""Create Herald's topics (idempotent): ``python -m shared.kafka.admin``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from pydantic import Field

from shared.config import HeraldSettings, load_settings
from shared.kafka.connection import client_options
from shared.observability.logging import configure_logging
from shared.topics import Topics

log = structlog.get_logger(__name__)

# A short fetch that only asks for high watermarks (Tansu leaves every topic out of the answer to a
# fetch that may not wait at all).
FETCH_MAX_WAIT_MS = 10
FETCH_MAX_BYTES = 64 * 1024


class AdminSettings(HeraldSettings):
    kafka_topic_partitions: int = Field(
        default=8,
        ge=1,
        description="Partitions per topic: they bound how many members of one consumer group can share the work.",
    )
    kafka_replication_factor: int = Field(
        default=1,
        ge=1,
        description=(
            "Replicas per topic. Production: 3, and min.insync.replicas=2 is then set, so acks=all survives one broker"
            " down."
        ),
    )


class StrayRecordsError(Exception):
    """The broker holds records for topics it does not have: creating those topics now would lose records."""


async def records_without_topic(settings: AdminSettings, names: Sequence[str]) -> dict[str, int]:
    """How many records the broker holds for each of ``names``, topics it does not have.

    Apache Kafka holds none: it refuses records for a missing topic. Tansu 0.6 acknowledges and keeps
    them (a producer still writing to a topic the broker lost when it restarted empty), and a topic
    created later starts at offset 0 on top of them: its first produces are refused
    (``ObjectStore(AlreadyExists)``) and a record acknowledged at an offset inside one of their batches
    is never read. A fetch from offset 0 asks, for each partition, how far the broker's log goes.
    """
    client = AIOKafkaClient(**client_options(settings))
    await client.bootstrap()
    try:
        partitions = range(settings.kafka_topic_partitions)
        wanted = [(name, [(partition, 0, 1) for partition in partitions]) for name in names]
        request = FetchRequest(FETCH_MAX_WAIT_MS, 0, FETCH_MAX_BYTES, 0, wanted)
        response = await client.send(client.get_random_node(), request)
    finally:
        await client.close()
    held = {
        # (partition, error code, high watermark, ...): Kafka answers a missing topic with an error.
        topic: sum(answer[2] for answer in answers if answer[1] == 0 and answer[2] > 0)
        for topic, answers in response.topics
    }
    return {topic: count for topic, count in held.items() if count}


async def create_topics(settings: AdminSettings) -> list[str]:
    """Create every missing topic; return the names created.

    Raises:
        StrayRecordsError: the broker holds records for a missing topic (see :func:`records_without_topic`).
    """
    topics = Topics(settings.topic_prefix)
    config = {"min.insync.replicas": "2"} if settings.kafka_replication_factor >= 3 else {}
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if missing:
            held = await records_without_topic(settings, missing)
            if held:
                raise StrayRecordsError(
                    f"the broker holds records for topics it does not have ({held}): it accepted them after "
                    "losing its topics (Tansu 0.6 with memory storage does); restart the broker, then run "
                    "the topics job again"
                )
            await admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=settings.kafka_topic_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        topic_configs=config,
                    )
                    for name in missing
                ]
            )
        return missing
    finally:
        await admin.close()


def main() -> None:
    settings = load_settings(AdminSettings)
    configure_logging("admin", settings.log_level)
    try:
        created = asyncio.run(create_topics(settings))
    except StrayRecordsError as error:
        log.error("topics_refused", reason=str(error))
        raise SystemExit(1) from None
    log.info("topics_ready", created=created)


if __name__ == "__main__":
    main()
