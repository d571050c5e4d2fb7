"""Priority lanes under a backlog: high-priority emails sent while 20,000 low-priority ones are worked through.

The low backlog is produced straight to the requests topic's low lane, as fast as one producer goes (faster
than the pipeline drains it). Once a share of it is sent (every stage is then busy with low batches), high
requests are produced to the high lane at an even pace. Figures, all from the status events in Postgres:
the high ones' accepted -> sent (as :func:`infra.bench.pipeline.read_latency` reads it), split by stage; the
low lane's sent/s from the first high request produced to the last high one sent; how many low ones were
still unsent at that moment. The phase then waits for the rest of the backlog, so the next one starts on an
idle stack. Each stage's mean batch per lane comes from the services' own ``/metrics``: a high record waits
for the batch in hand, whatever its lane.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from infra.bench.broker_ceiling import services_like_producer
from infra.bench.pipeline import Latency, drain, email_request, email_requests, produce_all, read_latency
from shared.kafka.connection import KafkaConnectionSettings
from shared.producer_keys import ProducerKey
from shared.requests import request_record
from shared.topics import LANES, Topics

LOW_TENANT = "bench-low"
HIGH_TENANT = "bench-high"
# The high requests start once this share of the backlog is sent: ingest, router and sender all hold low batches.
HIGH_AFTER_LOW_SENT = 0.05
# The consuming services of an email's path and the stream each one reads in lanes.
STAGE_STREAMS = {"ingest": "requests", "router": "routable", "sender-email": "send.email"}

# Per notification: first sent event. Counted up to the first high request ($3) and the last high one sent ($4).
_SENT_TIMES = """
SELECT count(*) AS sent,
       count(*) FILTER (WHERE sent_at <= $3) AS sent_by_high_start,
       count(*) FILTER (WHERE sent_at <= $4) AS sent_by_last_high,
       max(sent_at) AS last_sent_at
FROM (
    SELECT min(occurred_at) AS sent_at
    FROM notification_events
    WHERE tenant_id = $1 AND occurred_at >= $2 AND status = 'sent'
    GROUP BY notification_id
) AS sent
"""

# Each stage of the given notifications, from when the bench produced them: produced -> accepted (ingest's
# event), accepted -> routed (the router's), routed -> sent (the sender's).
_STAGES = """
WITH produced AS (
    SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS p(id, produced_at)
), times AS (
    SELECT p.produced_at,
           min(e.occurred_at) FILTER (WHERE e.status = 'accepted') AS accepted_at,
           min(e.occurred_at) FILTER (WHERE e.status = 'routed') AS routed_at,
           min(e.occurred_at) FILTER (WHERE e.status = 'sent') AS sent_at
    FROM produced AS p JOIN notification_events AS e ON e.notification_id = p.id
    GROUP BY p.id, p.produced_at
), stages AS (
    SELECT stage, extract(epoch FROM finished - started) AS seconds
    FROM times, LATERAL (
        VALUES ('ingest', produced_at, accepted_at), ('router', accepted_at, routed_at), ('sender', routed_at, sent_at)
    ) AS s(stage, started, finished)
    WHERE started IS NOT NULL AND finished IS NOT NULL
)
SELECT stage, count(*) AS count,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY seconds) AS seconds
FROM stages
GROUP BY stage
"""

_BATCHES = "herald_batch_duration_seconds_count"
_BATCH_SECONDS = "herald_batch_duration_seconds_sum"
_CONSUMED = "herald_messages_consumed_total"


@dataclass(frozen=True)
class Percentiles:
    """p50 / p95 / p99 over ``count`` notifications, in milliseconds."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LaneBatches:
    """The batches one service took from one lane during the phase: how many, of how many records, handled in
    how long (fetched -> outputs queued for produce, summed)."""

    batches: int
    messages: int
    seconds: float

    def to_json(self) -> dict[str, float | int]:
        mean_size = self.messages / self.batches if self.batches else 0.0
        mean_ms = 1000 * self.seconds / self.batches if self.batches else 0.0
        return asdict(self) | {"mean_size": round(mean_size, 1), "mean_ms": round(mean_ms, 1)}


@dataclass(frozen=True)
class SentTimes:
    """A tenant's notifications sent since the phase began: how many, how many by two moments, the last when."""

    sent: int
    sent_by_high_start: int
    sent_by_last_high: int
    last_sent_at: datetime | None


async def _sent_times(
    database: asyncpg.Connection, tenant_id: str, since: datetime, high_start: datetime, last_high: datetime
) -> SentTimes:
    """:data:`_SENT_TIMES` for one tenant (an aggregate: always one row)."""
    row = await database.fetchrow(_SENT_TIMES, tenant_id, since, high_start, last_high)
    assert row is not None
    return SentTimes(
        sent=int(row["sent"]),
        sent_by_high_start=int(row["sent_by_high_start"]),
        sent_by_last_high=int(row["sent_by_last_high"]),
        last_sent_at=row["last_sent_at"],
    )


@dataclass(frozen=True)
class PriorityRun:
    """One run of the phase; times are seconds."""

    low_count: int
    high_count: int
    high_seconds: float
    low_produce_seconds: float
    low_sent_before_high: int
    high_sent: int
    high: Latency | None
    high_stages: dict[str, Percentiles]
    window_seconds: float | None
    low_sent_in_window: int
    low_queued_at_last_high: int | None
    low_sent: int
    low_seconds: float | None
    batches: dict[str, dict[str, LaneBatches]]

    @property
    def complete(self) -> bool:
        return self.high_sent >= self.high_count and self.low_sent >= self.low_count

    @property
    def low_per_s_in_window(self) -> float | None:
        """The low lane's sent/s from the first high request produced to the last high one sent."""
        return self.low_sent_in_window / self.window_seconds if self.window_seconds else None

    @property
    def low_per_s(self) -> float | None:
        """The low lane's sent/s over the whole backlog, from its first request produced to its last sent."""
        return self.low_count / self.low_seconds if self.low_seconds else None

    def to_json(self) -> dict[str, Any]:
        rates = {"low_per_s_in_window": self.low_per_s_in_window, "low_per_s": self.low_per_s}
        return (
            asdict(self)
            | {"batches": {s: {lane: b.to_json() for lane, b in lanes.items()} for s, lanes in self.batches.items()}}
            | {"complete": self.complete}
            | {name: None if rate is None else round(rate, 1) for name, rate in rates.items()}
        )


async def run_priority(
    *,
    connection: KafkaConnectionSettings,
    topics: Topics,
    database_url: str,
    signer: Callable[[str], ProducerKey],
    metrics_urls: Mapping[str, str],
    low_count: int,
    high_count: int,
    high_seconds: float,
    timeout_s: float,
) -> PriorityRun:
    """Queue ``low_count`` low requests, send ``high_count`` high ones over ``high_seconds`` while the backlog is
    worked through, wait (up to ``timeout_s`` in all) until both lanes are sent, and read the figures."""
    since = datetime.now(UTC)
    low = email_requests(LOW_TENANT, low_count, topics.requests_for("low"), signer(LOW_TENANT), "low")
    deadline = time.perf_counter() + timeout_s
    counters_before = await _batch_counters(metrics_urls)
    producer = services_like_producer(connection)
    await producer.start()
    try:
        low_started = datetime.now(UTC)
        started = time.perf_counter()
        await produce_all(producer, low)
        low_produce_seconds = time.perf_counter() - started
        threshold = max(1, round(low_count * HIGH_AFTER_LOW_SENT))
        await drain(database_url, LOW_TENANT, since, threshold, deadline - time.perf_counter())
        high_started = datetime.now(UTC)
        produced = await _produce_paced(
            producer, topics.requests_for("high"), signer(HIGH_TENANT), high_count, high_seconds
        )
    finally:
        await producer.stop()
    await drain(database_url, HIGH_TENANT, since, high_count, deadline - time.perf_counter())
    # The rest of the backlog: the next phase starts on an idle stack.
    await drain(database_url, LOW_TENANT, since, low_count, deadline - time.perf_counter())
    counters_after = await _batch_counters(metrics_urls)

    database = await asyncpg.connect(database_url)
    try:
        high = await _sent_times(database, HIGH_TENANT, since, high_started, high_started)
        last_high_sent = high.last_sent_at
        low_times = await _sent_times(database, LOW_TENANT, since, high_started, last_high_sent or datetime.now(UTC))
        latency = await read_latency(database, HIGH_TENANT, since)
        stages = await _stages(database, produced)
    finally:
        await database.close()

    return PriorityRun(
        low_count=low_count,
        high_count=high_count,
        high_seconds=high_seconds,
        low_produce_seconds=low_produce_seconds,
        low_sent_before_high=low_times.sent_by_high_start,
        high_sent=high.sent,
        high=latency,
        high_stages=stages,
        window_seconds=(last_high_sent - high_started).total_seconds() if last_high_sent else None,
        low_sent_in_window=low_times.sent_by_last_high - low_times.sent_by_high_start,
        low_queued_at_last_high=low_count - low_times.sent_by_last_high if last_high_sent else None,
        low_sent=low_times.sent,
        low_seconds=(
            (low_times.last_sent_at - low_started).total_seconds()
            if low_times.last_sent_at and low_times.sent >= low_count
            else None
        ),
        batches=_batches_between(counters_before, counters_after, topics),
    )


async def _produce_paced(
    producer: AIOKafkaProducer, topic: str, signer: ProducerKey, count: int, seconds: float
) -> dict[uuid.UUID, datetime]:
    """``count`` high requests at an even pace over ``seconds``, each built when it is produced; when each was."""
    produced: dict[uuid.UUID, datetime] = {}
    futures = []
    started = time.perf_counter()
    for index in range(count):
        # Pacing is the point here: there is no condition to wait for.
        await asyncio.sleep(max(0.0, started + index * seconds / count - time.perf_counter()))
        request = email_request(HIGH_TENANT, index, "high")
        record = request_record(request, topic, None, signer)
        produced[uuid.UUID(request["notification_id"])] = datetime.now(UTC)
        futures.append(await producer.send(record.topic, record.value, key=record.key, headers=list(record.headers)))
    await asyncio.gather(*futures)
    return produced


async def _stages(database: asyncpg.Connection, produced: Mapping[uuid.UUID, datetime]) -> dict[str, Percentiles]:
    rows = await database.fetch(_STAGES, list(produced), list(produced.values()))
    return {
        row["stage"]: Percentiles(
            count=int(row["count"]),
            p50_ms=1000 * row["seconds"][0],
            p95_ms=1000 * row["seconds"][1],
            p99_ms=1000 * row["seconds"][2],
        )
        for row in rows
    }


async def _batch_counters(metrics_urls: Mapping[str, str]) -> dict[str, dict[tuple[str, str], float]]:
    """Per service: (sample, topic) -> value of its batch counters, from its ``/metrics``."""
    wanted = {_BATCHES, _BATCH_SECONDS, _CONSUMED}
    counters: dict[str, dict[tuple[str, str], float]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for service, url in metrics_urls.items():
            response = await client.get(url)
            response.raise_for_status()
            counters[service] = {
                (sample.name, sample.labels["topic"]): sample.value
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
                if sample.name in wanted
            }
    return counters


def _batches_between(
    before: Mapping[str, Mapping[tuple[str, str], float]],
    after: Mapping[str, Mapping[tuple[str, str], float]],
    topics: Topics,
) -> dict[str, dict[str, LaneBatches]]:
    """What each stage took from each of its lanes between two scrapes."""

    def grown(service: str, sample: str, topic: str) -> float:
        return after[service].get((sample, topic), 0.0) - before[service].get((sample, topic), 0.0)

    return {
        service: {
            lane: LaneBatches(
                batches=round(grown(service, _BATCHES, topic)),
                messages=round(grown(service, _CONSUMED, topic)),
                seconds=grown(service, _BATCH_SECONDS, topic),
            )
            for lane, topic in zip(LANES, topics.lanes(stream), strict=True)
        }
        for service, stream in STAGE_STREAMS.items()
        if service in after
    }
