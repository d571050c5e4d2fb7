"""The part of every channel sender that is not about the channel.

For each batch of deliveries: skip the ones already delivered (a redelivery after a crash), send the
rest through the channel's provider with bounded concurrency, remember what was delivered, and turn
each outcome into its records: ``sent`` status; a delayed retry with backoff; or the DLQ with a
``failed`` status once the failure is permanent or attempts are exhausted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar, cast

import structlog
from redis.asyncio import Redis

from shared import status
from shared.batching import GroupWriter
from shared.codec import Contract
from shared.delivery import Delivered, Failed, Outcome, Retry, RetryPolicies
from shared.errors import DeadLetterReason, is_transient
from shared.kafka.handlers import bind_context
from shared.kafka.records import TRACEPARENT, Consumed, Output, Produce, headers_for, seconds_since_accepted
from shared.messages import DELAYED_MESSAGE
from shared.observability import metrics
from shared.observability.tracing import provider_call
from shared.providers.base import Provider
from shared.status_events import StatusReporter

log = structlog.get_logger(__name__)

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any])
JOB_NAMESPACE = uuid.UUID("c7d4b1a2-5e6f-4a3b-8c9d-0e1f2a3b4c5d")
# How long a delivered id is remembered; redeliveries come within minutes, a week is generous.
DELIVERED_TTL_S = 7 * 24 * 3600


class DeliveryLedger:
    """Which delivery ids were already handed to a provider (Redis, a batch per round trip)."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._writer = GroupWriter(self.record)

    async def delivered(self, delivery_ids: Sequence[str]) -> set[str]:
        """The ids among ``delivery_ids`` already delivered."""
        if not delivery_ids:
            return set()
        values = await self._redis.mget([f"{self._prefix}:{i}" for i in delivery_ids])
        return {i for i, value in zip(delivery_ids, values, strict=True) if value is not None}

    async def remember(self, delivery_id: str) -> None:
        """Record one delivery as soon as its provider accepted it, sharing the Redis round trip with
        the deliveries that finished meanwhile. Done per delivery, not once per batch, so a crash
        mid-batch re-sends at most what was accepted in the last round trip, not the whole batch."""
        await self._writer.submit(delivery_id)

    async def record(self, delivery_ids: Sequence[str]) -> None:
        """Remember delivered ids. A failure here is logged, not raised: the mail is already out, and
        raising would retry the batch and send it again; the cost is a possible duplicate later."""
        if not delivery_ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for delivery_id in delivery_ids:
                    pipe.set(f"{self._prefix}:{delivery_id}", b"1", ex=DELIVERED_TTL_S)
                await pipe.execute()
        except Exception as error:
            log.warning("delivery_ledger_write_failed", error=repr(error), deliveries=len(delivery_ids))


class DeliveryHandler(Generic[DeliveryT]):
    """The consumer loop's handler for one channel's sender."""

    def __init__(
        self,
        *,
        channel: str,
        provider: Provider[DeliveryT],
        contract: Contract[DeliveryT],
        ledger: DeliveryLedger,
        reporter: StatusReporter,
        policies: RetryPolicies,
        delay_topic: str,
        concurrency: int,
    ) -> None:
        self._channel = channel
        self._provider = provider
        self._contract = contract
        self._ledger = ledger
        self._reporter = reporter
        self._policies = policies
        self._delay_topic = delay_topic
        self._gate = asyncio.Semaphore(concurrency)

    async def __call__(self, batch: Sequence[Consumed[DeliveryT]]) -> list[Output]:
        done_before = await self._ledger.delivered([m.value["delivery_id"] for m in batch])
        # The ledger only knows earlier batches, and one batch can hold a delivery twice: a backlog re-read
        # after a crash holds an attempt and its retry, both unsent. Send its latest attempt only.
        latest: dict[str, Consumed[DeliveryT]] = {}
        for message in batch:
            delivery_id = message.value["delivery_id"]
            kept = latest.get(delivery_id)
            if delivery_id not in done_before and (kept is None or message.value["attempt"] >= kept.value["attempt"]):
                latest[delivery_id] = message
        to_send = list(latest.values())
        outcomes = dict(zip((id(m) for m in to_send), await asyncio.gather(*map(self._send, to_send)), strict=True))
        outputs: list[Output] = []
        for message in batch:
            if latest.get(message.value["delivery_id"], message) is not message:
                continue  # a superseded copy: the attempt sent for it reports
            # An already-delivered redelivery reports "sent" again: the event id makes that idempotent.
            outcome = outcomes.get(id(message), Delivered(self._provider.name, "already delivered"))
            outputs.extend(self._records_for(message, outcome))
        return outputs

    async def _send(self, message: Consumed[DeliveryT]) -> Outcome:
        async with self._gate:
            bind_context(message)
            started = time.perf_counter()
            with provider_call(self._channel, self._provider.name, message.header(TRACEPARENT)) as call:
                try:
                    outcome = await self._provider.send(message.value)
                except Exception as error:
                    # Confined to this message: raising would retry the batch and mail its others again. A
                    # dependency that is away (the rate limiter's Redis, say) is retried later, not given up on.
                    log.exception("provider_raised")
                    if is_transient(error):
                        outcome = Retry(self._provider.name, repr(error), reason="dependency_unavailable")
                    else:
                        outcome = Failed(self._provider.name, repr(error), DeadLetterReason.PROCESSING_ERROR)
                call.record(outcome)
        # Out of the gate: the next delivery may use the provider while this one is remembered.
        metrics.PROVIDER_SECONDS.labels(channel=self._channel, provider=outcome.provider).observe(
            time.perf_counter() - started
        )
        metrics.SEND_ATTEMPTS.labels(
            channel=self._channel, provider=outcome.provider, outcome=type(outcome).__name__.lower()
        ).inc()
        if isinstance(outcome, Delivered):
            await self._ledger.remember(message.value["delivery_id"])
            if (waited := seconds_since_accepted(message)) is not None:
                metrics.ACCEPTED_TO_SENT.labels(channel=self._channel).observe(waited)
        else:
            log.info("send_failed", outcome=type(outcome).__name__, detail=outcome.detail)
        return outcome

    def rejected(self, message: Consumed[DeliveryT], reason: DeadLetterReason, detail: str) -> list[Output]:
        """The consumer loop's reject hook: a delivery the handler itself failed on fails like any other."""
        return self._records_for(message, Failed(self._provider.name, detail, reason))

    def _records_for(self, message: Consumed[DeliveryT], outcome: Outcome) -> list[Output]:
        delivery = message.value
        attempt = int(delivery["attempt"])
        report = {
            "notification_id": delivery["notification_id"],
            "tenant_id": delivery["tenant_id"],
            "key": message.key,
            "traceparent": message.header(TRACEPARENT),
            "channel": self._channel,
            "attempt": attempt,
            "provider": outcome.provider,
            "delivery_id": delivery["delivery_id"],
            # Only push splits a notification (one delivery per device); every other channel has one.
            "deliveries": int(delivery.get("deliveries", 1)),
            # A registered webhook endpoint's event: its outcome goes to that endpoint's delivery log.
            "endpoint_id": delivery.get("endpoint_id"),
        }
        if isinstance(outcome, Delivered):
            return [self._reporter.event(status=status.SENT, detail=outcome.detail, **report)]
        if isinstance(outcome, Retry):
            delay = self._policies.for_message(delivery["metadata"]).delay_before(attempt + 1)
            if delay is not None:
                delay = max(delay, outcome.after_s or 0.0)
                return [
                    self._retry_later(message, attempt + 1, delay, outcome.reason),
                    self._reporter.event(
                        status=status.RETRYING, reason=outcome.reason, detail=outcome.detail, **report
                    ),
                ]
            failure = Failed(
                outcome.provider,
                f"gave up after {attempt} attempts: {outcome.detail}",
                DeadLetterReason.MAX_ATTEMPTS_EXCEEDED,
            )
        else:
            failure = outcome
        return self._reporter.give_up(
            message,
            status=status.FAILED,
            reason=failure.reason,
            detail=failure.detail,
            channel=self._channel,
            attempt=attempt,
            provider=failure.provider,
            delivery_id=report["delivery_id"],
            deliveries=report["deliveries"],
            endpoint_id=report["endpoint_id"],
        )

    def _retry_later(self, message: Consumed[DeliveryT], attempt: int, delay_s: float, reason: str) -> Produce:
        delivery = message.value
        again = self._contract.encode(cast(DeliveryT, {**delivery, "attempt": attempt}))
        job = DELAYED_MESSAGE.encode(
            {
                "job_id": str(uuid.uuid5(JOB_NAMESPACE, f"{delivery['delivery_id']}:{attempt}")),
                "tenant_id": delivery["tenant_id"],
                "notification_id": delivery["notification_id"],
                "due_at": datetime.now(UTC) + timedelta(seconds=delay_s),
                # Back to the lane it came from: a retry keeps its priority.
                "target_topic": message.topic,
                "key": message.key,
                "payload": again,
                "headers": dict(message.headers),
                "reason": reason,
                "recurring": False,
            }
        )
        headers = headers_for(delivery["tenant_id"], "delayed", message.header(TRACEPARENT))
        return Produce(self._delay_topic, job, key=message.key, headers=headers)
