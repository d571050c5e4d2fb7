"""The Herald stack the gateway and pipeline phases run against, started as the end-to-end tests start it.

A fresh Tansu broker, a fresh migrated database ``herald_bench_<hex>`` on the machine's Postgres
(or a private one), unique topic prefix and Redis namespace, the SMTP sink, and every service as
its own process. :meth:`BenchStack.close` stops all of it, drops the database and deletes the
namespace's Redis keys, whatever happened before.
"""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import uvloop
from redis.asyncio import Redis

from infra.bench.smtp_sink import Sink, start_sink
from infra.local.broker import Broker
from infra.local.datastores import ensure_datastores
from infra.local.processes import ManagedProcess, free_port, stop_all
from infra.local.stack import (
    LOCAL_ENVIRONMENT,
    REPO_ROOT,
    WORKERS,
    ServiceSpec,
    herald_services,
    start_services,
)
from infra.standins.aws import MotoServer
from infra.standins.push import PushStandIns
from shared.config import HeraldSettings, load_settings
from shared.kafka.admin import AdminSettings, create_topics
from shared.producer_keys import INTERNAL_KEY_ID, ProducerKey
from shared.storage.migrate import ensure_database, migrate
from shared.topics import Topics

API_KEY = "bench-api-key-0123456789abcdef"
# The gateway creates API_KEY for this tenant (HERALD_DEV_TENANT's default).
GATEWAY_TENANT = "dev"
PARTITIONS = 8
# Above the gateway's own 20 s graceful shutdown, as for `make up`.
_STOP_GRACE_S = 25.0


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name)))


class ServiceLines:
    """A line sink that counts what each service prints: at log level WARNING, any line is news."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, name: str, line: str) -> None:
        self.counts[name] += 1


class BenchStack:
    """Everything the gateway and pipeline phases need; use as a context manager."""

    def __init__(self, work_dir: Path, max_mails: int) -> None:
        self.work_dir = work_dir
        self._max_mails = max_mails
        self.namespace = f"bench-{uuid.uuid4().hex[:10]}"
        self.topics = Topics(self.namespace)
        self.service_lines = ServiceLines()
        self.broker = Broker(name="bench-broker", line_sink=None)
        self.specs: list[ServiceSpec] = []
        self.processes: list[ManagedProcess] = []
        self.database_url = ""
        self.redis_url = ""
        self._sink: Sink | None = None
        # sender-sms runs too (idle here): SNS on moto stands in for its provider.
        self._sms = MotoServer(name="bench-moto", line_sink=None)
        self._push = PushStandIns()
        self.sink_note: str | None = None
        self._cleanup = contextlib.ExitStack()

    @property
    def sink(self) -> Sink:
        """The SMTP sink (after :meth:`start`)."""
        assert self._sink is not None, "start() first"
        return self._sink

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.specs[0].port}"

    def metrics_url(self, service: str) -> str:
        """Where a worker (not the gateway) serves its Prometheus metrics."""
        port = next(spec.port for spec in self.specs if spec.name == service and spec.uses_ops_port)
        return f"http://127.0.0.1:{port}/metrics"

    def request_signer(self, tenant_id: str) -> ProducerKey:
        """The key the bench signs ``tenant_id``'s requests with: Herald's internal producer key, derived from the
        master key the services get (ingest refuses unsigned requests)."""
        master_key = self.environment()["HERALD_PRODUCER_SIGNING_KEY"].encode()
        return ProducerKey.derive(master_key, tenant_id, INTERNAL_KEY_ID)

    def processes_by_name(self) -> Iterator[tuple[str, ManagedProcess]]:
        """Each service's name and process."""
        for spec, process in zip(self.specs, self.processes, strict=True):
            yield spec.name, process

    def start(self) -> None:
        """Start all but the services; what started is stopped again if a later step fails."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        settings = load_settings(HeraldSettings)
        datastores = ensure_datastores(
            settings.database_url, settings.redis_url, var_dir=REPO_ROOT / "var", line_sink=None
        )
        self._cleanup.callback(datastores.stop)
        self.redis_url = datastores.redis_url
        self.database_url = _with_database(datastores.database_url, f"herald_bench_{uuid.uuid4().hex[:12]}")
        # Registered first so it runs last, once the services are gone.
        self._cleanup.callback(lambda: uvloop.run(self._forget_data()))

        self._cleanup.callback(self.broker.stop)
        self.broker.start()
        uvloop.run(self._prepare())

        self._sink, self.sink_note = start_sink(self.work_dir / "smtp-sink.counters", self._max_mails)
        self._cleanup.callback(self._sink.stop)

        self._cleanup.callback(self._sms.stop)
        self._sms.start()
        self._cleanup.callback(self._push.stop)
        self._push.start()

        self.specs = herald_services(free_port(), [free_port() for _ in WORKERS])

    def start_services(self) -> None:
        """Start every Herald service (after :meth:`start`); phases before this have the machine without them."""
        # start_services stops what it started if one of them fails to get ready.
        self.processes = start_services(self.specs, self.environment(), ready_timeout=120, line_sink=self.service_lines)
        self._cleanup.callback(lambda: stop_all(self.processes, grace=_STOP_GRACE_S))

    def environment(self) -> dict[str, str]:
        """What every service gets: the end-to-end tests' environment, with quieter logs (logs cost CPU)."""
        return {
            "HERALD_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "HERALD_TOPIC_PREFIX": self.namespace,
            "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "false",
            "HERALD_KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
            "HERALD_DATABASE_URL": self.database_url,
            "HERALD_REDIS_URL": self.redis_url,
            "HERALD_REDIS_NAMESPACE": self.namespace,
            "HERALD_SMTP_HOST": self.sink.host,
            "HERALD_SMTP_PORT": str(self.sink.port),
            "HERALD_DEV_API_KEY": API_KEY,
            "HERALD_LOG_LEVEL": "WARNING",
            "HERALD_GATEWAY_HOST": "127.0.0.1",
            "HERALD_OPS_HOST": "127.0.0.1",
            # The gateway figure measures the gateway, limiter included, not the default 100 a minute.
            "HERALD_RATE_LIMIT_PER_KEY": "60000000",
            "HERALD_RATE_LIMIT_PER_TENANT": "60000000",
            **self._sms.sms_environment(),
            **self._push.environment(),
            **LOCAL_ENVIRONMENT,
            "HERALD_TRACKING_BASE_URL": self.gateway_url,
        }

    async def _prepare(self) -> None:
        await ensure_database(self.database_url)
        await migrate(self.database_url)
        await create_topics(
            AdminSettings(
                kafka_bootstrap_servers=self.broker.bootstrap_servers,
                topic_prefix=self.namespace,
                kafka_topic_partitions=PARTITIONS,
            )
        )

    async def _forget_data(self) -> None:
        """Drop the bench database and delete the namespace's Redis keys (dedup claims, delivered ids)."""
        name = urlsplit(self.database_url).path.lstrip("/")
        admin = await asyncpg.connect(_with_database(self.database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        redis = Redis.from_url(self.redis_url, socket_timeout=10)
        try:
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=f"{self.namespace}:*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    await redis.unlink(*batch)
                    batch.clear()
            if batch:
                await redis.unlink(*batch)
        finally:
            await redis.aclose()

    def close(self) -> None:
        """Stop services, sink and broker, then forget the data and stop private datastores."""
        # A second Ctrl-C must not cut the clean-up short and leave a database or processes behind.
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._cleanup.close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
