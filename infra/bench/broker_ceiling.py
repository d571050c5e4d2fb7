"""The broker ceiling: what one aiokafka client pushes through the broker and back on this machine.

Produce ``count`` records with the services' own producer settings (``acks=all``, 5 ms linger, the
same batch size), awaiting the futures in bulk; then consume them all with one member of a fresh
consumer group, committing each ``getmany`` batch by hand, as the services do.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.bench.timeline import Timeline, dense_counts
from shared.kafka.admin import AdminSettings, create_topics
from shared.kafka.connection import KafkaConnectionSettings, client_options
from shared.kafka.producer import LINGER_MS, MAX_BATCH_BYTES
from shared.topics import Topics

RECORD_BYTES = 300
PARTITIONS = 8
MAX_RECORDS = 2000
# Distinct keys spread the records over every partition, as recipient keys do.
_KEYS = 10_000
_JOIN_TIMEOUT_S = 60.0
# Per-second samples of the produce loop: a clock read every this many records costs nothing measurable.
_SAMPLE_EVERY = 1000


@dataclass(frozen=True)
class BrokerCeiling:
    """Produce and consume rates of one client, and their combination."""

    records: int
    record_bytes: int
    partitions: int
    produce_seconds: float
    consume_seconds: float
    group_join_seconds: float
    timeline: Timeline

    @property
    def produce_per_s(self) -> float:
        return self.records / self.produce_seconds

    @property
    def consume_per_s(self) -> float:
        return self.records / self.consume_seconds

    @property
    def combined_per_s(self) -> float:
        """``records / (produce time + consume time)``: one message in and out again."""
        return self.records / (self.produce_seconds + self.consume_seconds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "timeline": self.timeline.to_json(),
            "produce_per_s": round(self.produce_per_s),
            "consume_per_s": round(self.consume_per_s),
            "combined_per_s": round(self.combined_per_s),
        }


async def measure_broker_ceiling(connection: KafkaConnectionSettings, count: int, deadline_s: float) -> BrokerCeiling:
    """Produce then consume ``count`` records on a fresh topic; fail if it takes over ``deadline_s``."""
    prefix = f"bench-ceiling-{uuid.uuid4().hex[:8]}"
    await create_topics(
        AdminSettings.model_validate(
            {**connection.model_dump(), "topic_prefix": prefix, "kafka_topic_partitions": PARTITIONS}
        )
    )
    topic = Topics(prefix).requests
    produced: list[tuple[float, int]] = []
    consumed: list[tuple[float, int]] = []
    async with asyncio.timeout(deadline_s):
        produce_seconds = await _produce(connection, topic, count, produced)
        join_seconds, consume_seconds = await _consume(connection, topic, f"{prefix}.consumer", count, consumed)
    # One time axis: consuming starts once producing and the group join are over.
    offset = produce_seconds + join_seconds
    return BrokerCeiling(
        records=count,
        record_bytes=RECORD_BYTES,
        partitions=PARTITIONS,
        produce_seconds=produce_seconds,
        consume_seconds=consume_seconds,
        group_join_seconds=join_seconds,
        timeline=Timeline(
            rates={
                "produced/s": dense_counts((int(moment), records) for moment, records in produced),
                "consumed/s": dense_counts((int(offset + moment), records) for moment, records in consumed),
            }
        ),
    )


def services_like_producer(connection: KafkaConnectionSettings) -> AIOKafkaProducer:
    """A producer batching as Herald's services do (acks=all), without idempotence (Tansu lacks it)."""
    return AIOKafkaProducer(
        **client_options(connection),
        acks="all",
        enable_idempotence=False,
        linger_ms=LINGER_MS,
        max_batch_size=MAX_BATCH_BYTES,
    )


async def _produce(
    connection: KafkaConnectionSettings, topic: str, count: int, samples: list[tuple[float, int]]
) -> float:
    """Produce ``count`` records; ``samples`` gets (seconds, records handed to the producer) every
    :data:`_SAMPLE_EVERY` records."""
    producer = services_like_producer(connection)
    await producer.start()
    try:
        value = bytes(RECORD_BYTES)
        keys = [f"bench:user-{index}".encode() for index in range(_KEYS)]
        # Connections and metadata are ready before the clock starts.
        await producer.send_and_wait(topic, value, key=keys[0])
        started = time.perf_counter()
        # send() applies back-pressure when batches are full; every acknowledgement is awaited at the end.
        futures = []
        for index in range(count):
            futures.append(await producer.send(topic, value, key=keys[index % _KEYS]))
            if index % _SAMPLE_EVERY == _SAMPLE_EVERY - 1:
                samples.append((time.perf_counter() - started, _SAMPLE_EVERY))
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def _consume(
    connection: KafkaConnectionSettings, topic: str, group_id: str, count: int, samples: list[tuple[float, int]]
) -> tuple[float, float]:
    """Consume ``count`` records (and the warm-up one); ``samples`` gets (seconds, records) per batch."""
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(connection),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    joining = time.perf_counter()
    await consumer.start()
    try:
        # aiokafka joins the group in the background; the clock starts once partitions are assigned.
        while not consumer.assignment():
            if time.perf_counter() - joining > _JOIN_TIMEOUT_S:
                raise TimeoutError(f"the consumer got no partitions within {_JOIN_TIMEOUT_S:g} s")
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        join_seconds = started - joining
        records = 0
        # +1: the warm-up record produced before the clock started.
        while records < count + 1:
            batches = await consumer.getmany(timeout_ms=1000, max_records=MAX_RECORDS)
            if batches:
                got = sum(len(batch) for batch in batches.values())
                records += got
                await consumer.commit()
                samples.append((time.perf_counter() - started, got))
        return join_seconds, time.perf_counter() - started
    finally:
        await consumer.stop()
