"""Where Tansu 0.6.0 (memory storage, the local broker) breaks Kafka's contract around missing topics, and
how the topics job keeps Herald clear of it.

Each ``xfail(strict=True)`` test states what Apache Kafka does; it fails the day Tansu does the same,
which is then the time to revisit ``shared.kafka.metadata``, ``shared.kafka.admin`` and the README's
"When the broker restarts". Together they are why a broker that restarted empty went on acknowledging
records nobody received: producers whose metadata predates the restart keep writing to the lost topics
and are acknowledged (1); consumers fetching from them get no error and nothing (2, 3); and the topics,
created again, start over those records, so later records are refused or acknowledged and never read (4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from infra.local.broker import Broker
from shared.kafka.admin import AdminSettings, StrayRecordsError, create_topics
from shared.topics import Topics
from tests.kafka_helpers import create_topics as create_test_topics
from tests.kafka_helpers import read_until

pytestmark = pytest.mark.integration

NONE = 0
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
TANSU_BUG = "Tansu 0.6.0 memory storage does not check that a topic exists on produce and fetch"


def batch(*values: bytes) -> bytes:
    """One record batch holding ``values``, as a producer that batched them sends it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


class RawClient:
    """Kafka requests sent as they are, so the test sees the broker's own answer (no client-side checks)."""

    def __init__(self, client: AIOKafkaClient) -> None:
        self._client = client

    async def produce(self, topic: str, partition: int, *values: bytes) -> tuple[int, int]:
        """The error code and base offset the broker answers."""
        request = ProduceRequest(None, -1, 10_000, [(topic, [(partition, batch(*values))])])
        response = await self._client.send(self._client.get_random_node(), request)
        answer = response.topics[0][1][0]
        return answer[1], answer[2]

    async def fetch(self, topic: str, partition: int, offset: int) -> tuple[int, int]:
        """The error code and high watermark the broker answers."""
        request = FetchRequest(100, 1, 1 << 20, 0, [(topic, [(partition, offset, 1 << 20)])])
        response = await self._client.send(self._client.get_random_node(), request)
        answer = response.topics[0][1][0]
        return answer[1], answer[2]


@pytest.fixture
async def raw(broker: Broker) -> AsyncIterator[RawClient]:
    client = AIOKafkaClient(bootstrap_servers=broker.bootstrap_servers)
    await client.bootstrap()
    try:
        yield RawClient(client)
    finally:
        await client.close()


@pytest.mark.xfail(strict=True, reason=f"{TANSU_BUG}: it acknowledges records for a topic it does not have")
async def test_a_record_for_a_missing_topic_is_refused(raw: RawClient, namespace: str) -> None:
    error, _ = await raw.produce(f"{namespace}.never-created", 0, b"lost")
    assert error == UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.xfail(strict=True, reason=f"{TANSU_BUG}: a fetch from a topic it does not have answers nothing, no error")
async def test_a_fetch_from_a_missing_topic_is_refused(raw: RawClient, namespace: str) -> None:
    error, _ = await raw.fetch(f"{namespace}.never-created", 0, 5)
    assert error == UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.xfail(strict=True, reason="Tansu 0.6.0 answers a fetch past the log's end with no records and no error")
async def test_a_fetch_past_the_end_of_the_log_is_out_of_range(raw: RawClient, broker: Broker, namespace: str) -> None:
    topic = f"{namespace}.short"
    await create_test_topics(broker.bootstrap_servers, [topic], partitions=1)
    await raw.produce(topic, 0, b"a", b"b", b"c")
    # A consumer whose position was kept from before the broker restarted empty.
    error, highwater = await raw.fetch(topic, 0, 1000)
    assert (error, highwater) == (OFFSET_OUT_OF_RANGE, 3)


@pytest.mark.xfail(strict=True, reason=f"{TANSU_BUG}: a topic created later starts over the records it accepted")
async def test_every_record_acknowledged_after_a_topic_is_created_is_read(
    raw: RawClient, broker: Broker, namespace: str
) -> None:
    topic = f"{namespace}.recreated"
    # A producer that had not noticed the broker lost the topic: one batch of three, acknowledged.
    assert (await raw.produce(topic, 0, b"stray-1", b"stray-2", b"stray-3"))[0] == NONE
    await create_test_topics(broker.bootstrap_servers, [topic], partitions=1)
    acknowledged = []
    for n in range(4):
        error, _ = await raw.produce(topic, 0, b"new-%d" % n)
        if error == NONE:
            acknowledged.append(b"new-%d" % n)
    # Tansu: the first produce is refused (ObjectStore AlreadyExists at offset 0), the next ones are
    # acknowledged at offsets 1 to 3, inside the stray batch, which a consumer reads instead of them.
    await read_until(
        broker.bootstrap_servers,
        topic,
        lambda found: set(acknowledged) <= {record.value for record in found},
        5,
        f"the acknowledged records {acknowledged}",
    )
    assert acknowledged == [b"new-0", b"new-1", b"new-2", b"new-3"]


async def test_the_topics_job_refuses_while_the_broker_holds_records_for_missing_topics(
    restartable_broker: Broker, namespace: str
) -> None:
    settings = AdminSettings(
        kafka_bootstrap_servers=restartable_broker.bootstrap_servers, topic_prefix=namespace, kafka_topic_partitions=3
    )
    topics = Topics(namespace)
    client = AIOKafkaClient(bootstrap_servers=restartable_broker.bootstrap_servers)
    await client.bootstrap()
    try:
        # A producer still writing to the requests topic of a broker that restarted empty.
        await RawClient(client).produce(topics.requests, 2, b"one", b"two")
    finally:
        await client.close()

    with pytest.raises(StrayRecordsError) as refused:
        await create_topics(settings)
    assert f"'{topics.requests}': 2" in str(refused.value)
    assert "restart the broker" in str(refused.value)

    # From this thread: a child started from a worker thread dies with it.
    restartable_broker.stop()
    restartable_broker.start()
    assert sorted(await create_topics(settings)) == sorted(topics.all())
