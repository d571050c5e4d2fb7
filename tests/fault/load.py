"""A steady load of email notifications produced straight to Kafka, as an upstream service would."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from shared.client import NotificationClient
from tests.e2e.conftest import Pipeline

# Requests are issued in small groups this often: steady at the scale of a batch, cheap for the test process.
TICK_S = 0.02


class Load:
    """``rate_per_s`` unique email requests a second for ``duration_s``, through :class:`NotificationClient`.

    ``accepted`` holds the id of each request Kafka acknowledged: what Herald promised to deliver.
    With ``deferred_per_s``, the SMTP sink answers that many mails a second with ``451``, so part of
    the stream is always on its way through the retry service when a fault lands.
    """

    def __init__(self, pipeline: Pipeline, *, rate_per_s: int, duration_s: float, deferred_per_s: int = 0) -> None:
        self.pipeline = pipeline
        self.total = int(rate_per_s * duration_s)
        self.rate_per_s = rate_per_s
        self.deferred_per_s = deferred_per_s
        self.accepted: list[str] = []
        self.issued = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start producing in the background."""
        self._task = asyncio.create_task(self._run())

    async def finished(self) -> list[str]:
        """Wait until every request was acknowledged; return their ids."""
        assert self._task is not None, "start() first"
        await self._task
        return self.accepted

    async def stop(self) -> None:
        """Stop producing, if it still does (a test that failed midway)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        pipeline = self.pipeline
        async with NotificationClient(
            pipeline.broker.bootstrap_servers,
            tenant_id="dev",
            topic_prefix=pipeline.namespace,
            idempotent_producer=False,
        ) as client:
            sends: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            next_deferral = started
            while self.issued < self.total:
                now = time.monotonic()
                if self.deferred_per_s and now >= next_deferral:
                    pipeline.sink.refuse_next(self.deferred_per_s)
                    next_deferral = now + 1.0
                due = min(self.total, int((now - started) * self.rate_per_s)) - self.issued
                for _ in range(due):
                    sends.add(asyncio.create_task(self._send(client)))
                self.issued += due
                # Pacing the load, not waiting for anything: the acknowledgements are awaited below.
                await asyncio.sleep(TICK_S)
            await asyncio.gather(*sends)
        if self.deferred_per_s:
            pipeline.sink.store.reset_refusals()

    async def _send(self, client: NotificationClient) -> None:
        notification_id = await client.send(
            channels=["email"],
            recipient={"email": f"fault-{uuid.uuid4().hex[:12]}@example.com"},
            content={"subject": "Steady load", "text": "One of many."},
        )
        self.accepted.append(notification_id)
