"""A consumer loop over a stream's priority lanes, on the broker: high records produced behind a low backlog
are handled before the backlog, and a busy high lane does not starve the low one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from shared.config import HeraldSettings
from shared.kafka.consumer import ConsumerConfig, ConsumerLoop
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Consumed, Output
from shared.messages import STATUS_EVENT, StatusEvent
from shared.topics import Topics
from tests.factories import status_event
from tests.kafka_helpers import create_topics, produce_raw

pytestmark = pytest.mark.integration

BATCH = 50


def event(lane: str, n: int) -> bytes:
    """A record of ``lane``: its notification id names the lane."""
    return STATUS_EVENT.encode(status_event(f"{lane}-{n}", "sent", datetime.now(UTC)))


class Handled:
    """The handler: records the lane of every message, in the order handled; done once ``expected`` were."""

    def __init__(self, expected: int) -> None:
        self.lanes: list[str] = []
        self.expected = expected
        self.done = asyncio.Event()

    async def __call__(self, batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        self.lanes.extend(message.value["notification_id"].split("-")[0] for message in batch)
        if len(self.lanes) >= self.expected:
            self.done.set()
        return []


async def consume_lanes(settings: HeraldSettings, backlog: dict[str, int]) -> list[str]:
    """Produce ``backlog`` (lane -> records) to the routable lanes, lowest lane first, then consume them all
    with one loop; the lanes in the order handled."""
    topics = Topics(settings.topic_prefix)
    lanes = topics.lanes("routable")
    await create_topics(settings.kafka_bootstrap_servers, lanes, partitions=2)
    for lane, topic in reversed(list(zip(("high", "normal", "low"), lanes, strict=True))):
        await produce_raw(
            settings.kafka_bootstrap_servers, topic, [event(lane, n) for n in range(backlog.get(lane, 0))]
        )
    handled = Handled(sum(backlog.values()))
    producer = MessageProducer(settings, client_id="lanes-test")
    await producer.start()
    loop = ConsumerLoop(
        settings=settings,
        service="test",
        config=ConsumerConfig(group_id=f"{settings.topic_prefix}.lanes", topics=lanes, max_batch=BATCH),
        contract=STATUS_EVENT,
        handler=handled,
        producer=producer,
        dlq_topic=topics.dlq,
    )
    await loop.start()
    running = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(handled.done.wait(), 60)
    finally:
        loop.stop()
        await asyncio.wait_for(running, 30)
        await producer.stop()
    return handled.lanes


async def test_high_records_behind_a_low_backlog_are_handled_first(settings: HeraldSettings) -> None:
    handled = await consume_lanes(settings, {"low": 2000, "high": 20})
    last_high = max(index for index, lane in enumerate(handled) if lane == "high")
    # Within the first batches (one low batch may already be in hand when the high ones are fetched),
    # not after the 2,000 low ones.
    assert last_high < 4 * BATCH, f"the last high record was handled {last_high}th"
    assert handled.count("low") == 2000


async def test_a_busy_high_lane_leaves_each_lower_lane_its_share(settings: HeraldSettings) -> None:
    handled = await consume_lanes(settings, {"high": 2000, "normal": 200, "low": 200})
    last_high = max(index for index, lane in enumerate(handled) if lane == "high")
    before_last_high = handled[:last_high]
    # One batch in eight goes to each lower lane first: both moved while the high lane was still busy.
    assert before_last_high.count("low") >= BATCH
    assert before_last_high.count("normal") >= BATCH
