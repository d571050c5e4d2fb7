"""Reading and writing test topics directly, without a consumer group."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int = 4) -> None:
    """Create topics of a test's own (Herald's clients never make the broker create one)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names])
    finally:
        await admin.close()


async def produce_raw(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes],
    key: bytes | None = None,
    headers: Sequence[Sequence[tuple[str, bytes]]] | None = None,
) -> None:
    """Produce bytes as they are (good or garbage), waiting for every acknowledgement; ``headers``,
    if given, are each value's."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=list(headers[i]) if headers else None)
            for i, value in enumerate(values)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``count`` records arrived (or fail after ``timeout``).

    Tansu reports a wrong "latest" offset after batched produce, so this waits for a count instead.
    """
    return await read_until(bootstrap, topic, lambda records: len(records) >= count, timeout, f"{count} records")


async def find_record(
    bootstrap: str, topic: str, match: Callable[[ConsumerRecord], bool], timeout: float = 30.0
) -> ConsumerRecord:
    """The first record of ``topic`` that ``match`` accepts, waiting for it to arrive."""
    records = await read_until(bootstrap, topic, lambda found: any(map(match, found)), timeout, "a matching record")
    return next(record for record in records if match(record))


async def read_until(
    bootstrap: str, topic: str, enough: Callable[[list[ConsumerRecord]], bool], timeout: float, what: str
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``enough`` says the records read so far suffice."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        partitions = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                if time.monotonic() > deadline:
                    raise AssertionError(f"topic {topic} never appeared")
                await consumer._client.force_metadata_update()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        while not enough(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: expected {what}, got {len(records)} records")
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
        return records
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The sum of a group's committed offsets over a topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        total = 0
        for partition in partitions:
            offset = await consumer.committed(TopicPartition(topic, partition))
            total += offset or 0
        return total
    finally:
        await consumer.stop()


async def high_watermarks(bootstrap: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """Each partition's high watermark, as fetch responses report it (Tansu's ListOffsets can be wrong)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while any(consumer.highwater(tp) is None for tp in partitions):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: no fetch response for every partition")
            await consumer.getmany(timeout_ms=100, max_records=1)
        return {tp.partition: consumer.highwater(tp) for tp in partitions}
    finally:
        await consumer.stop()


async def wait_until_drained(bootstrap: str, group: str, topic: str, timeout: float = 60.0) -> None:
    """Wait until ``group`` has committed every record now in ``topic``: nothing of it can come again."""
    deadline = time.monotonic() + timeout
    target = sum((await high_watermarks(bootstrap, topic)).values())
    while (done := await committed(bootstrap, group, topic)) < target:
        if time.monotonic() > deadline:
            raise AssertionError(f"{group} committed {done} of {target} records of {topic}")
        await asyncio.sleep(0.2)


async def delete_topics(bootstrap_servers: str, names: Sequence[str]) -> None:
    """Delete the topics ``names`` from the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(list(names))
    finally:
        await admin.close()
