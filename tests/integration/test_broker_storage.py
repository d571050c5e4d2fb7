"""The local broker's S3 storage (Tansu on moto, as ``make up`` runs it): trimming deletes only the record
batches every consumer group that committed has read past, and the broker goes on, across a restart, over
what is left."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.local.broker import Broker
from tests.kafka_helpers import create_topics, read_topic

pytestmark = pytest.mark.integration


async def commit(bootstrap: str, group: str, partition: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.commit({partition: offset})
    finally:
        await consumer.stop()


async def values(bootstrap: str, topic: str, count: int) -> list[bytes | None]:
    return [record.value for record in await read_topic(bootstrap, topic, count)]


async def test_trim_deletes_only_batches_every_committed_group_read_past(durable_broker: Broker) -> None:
    assert durable_broker.storage is not None
    bootstrap = durable_broker.bootstrap_servers
    await create_topics(bootstrap, ["trimmed", "uncommitted"], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic in ("trimmed", "uncommitted"):
            for n in range(5):  # one batch each, at offsets 0 to 4
                await producer.send_and_wait(topic, str(n).encode(), partition=0)
        three = producer.create_batch()  # offsets 5 to 7, one batch
        for n in (5, 6, 7):
            three.append(key=None, value=str(n).encode(), timestamp=None)
        await (await producer.send_batch(three, "trimmed", partition=0))
        await producer.send_and_wait("trimmed", b"8", partition=0)
    finally:
        await producer.stop()
    await commit(bootstrap, "readers", TopicPartition("trimmed", 0), 6)

    # 0 to 4; the batch holding 6 and 7, not yet read, stays, and so does every batch of "uncommitted".
    assert durable_broker.storage.trim() == 5
    assert await values(bootstrap, "trimmed", 4) == [b"5", b"6", b"7", b"8"]
    assert len(await read_topic(bootstrap, "uncommitted", 5)) == 5

    durable_broker.kill()
    durable_broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        assert (await producer.send_and_wait("trimmed", b"9", partition=0)).offset == 9
    finally:
        await producer.stop()
    assert await values(bootstrap, "trimmed", 5) == [b"5", b"6", b"7", b"8", b"9"]
