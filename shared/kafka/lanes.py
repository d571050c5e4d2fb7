"""Priority lanes on the consuming side: which lane the next batch is taken from.

A stream in lanes (``shared.topics.LANES``: high, normal, low) is one consumer group over the lanes'
topics. aiokafka fetches every assigned partition in the background; each batch is then taken from the
highest lane that has records buffered, so a one-time password produced behind 20,000 marketing emails
waits for a short batch or two, not for the backlog: a batch from a lower lane takes at most
:data:`LOWER_LANE_MAX_BATCH` records. So that a busy high lane cannot starve the others, one fetch in every
:data:`CYCLE` tries the normal lane first, and one the low lane: each lower lane gets at least that share of
the batches while it has records. When no lane has anything buffered, the loop waits for whichever records
come first.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

# Fetches per cycle: in each, every lane below the highest goes first once.
CYCLE = 8
# The most records a batch from a lane below the highest takes. A high record fetched meanwhile waits for
# the batch in hand (and the Kafka client fetches it only while the loop awaits): measured by make bench on
# 2 cores, 500-record low batches (170 ms at ingest, 420 ms at sender-email) held high records 2.2 s at p99,
# 100-record ones 0.5 to 1 s, with the low lane's throughput within run-to-run noise.
LOWER_LANE_MAX_BATCH = 100


class LaneOrder:
    """The order in which successive fetches try ``lanes`` lanes (0 the highest): by priority, except
    that the last ``lanes - 1`` turns of each cycle of ``cycle`` put one lower lane first."""

    def __init__(self, lanes: int, cycle: int = CYCLE) -> None:
        if not 1 <= lanes <= cycle:
            raise ValueError(f"{lanes} lanes do not fit a cycle of {cycle} fetches")
        self._lanes = lanes
        self._cycle = cycle
        self._turn = 0

    def next(self) -> list[int]:
        """The lanes in the order the next fetch tries them."""
        turn, self._turn = self._turn, (self._turn + 1) % self._cycle
        first = self._cycle - turn  # turn cycle-1 puts lane 1 first, turn cycle-2 lane 2, ...
        if turn == 0 or first >= self._lanes:
            return list(range(self._lanes))
        return [first, *(lane for lane in range(self._lanes) if lane != first)]


class PrioritisedFetch:
    """``getmany`` over a stream's lane topics (highest first) that prefers the higher lanes."""

    def __init__(self, lanes: Sequence[str], cycle: int = CYCLE) -> None:
        self._lanes = list(lanes)
        self._order = LaneOrder(len(self._lanes), cycle)

    async def __call__(
        self, consumer: AIOKafkaConsumer, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        assignment = consumer.assignment()
        lower = min(max_records, LOWER_LANE_MAX_BATCH)
        for lane in self._order.next():
            partitions = [tp for tp in assignment if tp.topic == self._lanes[lane]]
            if partitions:
                # Records already fetched in the background: no wait.
                fetched: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
                    *partitions, timeout_ms=0, max_records=max_records if lane == 0 else lower
                )
                if fetched:
                    return fetched
        # Whatever comes first, which may be from a lower lane: a batch that size.
        waited: dict[TopicPartition, list[ConsumerRecord]] = await consumer.getmany(
            timeout_ms=timeout_ms, max_records=lower
        )
        return waited
