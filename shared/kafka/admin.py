"""Create Herald's topics (idempotent): ``python -m shared.kafka.admin``."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import Field

from shared.config import HeraldSettings, load_settings
from shared.observability.logging import configure_logging
from shared.topics import Topics

log = structlog.get_logger(__name__)


class AdminSettings(HeraldSettings):
    # Partitions bound how many members of one consumer group can share the work.
    kafka_topic_partitions: int = Field(default=8, ge=1)
    # Production: 3, with min.insync.replicas=2 so acks=all survives one broker down.
    kafka_replication_factor: int = Field(default=1, ge=1)


async def create_topics(settings: AdminSettings) -> list[str]:
    """Create every missing topic; return the names created."""
    topics = Topics(settings.topic_prefix)
    config = {"min.insync.replicas": "2"} if settings.kafka_replication_factor >= 3 else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.all() if name not in existing]
        if missing:
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
    created = asyncio.run(create_topics(settings))
    log.info("topics_ready", created=created)


if __name__ == "__main__":
    main()
