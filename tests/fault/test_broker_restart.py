"""``kill -9`` of the broker under load, restarted on the same port: durable (Tansu's S3 storage, as
``make up`` runs it), and empty (its memory storage).

**Durable**: the broker keeps its topics, records, committed offsets and groups in a local S3 (moto)
and comes back on it. Every service that uses Kafka answers ``/ready`` with 503 while the broker is
away and 200 once it is back, reconnecting by itself (each keeps its process id), and every notification
the load got acknowledged is mailed exactly once (the fault suite's accounting).

**Empty**: Herald notices, says so, creates no topic behind the topics job's back, and comes back by
itself once the topics job has run again. What is asserted, in order:

* while the topics are gone, every service that uses Kafka answers ``/ready`` with 503, and every
  consumer also ``/health`` (it makes no progress) once ``HERALD_KAFKA_CONSUMER_STALL_S`` has passed;
* no client created a topic meanwhile (the broker would have made each with 4 partitions);
* the way back the README gives works: the topics job, which refuses while the broker holds records
  it accepted for the lost topics (Tansu 0.6 does, see ``tests/integration/test_tansu.py``), in which
  case the broker is restarted once more first; then every service is ready and live again without
  being restarted, the topics have the declared partitions, and new notifications are delivered;
* the services' logs hold a bounded number of commit-failure lines (not thousands a minute).

The notifications in flight are lost with the broker's memory, and so are those a client produced to
the restarted broker before it learned the topics were gone: neither is counted there.

Each test has a broker and a pipeline of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.local.broker import Broker
from infra.local.stack import WORKERS
from shared.client import NotificationClient
from shared.kafka.admin import AdminSettings, StrayRecordsError, create_topics
from shared.tls import default_client_context
from tests.e2e.conftest import Pipeline, eventually, running_pipeline
from tests.fault.accounting import Trial
from tests.fault.conftest import BROKER_DOWN_S, FAULT_SETTINGS, LIGHT_RATE_PER_S, outage

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]

STALL_S = 4
# Every service but the archiver (Postgres only) uses Kafka; all but the gateway consume it.
CONSUMERS = tuple(name for name in WORKERS if name != "archiver")
KAFKA_USERS = ("gateway", *CONSUMERS)
# aiokafka's "OffsetCommit failed ..." and the consumer loop's own "commit_failed".
COMMIT_FAILURE = re.compile(r"OffsetCommit failed|commit_failed")
# Per service over the whole test: a flood is hundreds a second, rate-limited logging a few a minute.
MAX_COMMIT_FAILURE_LINES = 20
PARTITIONS = 4
LOAD_PER_S = 100
SENT_AFTER = 100


class ServiceLogs:
    """The lines each service printed since :meth:`record` was called."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {}
        self._recording = False

    def sink(self, service: str, line: str) -> None:
        if self._recording:
            self.lines.setdefault(service, []).append(line)

    def record(self) -> None:
        self._recording = True

    def count(self, pattern: re.Pattern[str]) -> dict[str, int]:
        return {service: sum(1 for line in lines if pattern.search(line)) for service, lines in self.lines.items()}

    def tails(self, lines: int) -> str:
        """The last ``lines`` lines of each service, for a failure message."""
        return "\n".join(
            f"--- {service}\n" + "\n".join(printed[-lines:]) for service, printed in sorted(self.lines.items())
        )


@pytest.fixture
def service_logs() -> ServiceLogs:
    return ServiceLogs()


@pytest.fixture
def restart_pipeline(restartable_broker: Broker, service_logs: ServiceLogs) -> Iterator[Pipeline]:
    overrides = {"HERALD_KAFKA_CONSUMER_STALL_S": str(STALL_S)}
    with running_pipeline(restartable_broker, overrides=overrides, line_sink=service_logs.sink) as running:
        yield running


@pytest.fixture
def durable_pipeline(durable_broker: Broker) -> Iterator[Pipeline]:
    with running_pipeline(durable_broker, overrides=FAULT_SETTINGS) as running:
        yield running


async def statuses(
    client: httpx.AsyncClient, pipeline: Pipeline, services: tuple[str, ...], route: str
) -> dict[str, int | None]:
    """What each of ``services`` answers on ``route`` (None: no answer)."""
    found: dict[str, int | None] = {}
    for service in services:
        spec = next(spec for spec in pipeline.specs if spec.name == service)
        try:
            found[service] = (await client.get(spec.ready_url.removesuffix("/ready") + route)).status_code
        except httpx.HTTPError:
            found[service] = None
    return found


async def until_all_answer(
    pipeline: Pipeline, services: tuple[str, ...], route: str, status: int, timeout: float
) -> float:
    """Wait until every one of ``services`` answers ``route`` with ``status``; return how long that took."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=5, verify=default_client_context()) as client:

        async def all_answer() -> bool | None:
            return True if set((await statuses(client, pipeline, services, route)).values()) == {status} else None

        try:
            await eventually(all_answer, timeout, f"every {route} to answer {status}")
        except AssertionError as error:
            last = await statuses(client, pipeline, services, route)
            raise AssertionError(f"{error}; last answers: {last}") from None
    return time.monotonic() - started


async def topic_partitions(pipeline: Pipeline) -> dict[str, int]:
    """The pipeline's topics the broker has, with their partition counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.broker.bootstrap_servers)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(pipeline.namespace + ".")]
        described = await admin.describe_topics(names) if names else []
        return {topic["topic"]: len(topic["partitions"]) for topic in described}
    finally:
        await admin.close()


async def send_one(client: NotificationClient, subject: str) -> str:
    return await client.send(
        channels=["email"],
        recipient={"email": f"restart-{uuid.uuid4().hex[:12]}@example.com"},
        content={"subject": subject, "text": "Across a broker restart."},
    )


class SteadyLoad:
    """Email requests at ``per_s`` through the Kafka client until stopped; one that fails or is not
    acknowledged within a few seconds is counted, not retried."""

    def __init__(self, pipeline: Pipeline, per_s: int) -> None:
        self.pipeline = pipeline
        self.per_s = per_s
        self.acknowledged_at: list[float] = []
        self.failed = 0
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run())
        try:
            yield
        finally:
            self._stopping.set()
            await task

    async def _run(self) -> None:
        async with self.pipeline.kafka_client("dev") as client:
            sends: set[asyncio.Task[None]] = set()
            while not self._stopping.is_set():
                sends.update(asyncio.create_task(self._send(client)) for _ in range(self.per_s // 10))
                # Pacing the load, not waiting for a condition.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 0.1)
            await asyncio.gather(*sends)

    async def _send(self, client: NotificationClient) -> None:
        try:
            await asyncio.wait_for(send_one(client, "load"), 5)
        except Exception:
            self.failed += 1
            return
        self.acknowledged_at.append(time.monotonic())


async def the_way_back(broker: Broker, settings: AdminSettings) -> bool:
    """The README's way back after the broker lost its topics: the topics job; if it refuses because
    the broker holds records for the lost topics, restart the broker once more (every Herald client
    stopped writing to the lost topics within seconds), then the topics job again. True if the broker
    had to be restarted."""
    try:
        await create_topics(settings)
    except StrayRecordsError:
        # From this thread: a child started from a worker thread dies with it.
        broker.stop()
        broker.start()
        await create_topics(settings)
        return True
    return False


async def test_broker_killed_and_restarted_empty_services_say_so_then_recover(
    restart_pipeline: Pipeline, restartable_broker: Broker, service_logs: ServiceLogs
) -> None:
    pipeline = restart_pipeline
    load = SteadyLoad(pipeline, LOAD_PER_S)
    async with load.running():
        await eventually(lambda: True if len(pipeline.sink.messages) >= 50 else None, 60, "the load to flow")
        service_logs.record()
        restartable_broker.kill()
        restartable_broker.start()
        restarted_at = time.monotonic()

        not_ready_s = await until_all_answer(pipeline, KAFKA_USERS, "/ready", 503, 30)
        not_live_s = not_ready_s + await until_all_answer(pipeline, CONSUMERS, "/health", 503, STALL_S + 30)
        # Clients have been producing and consuming all along; none may have created a topic.
        assert await topic_partitions(pipeline) == {}
    acknowledged_by_restarted = sum(1 for at in load.acknowledged_at if at >= restarted_at)

    settings = AdminSettings(
        kafka_bootstrap_servers=restartable_broker.bootstrap_servers,
        topic_prefix=pipeline.namespace,
        kafka_topic_partitions=PARTITIONS,
    )
    restarted_again = await the_way_back(restartable_broker, settings)
    ready_s = await until_all_answer(pipeline, KAFKA_USERS, "/ready", 200, 60)
    # Live again once each loop rejoined its group and found its partitions: on cores shared with other
    # test workers that took more than 30 s once (sender-push).
    await until_all_answer(pipeline, CONSUMERS, "/health", 200, 60)
    assert set((await topic_partitions(pipeline)).values()) == {PARTITIONS}

    async with pipeline.kafka_client("dev") as client:
        after = [await send_one(client, "after") for _ in range(SENT_AFTER)]
    try:
        await eventually(lambda: True if set(after) <= pipeline.mailed().keys() else None, 90, "the new mails")
    except AssertionError as error:
        mailed = len(set(after) & pipeline.mailed().keys())
        said = service_logs.tails(15)
        raise AssertionError(f"{error} ({mailed} of {SENT_AFTER} mailed); the services said:\n{said}") from None

    commit_failures = service_logs.count(COMMIT_FAILURE)
    print(
        f"not ready {not_ready_s:.1f} s and not live {not_live_s:.1f} s after the restart; "
        f"broker restarted again for records it held for lost topics: {restarted_again}; "
        f"ready again {ready_s:.1f} s after the topics job; "
        f"load acknowledged by the restarted broker {acknowledged_by_restarted}, failed {load.failed}; "
        f"commit-failure lines per service {commit_failures}"
    )
    assert all(count <= MAX_COMMIT_FAILURE_LINES for count in commit_failures.values()), commit_failures


async def away_and_back(pipeline: Pipeline, broker: Broker) -> None:
    """Kill the broker; once it was away :data:`BROKER_DOWN_S` and every Kafka user says it is not ready,
    start it again (same port, same storage) and wait until every one is ready again."""

    async def none_ready() -> bool:
        await until_all_answer(pipeline, KAFKA_USERS, "/ready", 503, 30)
        return True

    # In this thread: a child started from a worker thread dies with it.
    await outage(BROKER_DOWN_S, broker.kill, broker.start, in_thread=False, noticed=none_ready)
    ready_s = await until_all_answer(pipeline, KAFKA_USERS, "/ready", 200, 60)
    print(f"every /ready 503 while the broker was away, 200 again {ready_s:.1f} s after it started again")


async def test_broker_on_s3_killed_mid_load_services_reconnect_by_themselves_and_mail_each_notification_once(
    durable_pipeline: Pipeline, durable_broker: Broker
) -> None:
    pipeline = durable_pipeline
    pids = {name: process.pid for name, process in pipeline.processes.items()}
    trial = Trial(pipeline, rate_per_s=LIGHT_RATE_PER_S)
    # Sending from the start until the broker is back, however long this new pipeline takes to get going:
    # the kill must land in a flowing stream.
    trial.load.hold()
    async with trial:
        await trial.during(away_and_back(pipeline, durable_broker))
        tally = await trial.settle("kill -9 of the broker on S3 storage, restarted on it")
    tally.report()
    assert {name: process.pid for name, process in pipeline.processes.items()} == pids, "a service was restarted"
    assert (tally.lost, tally.duplicated) == (0, 0), str(tally)
