"""How Herald's Kafka clients ask for metadata: never creating a topic, and often enough to see one vanish.

**No topic auto-creation.** aiokafka 0.14 sends every metadata request with ``allow_auto_topic_creation``
true and has no option to turn it off, so a producer or consumer naming a missing topic makes a broker
that allows it (Tansu always; Apache Kafka unless ``auto.create.topics.enable=false``) create it with
the broker's partition count: 4 on Tansu instead of the declared 8. After a broker lost its topics,
that quietly replaced them with the wrong ones. :func:`forbid_topic_auto_creation` makes aiokafka ask
with ``false``: only the topics job (``shared.kafka.admin``) creates topics, and a missing topic stays
missing until it runs, which the services report (``/ready``).

**Fresh metadata.** A client refreshes its metadata every :data:`METADATA_MAX_AGE_MS` instead of every
5 minutes: a broker that restarted empty answers requests for topics it no longer has as if they were
there (Tansu 0.6 acknowledges the records and fetches nothing, without an error), so only the metadata
tells a consumer its topics are gone, and stops a producer writing records no one will read.
"""

from __future__ import annotations

import aiokafka.admin.client
import aiokafka.client
from aiokafka.protocol.metadata import MetadataRequest

METADATA_MAX_AGE_MS = 5_000


class MetadataRequestWithoutAutoCreation(MetadataRequest):  # type: ignore[misc]
    """A metadata request that never asks the broker to create the topics it names."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = None) -> None:
        super().__init__(topics, allow_auto_topic_creation=False)


def forbid_topic_auto_creation() -> None:
    """Make every aiokafka client in this process ask for metadata without creating topics."""
    # The two modules that build metadata requests, each through its own imported name.
    aiokafka.client.MetadataRequest = MetadataRequestWithoutAutoCreation
    aiokafka.admin.client.MetadataRequest = MetadataRequestWithoutAutoCreation
