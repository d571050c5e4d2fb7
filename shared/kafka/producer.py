"""One producer per process, tuned for batching, with ``acks=all`` so an acknowledgement means durable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from shared.config import HeraldSettings
from shared.kafka.records import Produce
from shared.observability import metrics

# Wait up to this long for more messages to fill a batch: a few ms of latency buys large batches.
LINGER_MS = 5
MAX_BATCH_BYTES = 512 * 1024
# The largest record produced: Kafka's default for brokers (message.max.bytes) and producers alike.
MAX_RECORD_BYTES = 1_048_576


class RecordTooLarge(ValueError):
    """A record is larger than Kafka takes: whatever made it made too much (a message's fault, not Kafka's)."""


class MessageProducer:
    """Produces :class:`Produce` records; every future resolves once the broker acknowledged it."""

    def __init__(self, settings: HeraldSettings, *, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=settings.kafka_idempotent_producer,
            linger_ms=LINGER_MS,
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=MAX_RECORD_BYTES,
            request_timeout_ms=30_000,
        )

    async def start(self) -> None:
        await self._producer.start()

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
        future: asyncio.Future[object] = await self._producer.send(
            record.topic, record.value, key=record.key, headers=list(record.headers)
        )
        metrics.MESSAGES_PRODUCED.labels(topic=record.topic).inc()
        return future

    async def send_all(self, records: Iterable[Produce]) -> list[asyncio.Future[object]]:
        """Queue many records at once, so they share broker requests."""
        return [await self.send(record) for record in records]

    async def produce(self, records: Iterable[Produce]) -> None:
        """Produce records and wait until every one is acknowledged (raises if any failed)."""
        futures = await self.send_all(records)
        if futures:
            await asyncio.gather(*futures)

    async def check(self) -> None:
        """Readiness: the broker answers a metadata request."""
        await self._producer.client.fetch_all_metadata()
