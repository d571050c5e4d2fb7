"""The one consumer loop every Kafka-consuming service runs.

A batch goes through four steps, in the spirit of Sentry's arroyo::

    fetch -> decode -> handle -> produce -> (acknowledged) -> commit

* **fetch**: ``getmany`` up to ``max_batch`` records; auto-commit is off, always.
* **decode**: bytes that are not a record of the expected contract become DLQ records (``undecodable``).
* **handle**: the service's handler turns the batch into records to produce and :class:`Reject`
  verdicts (DLQ records). A transient failure (a dependency is down) pauses the partitions and
  tries the batch again after a backoff; any other exception is isolated by handling the batch in
  halves down to the message that fails, which goes to the DLQ as ``processing_error`` (through the
  service's :data:`RejectHook`, which also marks its notification ``failed``). So does a message whose
  outputs Kafka would refuse for their size, as ``message_too_large``: what a handler outputs is
  checked before anything of the batch is queued.
* **produce / commit**: outputs are queued on the producer without waiting; the batch's offsets are
  committed only once every output is acknowledged. Up to ``max_pending_batches`` batches may wait
  for acknowledgements while the next is handled; beyond that the loop waits (bounded in-flight work).
* **guard**: when most recent messages went to the DLQ for a reason that points at the environment
  rather than the message (``shared/kafka/guard.py``), the loop pauses for ``HERALD_DLQ_GUARD_PAUSE_S``
  after the batch in hand instead of dead-lettering the rest of the stream.
* **topics lost**: when the broker does not have a topic of the loop, or a partition's log got shorter
  (a broker that restarted empty), the loop drops the batches in flight (their messages went with the
  broker), commits nothing more, waits until the topics exist again (the topics job creates them; no
  client does) and joins its group anew. :meth:`ConsumerLoop.check` fails meanwhile (readiness), and
  :meth:`ConsumerLoop.alive` (liveness) once the loop has neither committed nor been caught up for
  ``HERALD_KAFKA_CONSUMER_STALL_S``.

On :meth:`ConsumerLoop.stop` (SIGTERM) the loop finishes the batch in hand, waits for its
acknowledgements, commits and leaves the group; a batch still waiting out a dependency failure is
handed back uncommitted, so another member (or the restarted service) processes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared.codec import Contract, UndecodableMessage
from shared.config import HeraldSettings
from shared.errors import DeadLetterReason, is_transient
from shared.kafka.connection import client_options
from shared.kafka.guard import ENVIRONMENTAL_REASONS, DeadLetterGuard
from shared.kafka.lanes import PrioritisedFetch
from shared.kafka.metadata import METADATA_MAX_AGE_MS
from shared.kafka.producer import MessageProducer, RecordTooLarge
from shared.kafka.records import (
    KIND,
    TENANT,
    TRACEPARENT,
    BatchResult,
    Consumed,
    Handler,
    Output,
    Produce,
    Reject,
    RejectHook,
    dead_letter_only,
)
from shared.messages import DEAD_LETTER
from shared.observability import metrics, tracing
from shared.topics import Topics

log = structlog.get_logger(__name__)

T = TypeVar("T")

# aiokafka retries a commit the broker refuses with a retriable error (a topic it no longer has) for
# ever, ten times a second; the loop gives up on such a commit after this long.
COMMIT_TIMEOUT_S = 10.0
# While its topics are missing, the loop asks the broker for them this often, and says so in its log this often.
TOPICS_POLL_S = 1.0
TOPICS_REMINDER_S = 30.0


@dataclass(frozen=True)
class ConsumerConfig:
    """How one service consumes. Durations are in seconds unless the name says otherwise."""

    group_id: str
    topics: Sequence[str]
    max_batch: int = 500
    fetch_timeout_ms: int = 200
    max_pending_batches: int = 4
    backoff_initial: float = 0.2
    backoff_max: float = 10.0


class _Stopped(Exception):
    """The loop was asked to stop while a batch was waiting out a dependency failure."""


class ConsumerNotReady(Exception):
    """The loop is waiting for the broker to have its topics again."""


class ConsumerStalled(Exception):
    """The loop has made no progress for longer than ``HERALD_KAFKA_CONSUMER_STALL_S``."""


@dataclass
class _PendingBatch:
    outputs: list[Produce]
    futures: list[asyncio.Future[object]]
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def done(self) -> bool:
        return all(future.done() for future in self.futures)


class _FlushOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop[Any]) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Commit what is done before another member takes these partitions over.
        await self._loop.drain()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


class ConsumerLoop(Generic[T]):
    """Consumes ``config.topics`` as ``contract`` records and runs ``handler`` on each batch."""

    def __init__(
        self,
        *,
        settings: HeraldSettings,
        service: str,
        config: ConsumerConfig,
        contract: Contract[Any],
        handler: Handler[T],
        producer: MessageProducer,
        dlq_topic: str,
        on_reject: RejectHook = dead_letter_only,
    ) -> None:
        self._settings = settings
        self._service = service
        self._on_reject = on_reject
        self._config = config
        self._contract = contract
        self._handler = handler
        self._producer = producer
        self._dlq_topic = dlq_topic
        self._pending: deque[_PendingBatch] = deque()
        self._stopping = asyncio.Event()
        # Why the loop waits for its topics (None: it does not): the broker lacks them, or lost their records.
        self._lost: str | None = None
        # The highest high watermark seen per partition: a log that ends before it was lost by the broker.
        self._highwater_seen: dict[TopicPartition, int] = {}
        # When the loop last committed or found nothing left to read: /health's measure of progress.
        self._progress_at = time.monotonic()
        self._guard = DeadLetterGuard(
            ratio=settings.dlq_guard_ratio,
            min_messages=settings.dlq_guard_min_messages,
            pause_s=settings.dlq_guard_pause_s,
        )
        self._consumer = self._new_consumer()
        self._joined = False
        # Several topics are a stream's priority lanes, highest first (shared/kafka/lanes.py).
        self._fetch = PrioritisedFetch(config.topics) if len(config.topics) > 1 else _fetch_any

    def _new_consumer(self) -> AIOKafkaConsumer:
        settings = self._settings
        return AIOKafkaConsumer(
            **client_options(settings),
            group_id=self._config.group_id,
            client_id=f"{self._service}",
            enable_auto_commit=False,
            # Tansu answers ListOffsets "latest" wrongly after batched produce; new groups start at the beginning.
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(settings.kafka_session_timeout_ms // 4, 250),
            max_poll_interval_ms=300_000,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            # How soon the loop learns that its topics are gone (see shared.kafka.metadata).
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )

    @property
    def group_id(self) -> str:
        return self._config.group_id

    async def start(self) -> None:
        """Join the consumer group (partitions are assigned on the first fetch); if the broker does not have
        the loop's topics (yet), :meth:`run` waits for them first."""
        # Progress (liveness) is measured from the moment the loop could first make any.
        self._progress_at = time.monotonic()
        missing = await self._producer.missing_topics(self._config.topics)
        if missing:
            self._lost = _no_topics(missing)
            return
        await self._join()

    async def _join(self) -> None:
        self._consumer.subscribe(list(self._config.topics), listener=_FlushOnRevoke(self))
        try:
            await self._consumer.start()
        except KafkaError:
            await self._consumer.stop()
            # A stopped consumer cannot start again; the next try starts a new one.
            self._consumer = self._new_consumer()
            raise
        self._joined = True

    async def _leave(self) -> None:
        if self._joined:
            self._joined = False
            await self._consumer.stop()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and leave the group."""
        self._stopping.set()

    async def check(self) -> None:
        """Readiness: the loop is not waiting for the broker to have its topics again."""
        if self._lost is not None:
            raise ConsumerNotReady(f"{self.group_id}: {self._lost}")

    async def alive(self) -> None:
        """Liveness: the loop committed, or had nothing left to read, within ``HERALD_KAFKA_CONSUMER_STALL_S``."""
        stalled_s = time.monotonic() - self._progress_at
        if stalled_s > self._settings.kafka_consumer_stall_s:
            cause = f": {self._lost}" if self._lost is not None else ""
            raise ConsumerStalled(f"{self.group_id}: no progress for {stalled_s:.0f} s{cause}")

    async def run(self) -> None:
        """Consume until :meth:`stop`; then drain, commit and leave the group."""
        try:
            while not self._stopping.is_set():
                if self._lost is not None:
                    await self._start_afresh()
                    continue
                await self._commit_finished()
                if len(self._pending) >= self._config.max_pending_batches:
                    await self._await_batch(self._pending[0])
                    continue
                fetched = await self._fetch(
                    self._consumer, timeout_ms=self._config.fetch_timeout_ms, max_records=self._config.max_batch
                )
                records = [record for batch in fetched.values() for record in batch]
                await self._notice_lost_state(served=fetched.keys())
                if self._lost is not None:
                    continue
                if not records:
                    if not self._pending:
                        self._progress_at = time.monotonic()
                    continue
                try:
                    result = await self._process(records)
                except _Stopped:
                    log.info("handing_back_batch", messages=len(records))
                    break
                futures = await self._producer.send_all(result.outputs)
                self._pending.append(_PendingBatch(result.outputs, futures, result.offsets))
                reason = self._guard.observe(
                    len(records),
                    result.dead_letter_reasons,
                    succeeded=result.succeeded_tenants,
                    failing=result.failing_tenants,
                )
                if reason is not None:
                    try:
                        await self._cool_down(reason)
                    except _Stopped:
                        break
            await self.drain()
        finally:
            await self._leave()

    async def drain(self) -> None:
        """Wait for every pending batch's acknowledgements and commit them, in order."""
        while self._pending and self._lost is None:
            await self._await_batch(self._pending[0])
            await self._commit_finished()

    async def _notice_lost_state(self, *, served: Collection[TopicPartition]) -> None:
        """Set ``_lost`` if the broker no longer has a topic of the loop, or a partition's log got shorter (it
        restarted empty: Tansu then answers fetches past the new end with no records and no error, where
        Kafka says OFFSET_OUT_OF_RANGE, so the loop would wait there for ever). A position past the end of a
        log the loop has just joined is read from the beginning, as Kafka's consumer does on OFFSET_OUT_OF_RANGE
        (``auto_offset_reset``): an offset of records the broker lost, which a member committed to the
        restarted broker in the moment before it noticed. Looked for only in the partitions the fetch brought
        nothing from (``served`` are the others): a partition stuck there never brings a record, and a busy
        loop is spared the check."""
        if await self._topics_missing():
            return
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            seen = self._highwater_seen.get(tp, highwater)
            if highwater < seen:
                self._lost = f"{tp.topic}[{tp.partition}] now ends at offset {highwater}, it ended at {seen}"
                return
            self._highwater_seen[tp] = highwater
            if tp in served:
                continue
            position = await self._consumer.position(tp)
            if position > highwater:
                log.warning(
                    "position_past_log_end",
                    partition=f"{tp.topic}:{tp.partition}",
                    position=position,
                    log_end=highwater,
                    action="reading the partition from the beginning",
                )
                await self._consumer.seek_to_beginning(tp)

    async def _topics_missing(self) -> bool:
        """Whether the broker lacks a topic of the loop (sets ``_lost``); asks it only when the metadata
        the consumer holds lacks one, which is also the case until that metadata first arrives."""
        if all(self._consumer.partitions_for_topic(topic) is not None for topic in self._config.topics):
            return False
        try:
            missing = await self._producer.missing_topics(self._config.topics)
        except KafkaError:
            # The broker does not answer: an outage, which the loop waits out with its batches.
            return False
        if missing:
            self._lost = _no_topics(missing)
        return bool(missing)

    async def _start_afresh(self) -> None:
        """The broker lost this loop's topics or records: drop the batches in flight, wait until the topics
        exist again and join the group anew, from the offsets the broker has (none: the beginning)."""
        abandoned = list(self._pending)
        self._pending.clear()
        self._highwater_seen.clear()
        for batch in abandoned:
            for future in batch.futures:
                # Nobody waits for these any more; reading their outcome keeps asyncio from logging each failure.
                future.add_done_callback(_outcome_ignored)
        log.error(
            "consumer_topics_unavailable",
            group=self.group_id,
            reason=self._lost,
            abandoned_batches=len(abandoned),
            action="waiting for the topics (the topics job creates them), then joining the group anew",
        )
        metrics.CONSUMER_TOPICS_LOST.inc()
        await self._leave()
        if not await self._wait_for_topics():
            return
        self._consumer = self._new_consumer()
        try:
            await self._join()
        except KafkaError as error:
            self._lost = f"could not join the group: {error!r}"
            await self._rest(self._config.backoff_max)
            return
        self._lost = None
        log.info("consumer_joined_anew", group=self.group_id)

    async def _wait_for_topics(self) -> bool:
        """Wait until the broker has every topic of the loop; False if the loop is stopped first."""
        reminded = time.monotonic()
        while not self._stopping.is_set():
            try:
                missing = await self._producer.missing_topics(self._config.topics)
            except KafkaError as error:
                missing = {f"(the broker does not answer: {error!r})"}
            if not missing:
                return True
            if time.monotonic() - reminded >= TOPICS_REMINDER_S:
                reminded = time.monotonic()
                log.error("topics_still_missing", group=self.group_id, missing=sorted(missing))
            # Polling the broker for the topics, which nothing announces.
            await self._rest(TOPICS_POLL_S)
        return False

    async def _rest(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the loop is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _process(self, records: Sequence[Any]) -> BatchResult:
        started = time.perf_counter()
        topic = records[0].topic
        metrics.MESSAGES_CONSUMED.labels(topic=topic).inc(len(records))
        metrics.BATCH_SIZE.observe(len(records))
        decoded: list[Consumed[T]] = []
        outputs: list[Output] = []
        for record in records:
            raw = record.value or b""
            headers = tuple(record.headers or ())
            try:
                value = self._contract.decode(raw)
            except UndecodableMessage as error:
                undecodable: Consumed[object] = Consumed(
                    record.topic, record.partition, record.offset, record.key, None, raw, headers
                )
                outputs.append(Reject(undecodable, DeadLetterReason.UNDECODABLE, str(error)))
                continue
            decoded.append(Consumed(record.topic, record.partition, record.offset, record.key, value, raw, headers))
        if decoded:
            # Each message comes with its CONSUMER span's traceparent: what is produced from it continues from there.
            with tracing.processing(decoded, self._config.group_id) as traced:
                handled = await self._handle_isolating(traced.messages)
                for output in handled:
                    if isinstance(output, Reject):
                        traced.failed(output.message, output.reason.value)
            outputs.extend(handled)
        result = BatchResult()
        result.track([Consumed(r.topic, r.partition, r.offset, None, None, b"") for r in records])
        result.outputs = [self._dead_letter(out) if isinstance(out, Reject) else out for out in outputs]
        result.dead_letter_reasons = [out.reason.value for out in outputs if isinstance(out, Reject)]
        result.succeeded_tenants, result.failing_tenants = _tenants_by_fate(records, outputs)
        metrics.BATCH_SECONDS.labels(topic=topic).observe(time.perf_counter() - started)
        return result

    async def _handle_isolating(self, batch: Sequence[Consumed[T]]) -> list[Output]:
        attempt = 0
        while True:
            try:
                outputs = list(await self._handler(batch))
                self._producer.check_sizes(output for output in outputs if isinstance(output, Produce))
                return outputs
            except Exception as error:
                if is_transient(error):
                    await self._wait_out(error, attempt)
                    attempt += 1
                    continue
                if len(batch) == 1:
                    message = batch[0]
                    if isinstance(error, RecordTooLarge):
                        return list(self._on_reject(message, DeadLetterReason.MESSAGE_TOO_LARGE, str(error)))
                    log.exception(
                        "message_failed", topic=message.topic, partition=message.partition, offset=message.offset
                    )
                    return list(self._on_reject(message, DeadLetterReason.PROCESSING_ERROR, repr(error)))
                log.warning("batch_failed_isolating", messages=len(batch), error=repr(error))
                # Halves, not one message at a time: a poison message among 500 costs about 18 handler
                # calls (each may do a batch's lookups), and the others keep their batching.
                middle = len(batch) // 2
                return [
                    *await self._handle_isolating(batch[:middle]),
                    *await self._handle_isolating(batch[middle:]),
                ]

    async def _wait_out(self, error: BaseException, attempt: int) -> None:
        """Pause while a dependency recovers, longer after each failed attempt."""
        delay = min(self._config.backoff_max, self._config.backoff_initial * 2**attempt)
        metrics.TRANSIENT_FAILURES.labels(error=type(error).__name__).inc()
        log.warning("dependency_failed_pausing", error=repr(error), retry_in_s=round(delay, 2))
        await self._pause(delay)

    async def _cool_down(self, reason: str) -> None:
        """The dead-letter guard tripped: pause so an environmental failure does not drain the stream."""
        # Commit what is done first: a crash during the pause must not dead-letter those messages twice.
        await self.drain()
        log.error("dead_letter_rate_pausing", reason=reason, pause_s=self._guard.pause_s)
        metrics.CONSUMER_PAUSES.labels(reason=reason).inc()
        metrics.CONSUMER_PAUSED.labels(reason=reason).set(1)
        try:
            await self._pause(self._guard.pause_s)
        finally:
            metrics.CONSUMER_PAUSED.labels(reason=reason).set(0)
        log.info("dead_letter_rate_resuming", reason=reason)

    async def _pause(self, seconds: float) -> None:
        """Pause every partition and keep polling (so the group keeps us) for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stopping.is_set():
                raise _Stopped
            self._consumer.pause(*self._consumer.assignment())
            fetched = await self._consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
            for tp, records in fetched.items():
                # Partitions assigned by a rebalance meanwhile are not paused: give their records back.
                self._consumer.seek(tp, records[0].offset)
        self._consumer.resume(*self._consumer.assignment())

    async def _await_batch(self, batch: _PendingBatch) -> None:
        """Wait for a batch's acknowledgements, producing it again while the broker fails."""
        attempt = 0
        while True:
            results = await asyncio.gather(*batch.futures, return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if not failed or await self._topics_missing():
                return
            await self._wait_out(failed[0], attempt)
            attempt += 1
            # Records may now be in the topic twice; every consumer downstream is idempotent.
            batch.futures = await self._producer.send_all(batch.outputs)

    async def _commit_finished(self) -> None:
        if self._lost is not None:
            # Offsets of records the broker no longer has would skip that many of the topic's new ones.
            return
        offsets: dict[tuple[str, int], int] = {}
        while self._pending and self._pending[0].done():
            batch = self._pending.popleft()
            if any(f.exception() for f in batch.futures):
                self._pending.appendleft(batch)
                break
            offsets.update(batch.offsets)
        if not offsets:
            return
        assigned = self._consumer.assignment()
        commit = {
            TopicPartition(topic, partition): offset
            for (topic, partition), offset in offsets.items()
            if TopicPartition(topic, partition) in assigned
        }
        try:
            await asyncio.wait_for(self._consumer.commit(commit), COMMIT_TIMEOUT_S)
        except (CommitFailedError, IllegalStateError, KafkaError, TimeoutError) as error:
            # The partitions moved to another member, which will process these messages again; or the broker
            # lost the topic (the next fetch notices).
            metrics.COMMIT_FAILURES.inc()
            log.warning("commit_failed", error=repr(error))
            return
        self._progress_at = time.monotonic()
        for tp, offset in commit.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(highwater - offset)

    def _dead_letter(self, reject: Reject) -> Produce:
        message = reject.message
        metrics.DEAD_LETTERS.labels(topic=message.topic, reason=reject.reason.value).inc()
        tenant = reject.tenant_id or _header_text(message, TENANT)
        log.warning(
            "dead_letter",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reject.reason.value,
            detail=reject.detail,
            notification_id=reject.notification_id,
        )
        record = DEAD_LETTER.encode(
            {
                "original_topic": message.topic,
                "original_partition": message.partition,
                "original_offset": message.offset,
                "original_key": message.key,
                "original_payload": message.raw,
                "reason_category": reject.reason.value,
                "reason": reject.detail,
                "service": self._service,
                "failed_at": datetime.now(UTC),
                "tenant_id": tenant,
                "notification_id": reject.notification_id,
                # Kafka allows a header without a value; Avro bytes do not.
                "original_headers": {k: v or b"" for k, v in message.headers},
            }
        )
        kept = [(k, v) for k, v in message.headers if k in (TRACEPARENT, TENANT)]
        headers = (*kept, (KIND, b"dead_letter"))
        return Produce(self._dlq_topic, record, key=message.key, headers=headers)


def _tenants_by_fate(records: Sequence[Any], outputs: Sequence[Output]) -> tuple[set[str], set[str]]:
    """The tenants (from the records' headers) with a message that went through, and those with a
    message dead-lettered for an environmental reason, for the dead-letter guard."""
    failed_at: dict[tuple[str, int, int], str | None] = {
        (out.message.topic, out.message.partition, out.message.offset): out.tenant_id
        or _header_text(out.message, TENANT)
        for out in outputs
        if isinstance(out, Reject) and out.reason in ENVIRONMENTAL_REASONS
    }
    succeeded: set[str] = set()
    for record in records:
        if (record.topic, record.partition, record.offset) not in failed_at:
            tenant = next((value for name, value in record.headers or () if name == TENANT), None)
            if tenant is not None:
                succeeded.add(tenant.decode(errors="replace"))
    return succeeded, {tenant for tenant in failed_at.values() if tenant is not None}


def _no_topics(missing: set[str]) -> str:
    return f"the broker has no topic {', '.join(sorted(missing))}"


def _outcome_ignored(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def _header_text(message: Consumed[Any], name: str) -> str | None:
    value = message.header(name)
    return value.decode(errors="replace") if value is not None else None


async def _fetch_any(
    consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int
) -> dict[TopicPartition, list[ConsumerRecord]]:
    fetched: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
        timeout_ms=timeout_ms, max_records=max_records
    )
    return fetched


def service_consumer(
    settings: HeraldSettings,
    *,
    service: str,
    topics: Sequence[str],
    contract: Contract[Any],
    handler: Handler[T],
    producer: MessageProducer,
    on_reject: RejectHook = dead_letter_only,
    **tuning: Any,
) -> ConsumerLoop[T]:
    """A service's loop over one topic, or over a stream's priority lanes (``topics``, highest first): its
    own consumer group, dead letters to the DLQ topic (and ``on_reject``'s other outputs for a message the
    handler failed on)."""
    named = Topics(settings.topic_prefix)
    return ConsumerLoop(
        settings=settings,
        service=service,
        config=ConsumerConfig(group_id=named.group(service), topics=topics, **tuning),
        contract=contract,
        handler=handler,
        producer=producer,
        dlq_topic=named.dlq,
        on_reject=on_reject,
    )
