"""Counting, per notification, what reached the provider's stand-in (or the dead-letter store) and what
went to the DLQ, and waiting until nothing is left in flight, so the counts are final.

A fault test is a :class:`Trial`: a steady load starts, the test injects its fault once a quarter of
the load arrived, and :meth:`Trial.settle` waits for the outcome and returns the :class:`Tally`::

    async with Trial(pipeline) as trial:
        pipeline.processes["router"].kill()
        await trial.start_again("router")
        tally = await trial.settle("kill -9 router")

By default the load is email straight to Kafka, counted at the SMTP sink (:class:`Mailbox`); a trial
of another channel names its load, where it arrives (:class:`Arrivals`) and its :class:`Route`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.local.mail_sink import DEFAULT_MAX_MESSAGES, MailSink, ReceivedMessage
from infra.standins.aws import MotoServer
from infra.standins.fcm import AcceptedMessage, FcmStandIn
from shared.errors import DeadLetterReason
from shared.messages import DEAD_LETTER, DeadLetter
from shared.topics import CHANNELS, Topics
from tests.e2e.conftest import NOTIFICATION_HEADER, Pipeline, eventually
from tests.fault.conftest import LOAD_S, RATE_PER_S, start_again
from tests.fault.load import Load, Sending, key_in
from tests.kafka_helpers import high_watermarks, wait_until_drained
from tests.scripted_http import Recorded, ScriptedServer

# How long a load goes on once a killed service is ready again.
LOAD_AFTER_RESTART_S = 2.0


@dataclass(frozen=True)
class Route:
    """The consumer groups a load's notifications pass, in pipeline order, and the status they end in.

    Drained in this order, no stage can be fed again by one upstream of it.
    """

    services: tuple[str, ...]
    status: str = "sent"

    def stages(self, topics: Topics) -> list[tuple[str, str]]:
        """Each consumer group and the topic it consumes."""
        consumed = {
            "ingest": topics.requests,
            "router": topics.routable,
            "retry": topics.delay,
            "status": topics.status,
            "dead-letters": topics.dlq,
        } | {f"sender-{channel}": topics.send(channel) for channel in CHANNELS}
        return [(service, consumed[service]) for service in self.services]


def delivery(channel: str) -> Route:
    """A notification's way to the provider of ``channel``."""
    return Route(("ingest", "router", "retry", f"sender-{channel}", "status"))


EMAIL = delivery("email")
# An invalid request's way: refused by ingest, stored by dead-letters, marked rejected.
DEAD_LETTERS = Route(("ingest", "dead-letters", "status"), status="rejected")


class Arrivals(Protocol):
    """Where a load's notifications arrive, read as ``{notification id: [each arrival]}``."""

    async def read(self) -> Mapping[str, Sequence[object]]:
        """Everything that arrived so far (at least since the test began), per notification id."""
        ...


class Mailbox:
    """The mails the SMTP sink received since the test began, per notification id.

    Each refresh reads only the mails new since the last one, so polling it stays cheap under load.
    """

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink
        self._read = 0
        self.mails: defaultdict[str, list[ReceivedMessage]] = defaultdict(list)

    def refresh(self) -> defaultdict[str, list[ReceivedMessage]]:
        """Read the mails that arrived since the last refresh; return every mail so far, per notification."""
        messages = self._sink.messages
        # The sink keeps only its newest DEFAULT_MAX_MESSAGES; past that a mail would go uncounted.
        assert len(messages) < DEFAULT_MAX_MESSAGES, "the mail sink dropped mails: lower the load"
        for message in messages[self._read :]:
            notification_id = message.header_as_sent(NOTIFICATION_HEADER)
            if notification_id is not None:
                self.mails[notification_id].append(message)
        self._read = len(messages)
        return self.mails

    async def read(self) -> Mapping[str, Sequence[ReceivedMessage]]:
        return self.refresh()

    def last_arrival(self) -> datetime:
        """When the latest mail arrived."""
        return max(mail.received_at for mails in self.refresh().values() for mail in mails)


class Collected:
    """Arrivals as ``fetch`` reads them (everything so far), grouped by the notification id ``id_of``
    finds in each (None: not one of a load's)."""

    def __init__(self, fetch: Callable[[], Awaitable[Iterable[Any]]], id_of: Callable[[Any], str | None]) -> None:
        self._fetch = fetch
        self._id_of = id_of

    async def read(self) -> Mapping[str, Sequence[object]]:
        grouped: defaultdict[str, list[object]] = defaultdict(list)
        for item in await self._fetch():
            if (notification_id := self._id_of(item)) is not None:
                grouped[notification_id].append(item)
        return grouped


def texts_at_sns(sns: MotoServer) -> Collected:
    """The text messages SNS (moto) sent, by the request their body names (:func:`tests.fault.load.sms_request`)."""
    return Collected(lambda: asyncio.to_thread(sns.sent_sms), lambda sms: key_in(sms["message"]))


def pushes_at_fcm(fcm: FcmStandIn) -> Collected:
    """The pushes the FCM stand-in accepted, by the request their body names (:func:`tests.fault.load.push_request`)."""

    async def accepted() -> list[AcceptedMessage]:
        return fcm.messages

    return Collected(accepted, lambda push: key_in(push.message.get("notification", {}).get("body", "")))


def webhooks_received(receiver: ScriptedServer) -> Collected:
    """The webhooks a local receiver got, by the notification id of their payload."""

    async def received() -> list[Recorded]:
        return list(receiver.requests)

    def notification_of(post: Recorded) -> str | None:
        # A request the killed sender was cut off in the middle of is no delivery: its successor sends it again.
        try:
            notification_id: str = json.loads(post.body)["notification_id"]
        except (ValueError, KeyError):
            return None
        return notification_id

    return Collected(received, notification_of)


def stored_dead_letters(database_url: str) -> Collected:
    """The dead letters of invalid requests the dead-letters service stored in Postgres, by notification id."""

    async def stored() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch(
                "SELECT id, notification_id FROM dead_letters WHERE reason = $1", DeadLetterReason.INVALID_PAYLOAD.value
            )
        finally:
            await connection.close()

    return Collected(stored, lambda row: row["notification_id"])


async def arrived_count(arrivals: Arrivals, ids: Iterable[str]) -> int:
    """How many of ``ids`` arrived at least once."""
    arrived = await arrivals.read()
    return sum(1 for i in ids if i in arrived)


class DeadLetters:
    """The dead letters the DLQ topic receives from now on, read by one consumer kept open for the test."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._bootstrap = pipeline.broker.bootstrap_servers
        self._topic = pipeline.topics.dlq
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        self.records: list[DeadLetter] = []

    async def start(self) -> None:
        """Start reading where the topic ends now."""
        # From fetch responses: Tansu's ListOffsets can be wrong.
        marks = await high_watermarks(self._bootstrap, self._topic)
        await self._consumer.start()
        self._consumer.assign([TopicPartition(self._topic, p) for p in marks])
        for partition, offset in marks.items():
            self._consumer.seek(TopicPartition(self._topic, partition), offset)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read(self) -> list[DeadLetter]:
        """Take in what arrived since the last read; return every dead letter so far."""
        fetched = await self._consumer.getmany(timeout_ms=50)
        self.records.extend(DEAD_LETTER.decode(r.value) for batch in fetched.values() for r in batch)
        return self.records

    async def read_all(self, timeout: float = 30.0) -> list[DeadLetter]:
        """Every dead letter up to where the topic ends now."""
        target = await high_watermarks(self._bootstrap, self._topic)
        deadline = time.monotonic() + timeout
        for partition, offset in target.items():
            while await self._consumer.position(TopicPartition(self._topic, partition)) < offset:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self._topic}: could not read up to offset {offset} of {partition}")
                await self.read()
        return self.records

    def notification_ids(self, reason: str) -> set[str]:
        """The notifications dead-lettered so far for ``reason``."""
        return {d["notification_id"] for d in self.records if d["reason_category"] == reason and d["notification_id"]}


@dataclass(frozen=True)
class Tally:
    """What a fault test sent and what became of it, per notification."""

    what: str
    sent: int
    delivered: int
    duplicated: int
    lost: int
    dead_lettered: int

    @classmethod
    def count(
        cls,
        what: str,
        ids: Collection[str],
        arrived: Mapping[str, Sequence[object]],
        dead_lettered: Collection[str] = frozenset(),
    ) -> Tally:
        """Delivered: arrived at least once; duplicated: more than once; lost: neither arrived nor dead-lettered."""
        delivered = {i for i in ids if i in arrived}
        dead = {i for i in ids if i in dead_lettered}
        return cls(
            what,
            sent=len(ids),
            delivered=len(delivered),
            duplicated=sum(1 for i in delivered if len(arrived[i]) > 1),
            lost=len(ids) - len(delivered | dead),
            dead_lettered=len(dead),
        )

    def __str__(self) -> str:
        return (
            f"{self.what}: sent {self.sent}, delivered {self.delivered}, duplicated {self.duplicated}, "
            f"lost {self.lost}, dead-lettered {self.dead_lettered}"
        )

    def report(self) -> None:
        """Print the one line the issue asks every fault test for (shown with ``-s`` or ``-rA``)."""
        print(f"\n{self}")


class Trial:
    """One fault test: a steady load, what arrives of it and the dead letters it causes, and waiting for
    the outcome.

    Entering starts the load and returns once a quarter of it arrived: every stage has work in hand
    then, the moment to inject the fault. By default the load is email to Kafka, arriving at the SMTP
    sink; ``sending``, ``arrivals`` and ``route`` choose another.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        duration_s: float = LOAD_S,
        rate_per_s: int = RATE_PER_S,
        deferred_per_s: int = 0,
        sending: Sending | None = None,
        arrivals: Arrivals | None = None,
        route: Route = EMAIL,
    ) -> None:
        self.pipeline = pipeline
        self.mailbox = Mailbox(pipeline.sink)
        self.arrivals: Arrivals = arrivals or self.mailbox
        self.route = route
        self.dead_letters = DeadLetters(pipeline)
        self.load = Load(
            pipeline, rate_per_s=rate_per_s, duration_s=duration_s, deferred_per_s=deferred_per_s, sending=sending
        )

    async def __aenter__(self) -> Self:
        await self.dead_letters.start()
        self.load.start()

        async def a_quarter_arrived() -> bool | None:
            self.load.raise_if_failed()
            return True if await arrived_count(self.arrivals, self.load.accepted) >= self.load.planned // 4 else None

        await eventually(a_quarter_arrived, 60, "a quarter of the load to arrive")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.load.stop()
        await self.dead_letters.stop()

    async def start_again(self, service: str) -> None:
        """Start a killed ``service`` again inside the load (see :meth:`during`), so the test sees it
        take over a flowing stream."""
        await self.during(start_again(self.pipeline, service))

    async def during(self, fault: Awaitable[None]) -> None:
        """Await ``fault`` (a restart, an outage) inside the load: it goes on until the fault is over,
        however long the shared cores make it, and for :data:`LOAD_AFTER_RESTART_S` after."""
        self.load.hold()
        try:
            await fault
        finally:
            self.load.release(LOAD_AFTER_RESTART_S)

    async def settle(self, what: str, *, dead_reason: str | None = None) -> Tally:
        """Wait until every accepted notification arrived (or was dead-lettered for ``dead_reason``), the
        status store agrees (the route's status, or ``failed`` for the dead-lettered) and nothing is left
        in flight; then count."""
        ids = await self.load.finished()
        assert len(ids) == self.load.issued, f"{len(ids)} of {self.load.issued} requests were acknowledged"
        await self._wait_for_outcomes(ids, dead_reason)
        dead = self.dead_letters.notification_ids(dead_reason) & set(ids) if dead_reason else set()
        both = dead & set(await self.arrivals.read())
        assert not both, f"{len(both)} notifications both arrived and were dead-lettered"
        await self._wait_for_statuses(ids, +Counter({self.route.status: len(ids) - len(dead), "failed": len(dead)}))
        await self._wait_until_quiet()
        await self.dead_letters.read_all()
        return Tally.count(what, ids, await self.arrivals.read(), dead)

    async def _wait_for_outcomes(self, ids: Collection[str], dead_reason: str | None, timeout: float = 90.0) -> None:
        async def missing() -> list[str]:
            if dead_reason:
                await self.dead_letters.read()
            dead = self.dead_letters.notification_ids(dead_reason) if dead_reason else set()
            arrived = await self.arrivals.read()
            return [i for i in ids if i not in arrived and i not in dead]

        async def settled() -> bool | None:
            return True if not await missing() else None

        try:
            await eventually(settled, timeout, "every notification to arrive")
        except AssertionError:
            lost = await missing()
            statuses = await status_counts(self.pipeline.database_url, lost)
            detail = f"{len(lost)} of {len(ids)} neither arrived nor dead-lettered; their statuses: {dict(statuses)}"
            raise AssertionError(detail) from None

    async def _wait_for_statuses(self, ids: Collection[str], expected: Counter[str], timeout: float = 60.0) -> None:
        last: Counter[str] = Counter()

        async def stored() -> bool | None:
            nonlocal last
            last = await status_counts(self.pipeline.database_url, ids)
            return True if last == expected else None

        try:
            await eventually(stored, timeout, "the statuses")
        except AssertionError:
            raise AssertionError(f"statuses {dict(last)}, expected {dict(expected)}") from None

    async def _wait_until_quiet(self, timeout: float = 60.0) -> None:
        """No delayed job left and every stage committed all its topic holds: nothing more can reach the
        provider, so the counts are final."""
        pipeline = self.pipeline
        connection = await asyncpg.connect(pipeline.database_url)
        try:

            async def no_jobs() -> bool | None:
                return True if await connection.fetchval("SELECT count(*) FROM delayed_jobs") == 0 else None

            await eventually(no_jobs, timeout, "the retry service's delayed jobs to run out")
        finally:
            await connection.close()
        for service, topic in self.route.stages(pipeline.topics):
            group = pipeline.topics.group(service)
            await wait_until_drained(pipeline.broker.bootstrap_servers, group, topic, timeout)


async def status_counts(database_url: str, ids: Collection[str]) -> Counter[str]:
    """How many of ``ids`` are in each status in the status store (``missing``: not stored at all)."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM notifications WHERE id = ANY($1::uuid[]) GROUP BY status", list(ids)
        )
    finally:
        await connection.close()
    counts = Counter({row["status"]: row["n"] for row in rows})
    missing = len(ids) - counts.total()
    if missing:
        counts["missing"] = missing
    return counts
