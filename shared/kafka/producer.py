"""One producer per process, tuned for batching, with ``acks=all`` so an acknowledgement means durable."""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from shared.config import HeraldSettings
from shared.kafka.connection import client_options
from shared.kafka.metadata import METADATA_MAX_AGE_MS
from shared.kafka.records import Produce
from shared.kafka.startup import KafkaNotStarted
from shared.observability import metrics
from shared.topics import Topics

# Wait up to this long for more messages to fill a batch: a few ms of latency buys large batches.
LINGER_MS = 5
MAX_BATCH_BYTES = 512 * 1024
# How long a record may wait for its topic to be known, and then for its acknowledgement.
REQUEST_TIMEOUT_MS = 30_000


class MissingTopicsError(KafkaError):  # type: ignore[misc]
    """The broker does not have topics Herald declares (it lost them, or the topics job has not run)."""


# The largest record produced: Kafka's default for brokers (message.max.bytes) and producers alike.
MAX_RECORD_BYTES = 1_048_576


class RecordTooLarge(ValueError):
    """A record is larger than Kafka takes: whatever made it made too much (a message's fault, not Kafka's)."""


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    hashed: int = murmur2(key)
    return hashed & 0x7FFFFFFF


class KeyPartitioner:
    """Kafka's default partitioning (murmur2 of the key, as the Java client; a record without a key anywhere
    available), with each key's hash remembered: aiokafka's murmur2 is pure Python, and keys
    (``tenant:recipient``) repeat as the same people are notified again."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[_key_hash(key) % len(all_partitions)]


class MessageProducer:
    """Produces :class:`Produce` records; every future resolves once the broker acknowledged it."""

    def __init__(self, settings: HeraldSettings, *, client_id: str) -> None:
        self._topics = Topics(settings.topic_prefix).all()
        self._settings = settings
        self._client_id = client_id
        self._producer = self._new_producer()
        self._started = False

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **client_options(self._settings),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=self._settings.kafka_idempotent_producer,
            linger_ms=LINGER_MS,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_RECORD_BYTES,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            # Stops writing to topics the broker lost within this (see shared.kafka.metadata).
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            partitioner=KeyPartitioner(),
        )

    async def start(self) -> None:
        """Connect. A failed start closes what it opened, so a later call starts with a new aiokafka producer
        (a closed one cannot start again)."""
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()
            self._producer = self._new_producer()
            raise
        self._started = True

    @staticmethod
    def check_sizes(records: Iterable[Produce]) -> None:
        """Raise :class:`RecordTooLarge` for the first of ``records`` Kafka would refuse for its size.

        Checked before anything is queued: a refusal at ``send`` would come after the batch's other
        records were queued, with no way to tell which message made the record.
        """
        for record in records:
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(record.key, record.value, list(record.headers))
            if size > MAX_RECORD_BYTES:
                raise RecordTooLarge(
                    f"a record for {record.topic} would be {size} bytes, over the {MAX_RECORD_BYTES} Kafka takes"
                )

    async def stop(self) -> None:
        """Flush what is buffered, then close."""
        await self._producer.stop()

    async def send(self, record: Produce) -> asyncio.Future[object]:
        """Queue one record; the returned future resolves when it is acknowledged."""
        if not self._started:
            # aiokafka would wait out its request timeout for metadata a client that never connected lacks.
            raise KafkaNotStarted("the producer has not connected to Kafka (see the service's readiness)")
        future: asyncio.Future[object] = await self._producer.send(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
        metrics.MESSAGES_PRODUCED.labels(topic=record.topic).inc()
        return future

    async def send_all(self, records: Iterable[Produce]) -> list[asyncio.Future[object]]:
        """Queue many records at once, so they share broker requests.

        A record whose topic the broker does not have (aiokafka gives up on it after
        :data:`REQUEST_TIMEOUT_MS`) gets a failed future, and so does every record after it, without
        another wait: the caller retries or reports them like any record the broker refused.
        """
        futures: list[asyncio.Future[object]] = []
        failure: UnknownTopicOrPartitionError | None = None
        for record in records:
            if failure is None:
                try:
                    futures.append(await self.send(record))
                    continue
                except UnknownTopicOrPartitionError as error:
                    failure = error
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(failure)
            futures.append(failed)
        return futures

    async def produce(self, records: Iterable[Produce]) -> None:
        """Produce records and wait until every one is acknowledged (raises if any failed)."""
        futures = await self.send_all(records)
        if futures:
            await asyncio.gather(*futures)

    async def missing_topics(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` the broker does not have (it is asked; raises KafkaError if it does not answer)."""
        cluster = await self._producer.client.fetch_all_metadata()
        present: set[str] = cluster.topics()
        return set(names) - present

    async def check(self) -> None:
        """Readiness: the broker answers and has every Herald topic (one that restarted empty has none)."""
        missing = await self.missing_topics(self._topics)
        if missing:
            names = ", ".join(sorted(missing))
            raise MissingTopicsError(f"the broker has no topic {names} (the topics job creates them)")
