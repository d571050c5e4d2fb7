"""Running bulk replays: each batch of matching dead letters sent again, with its progress recorded."""

from __future__ import annotations

import asyncio

import structlog

from shared.background import repeat
from shared.kafka.producer import MessageProducer
from shared.requeue import NotRequeueable, Requeue, requeue
from shared.status_events import StatusReporter
from shared.storage.dead_letters import DeadLetterRepository, OriginalMessage
from shared.storage.replays import Replay, ReplayStore
from shared.topics import Topics

log = structlog.get_logger(__name__)


class Replayer:
    """Claims replays one at a time (any replica may run it; a stalled one is taken over) and runs them."""

    def __init__(
        self,
        dead_letters: DeadLetterRepository,
        replays: ReplayStore,
        producer: MessageProducer,
        topics: Topics,
        reporter: StatusReporter,
        *,
        batch_size: int = 200,
        idle_s: float = 1.0,
        stale_after_s: float = 60.0,
    ) -> None:
        self._dead_letters = dead_letters
        self._replays = replays
        self._producer = producer
        self._topics = topics
        self._reporter = reporter
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._stale_after_s = stale_after_s

    async def run(self, stopping: asyncio.Event) -> None:
        """Run replays as they are asked for until ``stopping`` is set; a dependency failure is waited out."""

        async def step() -> float | None:
            replay = await self._replays.claim(self._stale_after_s)
            if replay is None:
                return None
            await self.finish(replay, stopping)
            return 0

        await repeat(step, stopping, idle_s=self._idle_s, name="replay")

    async def finish(self, replay: Replay, stopping: asyncio.Event | None = None) -> None:
        """Send every matching dead letter again, batch by batch, counting what was sent and skipped."""
        while stopping is None or not stopping.is_set():
            skipped = 0

            async def send(originals: list[OriginalMessage]) -> None:
                nonlocal skipped
                again: list[Requeue] = []
                for original in originals:
                    try:
                        again.append(requeue(original, self._topics, self._reporter))
                    except NotRequeueable:
                        # Marked all the same: a request that failed stays failed until it is resubmitted.
                        skipped += 1
                await self._producer.produce([r.status for r in again])
                await self._producer.produce([r.delivery for r in again])

            taken = await self._dead_letters.requeue_batch(replay.where, replay.up_to, self._batch_size, send)
            done = taken < self._batch_size
            await self._replays.advance(replay.id, taken - skipped, skipped, done=done)
            if done:
                log.info("replay_done", replay_id=replay.id)
                return
