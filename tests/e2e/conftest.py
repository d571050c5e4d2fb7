"""The whole pipeline for end-to-end tests: every service as its own process on a real broker,
Postgres, Redis and SMTP server, isolated from other tests by a unique topic prefix and database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from redis.asyncio import Redis

from infra.local.broker import Broker
from infra.local.mail_sink import MailSink, ReceivedMessage
from infra.local.processes import LineSink, ManagedProcess, free_port, stop_all
from infra.local.stack import LOCAL_ENVIRONMENT, WORKERS, ServiceSpec, herald_services, start_services
from infra.standins.aws import MotoServer
from infra.standins.push import PushStandIns
from shared.client import NotificationClient
from shared.kafka.admin import AdminSettings, create_topics
from shared.kafka.records import Produce
from shared.messages import NotificationRequest
from shared.producer_keys import ProducerKey
from shared.requests import request_record
from shared.storage.migrate import ensure_database, migrate
from shared.tls import default_client_context
from shared.topics import Topics
from tests.conftest import FETCH_MAX_WAIT_MS, REDIS_URL
from tests.databases import drop_database
from tests.integration.conftest import BASE_DATABASE_URL, _with_database
from tests.kafka_containers import BrokerEndpoint

API_KEY = "e2e-test-key-0123456789"
TRACKING_KEY = LOCAL_ENVIRONMENT["HERALD_TRACKING_SIGNING_KEY"]
# The header the email sender sets to the notification's id.
NOTIFICATION_HEADER = "X-Herald-Notification-Id"
T = TypeVar("T")


@dataclass
class Pipeline:
    """A running Herald: its services, where to reach them, and the SMTP server mail arrives at."""

    namespace: str
    broker: BrokerEndpoint
    database_url: str
    sink: MailSink
    sms: MotoServer
    push: PushStandIns
    specs: list[ServiceSpec]
    environment: dict[str, str]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def topics(self) -> Topics:
        return Topics(self.namespace)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.specs[0].port}"

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for the gateway with the test tenant's API key."""
        return httpx.AsyncClient(
            base_url=self.gateway,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
            # Tests make many: each would build an SSL context of its own, 20-30 ms of CPU.
            verify=default_client_context(),
        )

    def producer_key(self, tenant_id: str) -> ProducerKey:
        """A key that signs ``tenant_id``'s requests as Herald's own services do (ingest takes requests on Kafka
        only signed; tests/e2e/test_producer_keys.py is where tenants' own keys are tried)."""
        key = ProducerKey.internal(self.environment["HERALD_PRODUCER_SIGNING_KEY"].encode(), tenant_id)
        assert key is not None
        return key

    def kafka_client(self, tenant_id: str, producer_key: str | None = None) -> NotificationClient:
        """The producer client an upstream service of ``tenant_id`` uses, on the pipeline's broker and topics,
        signing with ``producer_key`` (by default :meth:`producer_key`'s)."""
        return NotificationClient(
            self.broker.bootstrap_servers,
            tenant_id=tenant_id,
            topic_prefix=self.namespace,
            # Tansu refuses InitProducerId.
            idempotent_producer=False,
            producer_key=producer_key or self.producer_key(tenant_id).credential(),
        )

    def request_record(self, request: NotificationRequest) -> Produce:
        """``request`` as a signed record of the requests topic, as an upstream producer makes it."""
        return request_record(request, self.topics.requests, None, self.producer_key(request["tenant_id"]))

    def restart(self, name: str) -> None:
        """Start a stopped service again and wait until it is ready."""
        spec = next(spec for spec in self.specs if spec.name == name)
        process = self.processes[name]
        process.start()
        process.wait_http_ready(spec.ready_url, timeout=60)

    async def wait_for_sms(self, phone: str, timeout: float = 30.0) -> dict[str, Any]:
        """The text message SNS (moto) received for ``phone``."""

        async def sent() -> dict[str, Any] | None:
            messages = await asyncio.to_thread(self.sms.sent_sms)
            return next((m for m in messages if m["phone_number"] == phone), None)

        found: dict[str, Any] = await eventually(sent, timeout, f"an SMS to {phone}")
        return found

    def mails_for(self, notification_id: str) -> list[ReceivedMessage]:
        return [m for m in self.sink.messages if m.header_as_sent(NOTIFICATION_HEADER) == notification_id]

    def mailed(self) -> Counter[str | None]:
        """How many mails the sink holds for each notification id: one pass over them, where asking
        :meth:`mails_for` of each of many ids goes over every mail once per id."""
        return Counter(m.header_as_sent(NOTIFICATION_HEADER) for m in self.sink.messages)

    async def wait_for_mail(self, notification_id: str, timeout: float = 30.0) -> ReceivedMessage:
        """The mail of one notification, once it reached the SMTP server."""
        mails: list[ReceivedMessage] = await eventually(
            lambda: self.mails_for(notification_id) or None, timeout, f"mail for {notification_id}"
        )
        return mails[0]

    async def wait_for_status(self, notification_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
        """The notification as the gateway shows it, once it has ``status``."""
        async with self.client() as client:

            async def fetch() -> dict[str, Any] | None:
                response = await client.get(f"/api/v1/notifications/{notification_id}")
                body: dict[str, Any] = response.json()
                return body if response.status_code == 200 and body["status"] == status else None

            found: dict[str, Any] = await eventually(fetch, timeout, f"{notification_id} to be {status}")
            return found

    async def metric(self, service: str, name: str) -> float:
        """The sum of a Prometheus metric's samples on one service."""
        spec = next(spec for spec in self.specs if spec.name == service)
        async with httpx.AsyncClient(verify=default_client_context()) as client:
            text = (await client.get(f"http://127.0.0.1:{spec.port}/metrics")).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def eventually(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``probe`` until it returns something other than None (or fail naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def service_environment(
    namespace: str, broker: BrokerEndpoint, database_url: str, sink: MailSink, redis_url: str = REDIS_URL
) -> dict[str, str]:
    return {
        "HERALD_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "HERALD_TOPIC_PREFIX": namespace,
        "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "HERALD_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HERALD_KAFKA_FETCH_MAX_WAIT_MS": str(FETCH_MAX_WAIT_MS),
        "HERALD_DATABASE_URL": database_url,
        "HERALD_DATABASE_POOL_SIZE": "4",
        "HERALD_REDIS_URL": redis_url,
        "HERALD_REDIS_NAMESPACE": namespace,
        "HERALD_SMTP_HOST": sink.host,
        "HERALD_SMTP_PORT": str(sink.port),
        "HERALD_DEV_API_KEY": API_KEY,
        "HERALD_RETRY_BASE_DELAY_S": "0.2",
        "HERALD_RETRY_MAX_DELAY_S": "1",
        # Recurrences every second, so a test sees a series without waiting 15 minutes.
        "HERALD_RECURRENCE_MIN_INTERVAL_S": "1",
        "HERALD_LOG_LEVEL": "INFO",
        # On, so the limiter runs, but far above what any test sends.
        "HERALD_RATE_LIMIT_PER_KEY": "1000000",
        "HERALD_RATE_LIMIT_PER_TENANT": "1000000",
        # Tracking's HERALD_TRACKING_BASE_URL, the gateway's address, is added once it is known.
        **LOCAL_ENVIRONMENT,
    }


async def _prepare_storage_and_topics(environment: Mapping[str, str], database_url: str) -> None:
    """Migrate the database and create the topics, connecting to Kafka as the services will (TLS included)."""
    await ensure_database(database_url)
    await migrate(database_url)
    fields = {name.removeprefix("herald_"): value for name, value in ((k.lower(), v) for k, v in environment.items())}
    known = {name: value for name, value in fields.items() if name in AdminSettings.model_fields}
    await create_topics(AdminSettings.model_validate(known | {"kafka_topic_partitions": 4}))


async def _forget_redis_keys(namespace: str, redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        stale = [key async for key in client.scan_iter(match=f"{namespace}:*", count=10_000)]
        if stale:
            await client.delete(*stale)
    finally:
        await client.aclose()


@contextmanager
def running_pipeline(
    broker: BrokerEndpoint,
    *,
    base_database_url: str = BASE_DATABASE_URL,
    redis_url: str = REDIS_URL,
    overrides: Mapping[str, str] | None = None,
    line_sink: LineSink | None = None,
    services: Collection[str] | None = None,
    per_service: Mapping[str, Mapping[str, str]] | None = None,
) -> Iterator[Pipeline]:
    """Start a fresh database, topics, SMTP server and every service; stop and drop them after.

    ``base_database_url`` and ``redis_url`` choose the servers (fault tests restart private ones);
    ``overrides`` are ``HERALD_*`` settings that win over the e2e defaults; ``line_sink`` receives
    every line the services print (by default only their last lines are kept, for failures); ``services`` the
    services to start (by default every one); ``per_service`` settings of one service alone (by name)."""
    namespace = f"e2e-{uuid.uuid4().hex[:10]}"
    database_url = _with_database(base_database_url, f"herald_test_{uuid.uuid4().hex}")
    sink = MailSink()
    sink.start()
    sms = MotoServer(line_sink=None)
    sms.start()
    push = PushStandIns()
    push.start()
    specs = [
        spec
        for spec in herald_services(free_port(), [free_port() for _ in WORKERS])
        if services is None or spec.name in services
    ]
    environment = (
        service_environment(namespace, broker, database_url, sink, redis_url)
        | sms.sms_environment()
        | push.environment()
    )
    environment["HERALD_TRACKING_BASE_URL"] = f"http://127.0.0.1:{specs[0].port}"
    environment.update(overrides or {})
    asyncio.run(_prepare_storage_and_topics(environment, database_url))
    pipeline = Pipeline(namespace, broker, database_url, sink, sms, push, specs, environment)
    try:
        processes = start_services(specs, environment, ready_timeout=90, line_sink=line_sink, per_service=per_service)
        pipeline.processes = {spec.name: process for spec, process in zip(specs, processes, strict=True)}
        yield pipeline
    finally:
        stop_all(pipeline.processes.values(), 20)
        sink.stop()
        sms.stop()
        push.stop()
        asyncio.run(drop_database(base_database_url, database_url.rsplit("/", 1)[1]))
        asyncio.run(_forget_redis_keys(namespace, redis_url))


@pytest.fixture(scope="package")
def pipeline(broker: Broker) -> Iterator[Pipeline]:
    """One running pipeline shared by every end-to-end test (each uses its own notifications and users);
    stopped once they are done, so it does not idle on through the later test packages (0.2 cores)."""
    with running_pipeline(broker) as running:
        yield running
