"""The consumer loop and the producer when the broker does not have their topics: none is created by them,
the services say so (``/ready``, and ``/health`` once stalled), and a loop whose broker restarted empty
joins its group anew once the topics are back. The whole pipeline across a broker restart is
``tests/fault/test_broker_restart.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError

from infra.local.broker import Broker
from shared.config import HeraldSettings
from shared.kafka import producer as producer_module
from shared.kafka.consumer import ConsumerNotReady, ConsumerStalled
from shared.kafka.producer import MissingTopicsError
from shared.kafka.records import Consumed, Output, Produce
from shared.messages import STATUS_EVENT, StatusEvent
from shared.observability import metrics
from shared.topics import Topics
from tests.conftest import REDIS_URL
from tests.e2e.conftest import eventually
from tests.integration.test_consumer_loop import LoopUnderTest, event, forward_to, total
from tests.kafka_helpers import create_topics, produce_raw, read_topic, wait_until_drained

pytestmark = pytest.mark.integration


def without_topics(bootstrap: str, namespace: str, stall_s: float = 120.0) -> HeraldSettings:
    """Settings for ``namespace``, whose topics nobody created; /health fails after ``stall_s`` without progress."""
    return HeraldSettings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=namespace,
        kafka_idempotent_producer=False,
        kafka_session_timeout_ms=6000,
        kafka_consumer_stall_s=stall_s,
        redis_url=REDIS_URL,
        redis_namespace=namespace,
    )


async def topics_on(bootstrap: str, namespace: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(name for name in await admin.list_topics() if name.startswith(namespace))
    finally:
        await admin.close()


async def ignore(batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
    return []


async def complaint(check: Callable[[], Awaitable[None]]) -> str | None:
    """What a readiness or liveness check of the loop says is wrong, if anything."""
    try:
        await check()
    except (ConsumerNotReady, ConsumerStalled) as error:
        return str(error)
    return None


async def passes(check: Callable[[], Awaitable[None]]) -> bool | None:
    return True if await complaint(check) is None else None


async def test_no_herald_client_creates_a_topic_and_each_says_which_is_missing(
    broker: Broker, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The producer waits this long for a topic's metadata before giving up on its records.
    monkeypatch.setattr(producer_module, "REQUEST_TIMEOUT_MS", 1000)
    settings = without_topics(broker.bootstrap_servers, namespace)
    topics = Topics(namespace)
    loop = LoopUnderTest(settings, ignore)
    await loop.start()
    assert loop.loop is not None
    check = loop.loop.check
    try:
        reason = await eventually(lambda: complaint(check), 30, "the loop to say its topic is missing")
        futures = await loop.producer.send_all([Produce(topics.routable, b"r"), Produce(topics.status, b"s")])
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        with pytest.raises(MissingTopicsError) as missing:
            await loop.producer.check()
    finally:
        await loop.stop()

    assert loop.source in reason
    # The first record's topic is unknown; the next one fails with it, without a wait of its own.
    assert [type(outcome) for outcome in outcomes] == [UnknownTopicOrPartitionError] * 2
    assert all(name in str(missing.value) for name in topics.all())
    assert await topics_on(broker.bootstrap_servers, namespace) == []


@pytest.mark.slow
async def test_a_loop_whose_broker_restarted_empty_says_so_then_joins_anew_once_its_topics_are_back(
    restartable_broker: Broker, namespace: str
) -> None:
    bootstrap = restartable_broker.bootstrap_servers
    settings = without_topics(bootstrap, namespace, stall_s=1.0)
    loop = LoopUnderTest(settings, forward_to(f"{namespace}.out"))
    names = [loop.source, loop.dlq, f"{namespace}.out"]
    await create_topics(bootstrap, names)
    restarts_before = total(metrics.CONSUMER_TOPICS_LOST)
    await produce_raw(bootstrap, loop.source, [event(i) for i in range(20)])
    await loop.start()
    assert loop.loop is not None
    check, alive = loop.loop.check, loop.loop.alive
    try:
        await wait_until_drained(bootstrap, loop.group, loop.source)
        # From this thread: a child started from a worker thread dies with it.
        restartable_broker.kill()
        restartable_broker.start()

        reason = await eventually(lambda: complaint(check), 30, "the loop to say its topics are gone")
        stall = await eventually(lambda: complaint(alive), 30, "the loop to say it makes no progress")
        assert await topics_on(bootstrap, namespace) == []

        await create_topics(bootstrap, names)
        await produce_raw(bootstrap, loop.source, [event(i) for i in range(100, 105)])
        forwarded = await read_topic(bootstrap, f"{namespace}.out", 5)
        await check()
        await eventually(lambda: passes(alive), 30, "the loop to make progress again")
    finally:
        await loop.stop()

    assert loop.source in reason
    assert loop.source in stall
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in forwarded) == [f"e{i}" for i in range(100, 105)]
    assert total(metrics.CONSUMER_TOPICS_LOST) > restarts_before


async def test_a_committed_offset_past_the_end_of_the_log_is_read_from_the_beginning(
    broker: Broker, namespace: str
) -> None:
    """What a member commits to a broker that restarted empty, in the moment before it notices, is an offset
    past the end of the new log. Kafka answers a fetch there OFFSET_OUT_OF_RANGE and the consumer starts over
    from the earliest offset; Tansu answers nothing, so the loop waited there for ever (the broker-restart
    fault test once lost 95 of 100 notifications so, every service ready and live)."""
    bootstrap = broker.bootstrap_servers
    loop = LoopUnderTest(without_topics(bootstrap, namespace), forward_to(f"{namespace}.out"))
    await create_topics(bootstrap, [loop.source, loop.dlq, f"{namespace}.out"])
    await produce_raw(bootstrap, loop.source, [event(i) for i in range(8)])
    await commit(bootstrap, loop.group, {TopicPartition(loop.source, partition): 1000 for partition in range(4)})
    await loop.start()
    try:
        forwarded = await read_topic(bootstrap, f"{namespace}.out", 8)
    finally:
        await loop.stop()
    assert sorted(STATUS_EVENT.decode(r.value)["event_id"] for r in forwarded) == [f"e{i}" for i in range(8)]


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit ``offsets`` for ``group`` from outside it, as a member of an earlier generation would have."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()
