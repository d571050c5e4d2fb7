"""The pipeline end to end: requests produced straight to Kafka until each is at the sink and ``sent`` in Postgres.

Also the latency of each notification from acceptance to the provider, read from the status store:
the ``accepted`` event ingest records and the ``sent`` event the sender records (and, for the
gateway's notifications, the time the gateway accepted the request, ``notifications.created_at``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from infra.bench.broker_ceiling import services_like_producer
from infra.bench.timeline import SENT_TIMES
from shared.kafka.connection import KafkaConnectionSettings
from shared.kafka.records import Produce, accepted_at_header, headers_for, message_key
from shared.messages import EMAIL_DELIVERY, EmailDelivery, NotificationRequest, Priority
from shared.producer_keys import ProducerKey
from shared.requests import build_request, request_record

POLL_INTERVAL_S = 0.1
# Many recipients: keys spread over every partition, as real traffic does.
_RECIPIENTS = 10_000

_SENT = "SELECT count(*) FROM notifications WHERE status = 'sent' AND tenant_id = $1 AND created_at >= $2"

_LATENCY = (
    SENT_TIMES
    + """
SELECT count(*) AS sent,
       1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - accepted_at)) AS p50,
       1000 * percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - accepted_at)) AS p95,
       1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - accepted_at)) AS p99,
       1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) AS created_p50,
       1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) AS created_p99
FROM times
WHERE accepted_at IS NOT NULL AND sent_at IS NOT NULL
"""
)


@dataclass(frozen=True)
class Latency:
    """Percentiles over ``count`` sent notifications, in milliseconds.

    ``accepted_*`` start at ingest's ``accepted`` event; ``created_*`` at ``notifications.created_at``,
    which is the gateway's acceptance for HTTP requests (and the first event otherwise).
    """

    count: int
    accepted_p50_ms: float
    accepted_p95_ms: float
    accepted_p99_ms: float
    created_p50_ms: float
    created_p99_ms: float


@dataclass(frozen=True)
class Arrived:
    """When every one of ``count`` notifications had reached the sink and was ``sent`` in the store (None: not
    within the time allowed), and how many had by the end."""

    count: int
    sink_seconds: float | None
    stored_seconds: float | None
    seconds: float
    delivered: int
    sent: int

    @property
    def complete(self) -> bool:
        return self.sink_seconds is not None and self.stored_seconds is not None

    @property
    def per_s(self) -> float:
        """Notifications a second end to end (from what did arrive, if the run timed out)."""
        return (self.count if self.complete else min(self.delivered, self.sent)) / self.seconds

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"complete": self.complete, "per_s": round(self.per_s, 1)}


class Arrivals:
    """Polled counts of a bulk run, from the moment it is made: the clock starts here."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.started = time.perf_counter()
        self._sink_seconds: float | None = None
        self._stored_seconds: float | None = None
        self._delivered = self._sent = 0

    @property
    def awaiting_sink(self) -> bool:
        return self._sink_seconds is None

    @property
    def awaiting_store(self) -> bool:
        return self._stored_seconds is None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def saw(self, *, delivered: int | None = None, sent: int | None = None) -> bool:
        """Take one poll's counts (None: not polled); whether every notification is now at the sink and stored."""
        if delivered is not None:
            self._delivered = delivered
            if delivered >= self.count and self._sink_seconds is None:
                self._sink_seconds = self.elapsed()
        if sent is not None:
            self._sent = sent
            if sent >= self.count and self._stored_seconds is None:
                self._stored_seconds = self.elapsed()
        return not (self.awaiting_sink or self.awaiting_store)

    def result(self) -> Arrived:
        """The run so far: timed to the later of sink and store if complete, else to now."""
        if self._sink_seconds is None or self._stored_seconds is None:
            seconds = self.elapsed()
        else:
            seconds = max(self._sink_seconds, self._stored_seconds)
        return Arrived(self.count, self._sink_seconds, self._stored_seconds, seconds, self._delivered, self._sent)


@dataclass(frozen=True)
class PipelineRun:
    """One bulk run: when the producer was done, when the sink and Postgres had every notification."""

    sink: str
    started_at: datetime
    produce_seconds: float
    arrived: Arrived
    latency: Latency | None

    @property
    def per_s(self) -> float:
        return self.arrived.per_s

    def to_json(self) -> dict[str, Any]:
        return {
            "sink": self.sink,
            "started_at": self.started_at.isoformat(),
            "produce_seconds": self.produce_seconds,
            **self.arrived.to_json(),
            "latency": asdict(self.latency) if self.latency else None,
        }


def email_request(tenant_id: str, index: int, priority: Priority = "normal") -> NotificationRequest:
    """Valid email request number ``index`` of ``tenant_id`` (recipients repeat every 10,000)."""
    return build_request(
        tenant_id=tenant_id,
        channels=["email"],
        recipient={"email": f"user{index % _RECIPIENTS}@example.com"},
        content={"subject": "Hello {{ name }}", "text": "Hi {{ name }}!", "html": "<p>Hi {{ name }}</p>"},
        variables={"name": f"User {index}"},
        priority=priority,
    )


def email_requests(
    tenant_id: str, count: int, topic: str, signer: ProducerKey, priority: Priority = "normal"
) -> list[Produce]:
    """``count`` of :func:`email_request` as records for ``topic``, signed as ingest requires, built before any
    clock starts."""
    return [request_record(email_request(tenant_id, index, priority), topic, None, signer) for index in range(count)]


def email_deliveries(tenant_id: str, count: int, topic: str) -> list[Produce]:
    """``count`` rendered email deliveries as the router hands them to sender-email (``topic``: its send
    topic), for measuring the sender alone; built before any clock starts."""
    now = datetime.now(UTC)
    records = []
    for index in range(count):
        notification_id = str(uuid.uuid4())
        delivery: EmailDelivery = {
            "delivery_id": str(uuid.uuid5(uuid.UUID(notification_id), "email")),
            "notification_id": notification_id,
            "tenant_id": tenant_id,
            "attempt": 1,
            "priority": "normal",
            "to": f"user{index % _RECIPIENTS}@example.com",
            "subject": f"Hello User {index}",
            "text": f"Hi User {index}!",
            "html": f"<p>Hi User {index}</p>",
            "provider_templates": {},
            "template_data_json": "{}",
            "metadata": {},
            "attachments": [],
        }
        key = message_key(tenant_id, delivery["to"])
        headers = headers_for(tenant_id, "delivery.email", None, accepted_at_header(now))
        records.append(Produce(topic, EMAIL_DELIVERY.encode(delivery), key=key, headers=headers))
    return records


async def produce_all(producer: AIOKafkaProducer, records: list[Produce]) -> None:
    """Produce ``records`` as fast as ``producer`` takes them (``send`` applies back-pressure), then await
    every acknowledgement."""
    futures = [
        await producer.send(record.topic, record.value, key=record.key, headers=list(record.headers))
        for record in records
    ]
    await asyncio.gather(*futures)


async def run_pipeline(
    *,
    connection: KafkaConnectionSettings,
    database_url: str,
    tenant_id: str,
    since: datetime,
    records: list[Produce],
    sink_name: str,
    sink_delivered: Callable[[], int],
    timeout_s: float,
) -> PipelineRun:
    """Produce ``records`` as fast as one producer can and wait until every one is delivered and stored."""
    producer = services_like_producer(connection)
    database = await asyncpg.connect(database_url)
    await producer.start()
    try:
        delivered_before = sink_delivered()
        origin = datetime.now(UTC)
        arrivals = Arrivals(len(records))

        async def produce() -> float:
            await produce_all(producer, records)
            return arrivals.elapsed()

        producing = asyncio.create_task(produce())
        while arrivals.elapsed() < timeout_s:
            delivered = sink_delivered() - delivered_before if arrivals.awaiting_sink else None
            sent = int(await database.fetchval(_SENT, tenant_id, since)) if arrivals.awaiting_store else None
            if arrivals.saw(delivered=delivered, sent=sent):
                break
            await asyncio.sleep(POLL_INTERVAL_S)
        arrived = arrivals.result()
        produce_seconds = await producing
        latency = await read_latency(database, tenant_id, since)
    finally:
        await producer.stop()
        await database.close()
    return PipelineRun(
        sink=sink_name, started_at=origin, produce_seconds=produce_seconds, arrived=arrived, latency=latency
    )


async def read_latency(database: asyncpg.Connection, tenant_id: str, since: datetime) -> Latency | None:
    """Latency percentiles of the tenant's notifications created since ``since`` and sent."""
    row = await database.fetchrow(_LATENCY, tenant_id, since)
    if row is None or not row["sent"]:
        return None
    return Latency(
        count=int(row["sent"]),
        accepted_p50_ms=float(row["p50"]),
        accepted_p95_ms=float(row["p95"]),
        accepted_p99_ms=float(row["p99"]),
        created_p50_ms=float(row["created_p50"]),
        created_p99_ms=float(row["created_p99"]),
    )


async def drain(
    database_url: str, tenant_id: str, since: datetime, expected: int, timeout_s: float
) -> tuple[int, float]:
    """Wait until ``expected`` of the tenant's notifications since ``since`` are sent; (how many, seconds waited)."""
    database = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        sent = int(await database.fetchval(_SENT, tenant_id, since))
        while sent < expected and time.perf_counter() - started < timeout_s:
            await asyncio.sleep(POLL_INTERVAL_S * 5)
            sent = int(await database.fetchval(_SENT, tenant_id, since))
        return sent, time.perf_counter() - started
    finally:
        await database.close()


async def latency_since(database_url: str, tenant_id: str, since: datetime) -> Latency | None:
    """:func:`read_latency` on a connection of its own."""
    database = await asyncpg.connect(database_url)
    try:
        return await read_latency(database, tenant_id, since)
    finally:
        await database.close()
