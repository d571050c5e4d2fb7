"""A steady load of notifications: straight to Kafka as an upstream service would, or over HTTP as a client
of the gateway would.

What a load sends is a :data:`Sending`: an async context manager, opened once for the load, yielding
the coroutine function that sends one notification and returns its id once it was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.requests import build_request, notification_id_for
from tests.e2e.conftest import Pipeline

# Requests are issued in small groups this often: steady at the scale of a batch, cheap for the test process.
TICK_S = 0.02
TENANT = "dev"
# How long a client of the gateway keeps retrying one request, and its first pause between tries.
HTTP_GIVE_UP_S = 90.0
HTTP_FIRST_PAUSE_S = 0.2
# How many clients of the gateway send at once: httpx's default pool size, so none waits for a connection.
HTTP_CLIENTS = 100

Send = Callable[[], Awaitable[str]]
Sending = Callable[[Pipeline], AbstractAsyncContextManager[Send]]
# The keyword arguments of one request (NotificationClient.send's, the HTTP body's fields).
Compose = Callable[[], dict[str, Any]]


def email_request() -> dict[str, Any]:
    """A unique email request; its mail carries its id (``X-Herald-Notification-Id``)."""
    return {
        "channels": ["email"],
        "recipient": {"email": f"fault-{uuid.uuid4().hex[:12]}@example.com"},
        "content": {"subject": "Steady load", "text": "One of many."},
    }


def keyed_text(key: str) -> str:
    """The text of a request keyed ``key``: what arrives at an SMS or push stand-in names its request."""
    return f"Steady load {key}"


def key_in(text: str) -> str | None:
    """The notification id that :func:`keyed_text` put in ``text`` (None: some other text)."""
    prefix = keyed_text("")
    return notification_id_for(TENANT, text[len(prefix) :]) if text.startswith(prefix) else None


def sms_request() -> dict[str, Any]:
    """A text message whose body names its request (SNS keeps the body, not Herald's ids)."""
    key = f"fault-sms-{uuid.uuid4().hex}"
    return {
        "channels": ["sms"],
        "recipient": {"phone": f"+1415555{uuid.uuid4().int % 10_000:04d}"},
        "content": {"text": keyed_text(key)},
        "idempotency_key": key,
    }


def webhook_request(url: str) -> Compose:
    """Webhooks POSTed to ``url`` (their payload carries the notification id)."""
    return lambda: {"channels": ["webhook"], "recipient": {"webhook_url": url}, "content": {"text": "Steady load"}}


def push_request(users: Sequence[str]) -> Compose:
    """Pushes to one of ``users`` (each with one device) in turn, whose body names its request."""
    turns = itertools.count()

    def compose() -> dict[str, Any]:
        key = f"fault-push-{uuid.uuid4().hex}"
        return {
            "channels": ["push"],
            "recipient": {"user_id": users[next(turns) % len(users)]},
            "content": {"subject": "Steady load", "text": keyed_text(key)},
            "idempotency_key": key,
        }

    return compose


def to_kafka(compose: Compose = email_request) -> Sending:
    """Requests produced with :class:`NotificationClient`, as an upstream service sends them."""

    @contextlib.asynccontextmanager
    async def sending(pipeline: Pipeline) -> AsyncIterator[Send]:
        async with pipeline.kafka_client(TENANT) as client:
            yield lambda: client.send(**compose())

    return sending


@contextlib.asynccontextmanager
async def invalid_to_kafka(pipeline: Pipeline) -> AsyncIterator[Send]:
    """Requests that can never be delivered (an invalid address), produced as they are: each is dead-lettered."""
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.broker.bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()

    async def send() -> str:
        request = build_request(
            tenant_id=TENANT,
            channels=["email"],
            recipient={"email": "not-an-address"},
            content={"subject": "Steady load", "text": "Never delivered."},
        )
        record = pipeline.request_record(request)
        await producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers))
        return request["notification_id"]

    try:
        yield send
    finally:
        await producer.stop()


class OverHttp:
    """Requests POSTed to the gateway by clients that retry, as real ones would: with the same
    ``Idempotency-Key`` after a connection error or a 409/429/5xx, pausing longer each time.

    A :data:`Sending`; ``retried`` counts what made a client try again (a status and the problem's
    detail, or the connection error).
    """

    def __init__(self, compose: Compose = email_request) -> None:
        self.compose = compose
        self.retried: Counter[str] = Counter()
        # A population of clients, each with one request in hand at a time; requests beyond wait their
        # turn. Unbounded, every request issued while the gateway was down waited in httpx's connection
        # pool, whose hand-out is quadratic in the waiting: the test process spun at 100 % and starved
        # its own readiness probe of the restarted gateway.
        self._clients = asyncio.Semaphore(HTTP_CLIENTS)

    def __call__(self, pipeline: Pipeline) -> AbstractAsyncContextManager[Send]:
        return self._sending(pipeline)

    @contextlib.asynccontextmanager
    async def _sending(self, pipeline: Pipeline) -> AsyncIterator[Send]:
        async with pipeline.client() as client:

            async def send() -> str:
                async with self._clients:
                    return await send_until_accepted()

            async def send_until_accepted() -> str:
                key, body = f"fault-http-{uuid.uuid4().hex}", self.compose()
                deadline, pause = time.monotonic() + HTTP_GIVE_UP_S, HTTP_FIRST_PAUSE_S
                while True:
                    try:
                        response = await client.post(
                            "/api/v1/notifications", json=body, headers={"Idempotency-Key": key}
                        )
                    except httpx.TransportError as error:
                        self.retried[type(error).__name__] += 1
                    else:
                        if response.status_code == 202:
                            notification_id: str = response.json()["id"]
                            return notification_id
                        if response.status_code not in (409, 429) and response.status_code < 500:
                            raise AssertionError(f"the gateway refused a request: {response.text}")
                        self.retried[f"{response.status_code} {response.json().get('detail')}"] += 1
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no 202 within {HTTP_GIVE_UP_S:g} s")
                    # A client's back-off, not a wait for a condition: the gateway tells nothing sooner.
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 2.0)

            yield send


class Load:
    """``rate_per_s`` unique requests a second for ``duration_s`` (or longer, see :meth:`hold`), sent
    by ``sending`` (email to Kafka by default).

    ``accepted`` holds the id of each request that was acknowledged (by Kafka, or a 202): what Herald
    promised to deliver. With ``deferred_per_s``, the SMTP sink answers that many mails a second with
    ``451``, so part of the stream is always on its way through the retry service when a fault lands.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        rate_per_s: int,
        duration_s: float,
        deferred_per_s: int = 0,
        sending: Sending | None = None,
    ) -> None:
        self.pipeline = pipeline
        # What the load sends if nothing asks it to keep going.
        self.planned = int(rate_per_s * duration_s)
        self.rate_per_s = rate_per_s
        self.duration_s = duration_s
        self.deferred_per_s = deferred_per_s
        self.sending = sending or to_kafka()
        self.accepted: list[str] = []
        self.issued = 0
        self._ends_at = 0.0
        self._held = False
        self._task: asyncio.Task[None] | None = None

    def hold(self) -> None:
        """Keep sending, past the planned duration if need be, until :meth:`release`."""
        self._held = True

    def release(self, after_s: float) -> None:
        """Send for ``after_s`` more (or to the end of the planned duration, if that is later), then stop."""
        self._held = False
        self._ends_at = max(self._ends_at, time.monotonic() + after_s)

    def start(self) -> None:
        """Start sending in the background."""
        self._task = asyncio.create_task(self._run())

    async def finished(self) -> list[str]:
        """Wait until every request was acknowledged; return their ids."""
        assert self._task is not None, "start() first"
        await self._task
        return self.accepted

    def raise_if_failed(self) -> None:
        """Raise what ended the load early, if anything did (a wait for its effects then says why)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()

    async def stop(self) -> None:
        """Stop sending, if it still does (a test that failed midway)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        pipeline = self.pipeline
        async with self.sending(pipeline) as send:
            sends: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            self._ends_at = max(self._ends_at, started + self.duration_s)
            next_deferral = started
            while (now := time.monotonic()) < self._ends_at or self._held:
                # One refusal at a time, spread over the second: a burst of them at once would look
                # like a provider failing and open the circuit, which is not the fault under test.
                if self.deferred_per_s and now >= next_deferral:
                    pipeline.sink.refuse_next(1)
                    next_deferral += 1.0 / self.deferred_per_s
                due = int((now - started) * self.rate_per_s) - self.issued
                for _ in range(due):
                    sends.add(asyncio.create_task(self._send(send)))
                self.issued += due
                # Pacing the load, not waiting for anything: the acknowledgements are awaited below.
                await asyncio.sleep(TICK_S)
            await asyncio.gather(*sends)
        if self.deferred_per_s:
            pipeline.sink.store.reset_refusals()

    async def _send(self, send: Send) -> None:
        self.accepted.append(await send())
