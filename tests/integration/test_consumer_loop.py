"""The shared consumer loop against a real broker: commit after acks, DLQ, isolation, backoff, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import Counter

from shared.config import HeraldSettings
from shared.errors import DeadLetterReason
from shared.kafka.consumer import ConsumerConfig, ConsumerLoop, ConsumerStalled
from shared.kafka.producer import MessageProducer
from shared.kafka.records import TENANT, Consumed, Handler, Output, Produce, Reject, RejectHook, dead_letter_only
from shared.messages import DEAD_LETTER, STATUS_EVENT, StatusEvent
from shared.observability import metrics
from shared.status_events import StatusReporter
from tests.e2e.conftest import eventually
from tests.kafka_helpers import committed, create_topics, high_watermarks, produce_raw, read_topic, wait_until_drained

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def loop_topics(settings: HeraldSettings) -> None:
    """The topics of :class:`LoopUnderTest`: consumed ``<ns>.in``, dead letters ``<ns>.dlq``, outputs ``<ns>.out``
    and ``<ns>.status``."""
    names = [f"{settings.topic_prefix}.{name}" for name in ("in", "dlq", "out", "status")]
    await create_topics(settings.kafka_bootstrap_servers, names)


def event(n: int, status: str = "sent") -> bytes:
    return STATUS_EVENT.encode(
        {
            "event_id": f"e{n}",
            "notification_id": f"n{n}",
            "tenant_id": "t",
            "status": status,
            "occurred_at": datetime.now(UTC),
            "service": "test",
            "channel": None,
            "attempt": None,
            "provider": None,
            "reason": None,
            "detail": None,
            "delivery_id": None,
            "deliveries": None,
        }
    )


class LoopUnderTest:
    """Runs a ConsumerLoop on ``<ns>.in`` with ``handler``; outputs go wherever the handler says."""

    def __init__(
        self,
        settings: HeraldSettings,
        handler: Handler[StatusEvent],
        on_reject: RejectHook = dead_letter_only,
        **config: int,
    ) -> None:
        self.settings = settings
        self.on_reject = on_reject
        self.source = f"{settings.topic_prefix}.in"
        self.dlq = f"{settings.topic_prefix}.dlq"
        self.group = f"{settings.topic_prefix}.group"
        self.handler = handler
        self.config = config
        self.loop: ConsumerLoop[StatusEvent] | None = None
        self.task: asyncio.Task[None] | None = None
        self.producer = MessageProducer(settings, client_id="test")

    async def start(self) -> None:
        await self.producer.start()
        self.loop = ConsumerLoop(
            settings=self.settings,
            service="test",
            config=ConsumerConfig(group_id=self.group, topics=[self.source], **self.config),
            contract=STATUS_EVENT,
            handler=self.handler,
            producer=self.producer,
            dlq_topic=self.dlq,
            on_reject=self.on_reject,
        )
        await self.loop.start()
        self.task = asyncio.create_task(self.loop.run())

    async def stop(self) -> None:
        assert self.loop is not None
        assert self.task is not None
        self.loop.stop()
        await asyncio.wait_for(self.task, 30)
        await self.producer.stop()


def forward_to(topic: str) -> Callable[[Sequence[Consumed[StatusEvent]]], Awaitable[list[Output]]]:
    async def handle(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        return [Produce(topic, message.raw, key=message.key) for message in batch]

    return handle


async def test_outputs_are_produced_and_offsets_committed(settings: HeraldSettings) -> None:
    out = f"{settings.topic_prefix}.out"
    loop = LoopUnderTest(settings, forward_to(out), max_batch=17)
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, [event(i) for i in range(100)])
    await loop.start()
    try:
        records = await read_topic(settings.kafka_bootstrap_servers, out, 100)
    finally:
        await loop.stop()
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in records) == sorted(f"e{i}" for i in range(100))
    assert await committed(settings.kafka_bootstrap_servers, loop.group, loop.source) == 100


async def test_undecodable_bytes_go_to_the_dlq_and_the_next_message_is_handled(settings: HeraldSettings) -> None:
    out = f"{settings.topic_prefix}.out"
    loop = LoopUnderTest(settings, forward_to(out))
    # One key: both land on one partition, garbage first.
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, [b"\x00garbage", event(1)], key=b"k")
    await loop.start()
    try:
        dead = await read_topic(settings.kafka_bootstrap_servers, loop.dlq, 1)
        handled = await read_topic(settings.kafka_bootstrap_servers, out, 1)
    finally:
        await loop.stop()
    letter = DEAD_LETTER.decode(dead[0].value)
    assert letter["reason_category"] == DeadLetterReason.UNDECODABLE
    assert letter["original_payload"] == b"\x00garbage"
    assert letter["original_topic"] == loop.source
    assert letter["original_offset"] == 0
    assert letter["original_partition"] == handled[0].partition
    assert STATUS_EVENT.decode(handled[0].value)["event_id"] == "e1"
    assert await committed(settings.kafka_bootstrap_servers, loop.group, loop.source) == 2


async def test_an_exception_is_isolated_to_the_message_that_causes_it(settings: HeraldSettings) -> None:
    out = f"{settings.topic_prefix}.out"
    forward = forward_to(out)

    async def choke_on_poison(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        if any(message.value["status"] == "poison" for message in batch):
            raise ValueError("cannot handle poison")
        return await forward(batch)

    loop = LoopUnderTest(settings, choke_on_poison)
    values = [event(0), event(1), event(2, status="poison"), event(3), event(4)]
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, values, key=b"k")
    await loop.start()
    try:
        dead = await read_topic(settings.kafka_bootstrap_servers, loop.dlq, 1)
        handled = await read_topic(settings.kafka_bootstrap_servers, out, 4)
    finally:
        await loop.stop()
    letter = DEAD_LETTER.decode(dead[0].value)
    assert letter["reason_category"] == DeadLetterReason.PROCESSING_ERROR
    assert "cannot handle poison" in letter["reason"]
    assert letter["original_offset"] == 2
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in handled) == ["e0", "e1", "e3", "e4"]


async def test_a_message_whose_output_kafka_would_refuse_goes_to_the_dlq_and_its_batch_flows(
    settings: HeraldSettings,
) -> None:
    """A handler output over Kafka's record limit (a huge rendered mail) once crashed the loop at
    produce time, outside the per-message isolation, and again after every restart."""
    out = f"{settings.topic_prefix}.out"
    status_topic = f"{settings.topic_prefix}.status"

    async def inflate_poison(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        return [
            Produce(out, b"x" * 2_000_000 if message.value["status"] == "poison" else message.raw, key=message.key)
            for message in batch
        ]

    loop = LoopUnderTest(settings, inflate_poison, on_reject=StatusReporter(status_topic, "test").failed, max_batch=50)
    values = [event(i, status="poison" if i == 7 else "sent") for i in range(20)]
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, values, key=b"k")
    await loop.start()
    try:
        dead = await read_topic(settings.kafka_bootstrap_servers, loop.dlq, 1)
        handled = await read_topic(settings.kafka_bootstrap_servers, out, 19)
        failed = await read_topic(settings.kafka_bootstrap_servers, status_topic, 1)
        await wait_until_drained(settings.kafka_bootstrap_servers, loop.group, loop.source)
    finally:
        await loop.stop()
    letter = DEAD_LETTER.decode(dead[0].value)
    assert (letter["reason_category"], letter["original_offset"]) == ("message_too_large", 7)
    assert "over the 1048576" in letter["reason"]
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in handled) == sorted(
        f"e{i}" for i in range(20) if i != 7
    )
    report = STATUS_EVENT.decode(failed[0].value)
    assert (report["notification_id"], report["status"], report["reason"]) == ("n7", "failed", "message_too_large")


async def test_rejected_messages_go_to_the_dlq_with_the_handlers_reason(settings: HeraldSettings) -> None:
    async def reject_all(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        return [
            Reject(m, DeadLetterReason.INVALID_PAYLOAD, "bad", tenant_id="acme", notification_id="n1") for m in batch
        ]

    loop = LoopUnderTest(settings, reject_all)
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, [event(1)])
    await loop.start()
    try:
        dead = await read_topic(settings.kafka_bootstrap_servers, loop.dlq, 1)
    finally:
        await loop.stop()
    letter = DEAD_LETTER.decode(dead[0].value)
    assert (letter["reason_category"], letter["reason"], letter["tenant_id"], letter["service"]) == (
        "invalid_payload",
        "bad",
        "acme",
        "test",
    )


async def test_a_dependency_failure_pauses_and_the_batch_is_retried(settings: HeraldSettings) -> None:
    out = f"{settings.topic_prefix}.out"
    forward = forward_to(out)
    failures_left = 3
    calls: list[int] = []

    async def flaky(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        nonlocal failures_left
        calls.append(len(batch))
        if failures_left:
            failures_left -= 1
            raise ConnectionRefusedError("database down")
        return await forward(batch)

    before = metrics.TRANSIENT_FAILURES.labels(error="ConnectionRefusedError")._value.get()
    loop = LoopUnderTest(settings, flaky)
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, [event(i) for i in range(10)], key=b"k")
    await loop.start()
    try:
        handled = await read_topic(settings.kafka_bootstrap_servers, out, 10)
    finally:
        await loop.stop()
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in handled) == sorted(f"e{i}" for i in range(10))
    assert metrics.TRANSIENT_FAILURES.labels(error="ConnectionRefusedError")._value.get() - before == 3
    # The failed batch was retried whole, never split up or sent to the DLQ.
    assert calls[:4] == [calls[0]] * 4


@pytest.mark.slow
async def test_stop_commits_what_was_done_and_a_new_member_continues(settings: HeraldSettings) -> None:
    out = f"{settings.topic_prefix}.out"
    forward = forward_to(out)
    first_batch_done = asyncio.Event()

    async def slow(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        outputs = await forward(batch)
        first_batch_done.set()
        await asyncio.sleep(0.01)
        return outputs

    count = 300
    await produce_raw(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.in", [event(i) for i in range(count)])
    first = LoopUnderTest(settings, slow, max_batch=10)
    await first.start()
    await asyncio.wait_for(first_batch_done.wait(), 30)
    await first.stop()
    done_by_first = await committed(settings.kafka_bootstrap_servers, first.group, first.source)
    assert 0 < done_by_first < count

    second = LoopUnderTest(settings, forward, max_batch=100)
    await second.start()
    try:
        records = await read_topic(settings.kafka_bootstrap_servers, out, count)
    finally:
        await second.stop()
    ids = [STATUS_EVENT.decode(r.value)["event_id"] for r in records]
    assert sorted(ids) == sorted(f"e{i}" for i in range(count)), "lost or duplicated across the hand-over"
    assert await committed(settings.kafka_bootstrap_servers, second.group, second.source) == count


# --- the dead-letter guard ---------------------------------------------------------------------


def guarded(settings: HeraldSettings, pause_s: float) -> HeraldSettings:
    """Settings whose guard judges windows of 10 messages and pauses ``pause_s``."""
    return settings.model_copy(
        update={"dlq_guard_min_messages": 10, "dlq_guard_ratio": 0.5, "dlq_guard_pause_s": pause_s}
    )


def total(counter: Counter) -> float:
    """The sum of a counter's values over every label."""
    return float(
        sum(sample.value for family in counter.collect() for sample in family.samples if sample.name.endswith("_total"))
    )


async def test_when_most_messages_fail_for_the_environment_the_loop_pauses_then_resumes(
    settings: HeraldSettings,
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    out = f"{settings.topic_prefix}.out"
    forward = forward_to(out)
    broken = True

    async def provider_client_misconfigured(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        if broken:
            raise RuntimeError("provider client misconfigured")
        return await forward(batch)

    pause_s = 4.0
    paused = metrics.CONSUMER_PAUSED.labels(reason="processing_error")
    pauses_before = metrics.CONSUMER_PAUSES.labels(reason="processing_error")._value.get()
    loop = LoopUnderTest(guarded(settings, pause_s), provider_client_misconfigured, max_batch=10)
    await produce_raw(bootstrap, loop.source, [event(i) for i in range(40)], key=b"k")
    await loop.start()
    try:
        await eventually(lambda: paused._value.get() == 1 or None, 30, "the guard to pause the loop")
        pause_seen = time.monotonic()
        broken = False
        # What went to the DLQ before the pause is committed: a crash now would not dead-letter it twice.
        dead = await committed(bootstrap, loop.group, loop.source)
        assert 10 <= dead < 40, "paused after about one window, not after draining the stream"
        handled = await read_topic(bootstrap, out, 40 - dead)
        resumed_after = time.monotonic() - pause_seen
    finally:
        await loop.stop()
    assert resumed_after >= pause_s - 0.5, "nothing was handled during the cool-down"
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in handled) == sorted(f"e{i}" for i in range(dead, 40))
    assert sum((await high_watermarks(bootstrap, loop.dlq)).values()) == dead
    assert paused._value.get() == 0
    assert metrics.CONSUMER_PAUSES.labels(reason="processing_error")._value.get() - pauses_before == 1


async def test_messages_rejected_for_what_they_are_never_pause_the_loop(settings: HeraldSettings) -> None:
    async def reject_all(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        return [Reject(m, DeadLetterReason.INVALID_PAYLOAD, "bad") for m in batch]

    pauses_before = total(metrics.CONSUMER_PAUSES)
    loop = LoopUnderTest(guarded(settings, 60.0), reject_all, max_batch=10)
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, [event(i) for i in range(40)], key=b"k")
    await loop.start()
    try:
        dead = await read_topic(settings.kafka_bootstrap_servers, loop.dlq, 40)
    finally:
        await loop.stop()
    assert len(dead) == 40
    assert total(metrics.CONSUMER_PAUSES) == pauses_before


async def test_failures_confined_to_one_tenant_never_pause_the_loop_for_the_others(settings: HeraldSettings) -> None:
    """An unexpected error only one tenant's messages raise, while another tenant's go through, is
    about that tenant's messages: they are dead-lettered, and the other tenant's are not held up."""
    out = f"{settings.topic_prefix}.out"
    forward = forward_to(out)

    async def chokes_on_one_tenants_content(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        if any(message.value["status"] == "poison" for message in batch):
            raise UnicodeEncodeError("ascii", "ü", 0, 1, "ordinal not in range(128)")
        return await forward(batch)

    pauses_before = total(metrics.CONSUMER_PAUSES)
    loop = LoopUnderTest(guarded(settings, 60.0), chokes_on_one_tenants_content, max_batch=10)
    # Tenant "bad" sends 60 at once, tenant "good" one in five, as a bulk request beside live traffic.
    tenants = ["good" if i % 5 == 0 else "bad" for i in range(75)]
    values = [event(i, status="sent" if tenant == "good" else "poison") for i, tenant in enumerate(tenants)]
    headers = [[(TENANT, tenant.encode())] for tenant in tenants]
    await produce_raw(settings.kafka_bootstrap_servers, loop.source, values, key=b"k", headers=headers)
    await loop.start()
    try:
        handled = await read_topic(settings.kafka_bootstrap_servers, out, 15)
        dead = await read_topic(settings.kafka_bootstrap_servers, loop.dlq, 60)
    finally:
        await loop.stop()
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in handled) == sorted(f"e{i}" for i in range(0, 75, 5))
    assert len(dead) == 60
    assert total(metrics.CONSUMER_PAUSES) == pauses_before


async def test_a_stop_during_the_cool_down_ends_the_loop_at_once_with_its_work_committed(
    settings: HeraldSettings,
) -> None:
    async def always_fails(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        raise RuntimeError("broken")

    bootstrap = settings.kafka_bootstrap_servers
    paused = metrics.CONSUMER_PAUSED.labels(reason="processing_error")
    loop = LoopUnderTest(guarded(settings, 120.0), always_fails, max_batch=10)
    await produce_raw(bootstrap, loop.source, [event(i) for i in range(30)], key=b"k")
    await loop.start()
    await eventually(lambda: paused._value.get() == 1 or None, 30, "the guard to pause the loop")
    started = time.monotonic()
    await loop.stop()
    assert time.monotonic() - started < 15, "the stop did not wait out the 120 s pause"
    assert paused._value.get() == 0
    dead = sum((await high_watermarks(bootstrap, loop.dlq)).values())
    assert 10 <= await committed(bootstrap, loop.group, loop.source) == dead < 30


async def test_a_hung_handler_fails_liveness_and_an_idle_loop_with_nothing_to_read_does_not(
    settings: HeraldSettings,
) -> None:
    quick = settings.model_copy(update={"kafka_consumer_stall_s": 1.0})
    released = asyncio.Event()
    handling = asyncio.Event()

    async def hangs(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        handling.set()
        await released.wait()
        return []

    idle = LoopUnderTest(quick, hangs)
    await idle.start()
    try:
        assert idle.loop is not None
        # Nothing to read for twice the stall time (the time passing is what is tested): caught up is
        # progress, so alive.
        await asyncio.sleep(2 * quick.kafka_consumer_stall_s)
        await idle.loop.alive()

        await produce_raw(settings.kafka_bootstrap_servers, idle.source, [event(1)])
        await asyncio.wait_for(handling.wait(), 30)

        async def stalled() -> str | None:
            assert idle.loop is not None
            try:
                await idle.loop.alive()
            except ConsumerStalled as error:
                return str(error)
            return None

        # A batch in hand and no progress: /health fails, so Kubernetes restarts the process.
        assert "no progress for" in await eventually(stalled, 10, "liveness to fail")
    finally:
        released.set()
        await idle.stop()
