"""The Celery phase: the baseline's workers started as subprocesses, the pipeline's requests enqueued, measured
the way :func:`infra.bench.pipeline.run_pipeline` measures Herald.

Same requests (:func:`infra.bench.pipeline.email_request`), same SMTP sink, same Postgres server (a table of
its own in the bench database, dropped afterwards), the machine's Redis as broker (database
:data:`REDIS_DB`, every key under a prefix of this run, deleted afterwards). The clock runs from the first
enqueue until the sink has every message and every row says ``sent``; CPU is sampled over the same span
for the workers, Redis, Postgres, the sink and this process (the producer).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from redis import Redis

from infra.bench.celery_baseline.app import (
    PREFETCH_MULTIPLIER,
    QUEUE,
    Settings,
    app,
    configure,
    create_table_sql,
    send_notification,
    worker_environment,
)
from infra.bench.cpu import CpuProbe, usage_between
from infra.bench.pipeline import POLL_INTERVAL_S, Arrivals, Arrived, email_request
from infra.bench.smtp_sink import Sink
from infra.bench.timeline import Timeline, dense_counts, dense_values
from infra.local.processes import ManagedProcess, ProcessError
from infra.local.stack import REPO_ROOT

TENANT = "bench-celery"
WARM_UP_TENANT = "bench-celery-warm-up"
# A Redis database the services do not use: nothing of the baseline's can meet Herald's keys.
REDIS_DB = 14
_WORKER_READY_TIMEOUT_S = 60
_STOP_GRACE_S = 30
_ERROR_WORDS = ("ERROR", "CRITICAL", "Traceback")
_ERRORS_KEPT = 5

_COUNT = "SELECT count(*) FROM {} WHERE tenant_id = %s AND status = 'sent'"
_PER_SECOND = """
SELECT floor(extract(epoch FROM sent_at - %s::timestamptz))::int AS second,
       count(*) AS sent,
       1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - enqueued_at)) AS p99
FROM {}
WHERE tenant_id = %s AND sent_at IS NOT NULL
GROUP BY 1
ORDER BY 1
"""


@dataclass(frozen=True)
class CeleryRun:
    """One bulk run of the baseline, in the pipeline phase's terms, with CPU over the same span."""

    baseline: str
    concurrency: int
    prefetch_multiplier: int
    sink: str
    produce_seconds: float
    sent_when_enqueued: int
    arrived: Arrived
    worker_errors: list[str]
    cpu: dict[str, Any]
    timeline: Timeline

    @property
    def per_s(self) -> float:
        return self.arrived.per_s

    @property
    def after_enqueue_per_s(self) -> float | None:
        """The rate once the producer was done and had stopped taking CPU from the workers."""
        if not self.arrived.complete or self.arrived.seconds <= self.produce_seconds:
            return None
        return (self.arrived.count - self.sent_when_enqueued) / (self.arrived.seconds - self.produce_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "concurrency": self.concurrency,
            "prefetch_multiplier": self.prefetch_multiplier,
            "sink": self.sink,
            "produce_seconds": self.produce_seconds,
            "sent_when_enqueued": self.sent_when_enqueued,
            **self.arrived.to_json(),
            "after_enqueue_per_s": None if self.after_enqueue_per_s is None else round(self.after_enqueue_per_s, 1),
            "worker_errors": self.worker_errors,
            "cpu": self.cpu,
            "timeline": self.timeline.to_json(),
        }


def celery_payload(tenant_id: str, index: int) -> dict[str, Any]:
    """Herald's bench request number ``index`` as the baseline's JSON task argument, with an idempotency key."""
    request = email_request(tenant_id, index)
    return {
        "notification_id": request["notification_id"],
        "tenant_id": request["tenant_id"],
        "idempotency_key": f"{tenant_id}-{index}",
        "created_at": request["created_at"].isoformat(),
        "priority": request["priority"],
        "channels": request["channels"],
        "recipient": request["recipient"],
        "content": {
            "subject": request["content"]["subject"],
            "text": request["content"]["text"],
            "html": request["content"]["html"],
        },
        "variables": json.loads(request["variables_json"]),
        "metadata": request["metadata"],
        "tracking": request["tracking"],
        "send_at": None,
        "timezone": request["timezone"],
        "recurrence": None,
        "dedup": request["dedup"],
    }


def _redis_url(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def _children(pid: int) -> list[int]:
    """The prefork pool's processes: children of any of the worker's threads."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _enqueue(payloads: list[dict[str, Any]]) -> None:
    """One producer connection for all: what a team enqueueing a bulk send would do."""
    with app.producer_or_acquire() as producer:
        for payload in payloads:
            send_notification.apply_async((payload, time.time()), producer=producer)


class _Counter:
    """``sent`` rows of a tenant in the baseline's table."""

    def __init__(self, database: psycopg.Connection[Any], table: str) -> None:
        self._database = database
        self._query = sql.SQL(_COUNT).format(sql.Identifier(table))

    def __call__(self, tenant_id: str) -> int:
        row = self._database.execute(self._query, (tenant_id,)).fetchone()
        return int(row[0]) if row else 0


def run_celery(
    *,
    redis_url: str,
    database_url: str,
    sink: Sink,
    count: int,
    concurrency: int,
    timeout_s: float,
    pids: Mapping[str, int | None],
) -> CeleryRun:
    """Start ``concurrency`` prefork workers, warm them up, enqueue ``count`` requests and wait until every one is
    at the sink and ``sent``; everything the run created is removed again."""
    run_id = uuid.uuid4().hex[:10]
    settings = Settings(
        broker_url=_redis_url(redis_url, REDIS_DB),
        key_prefix=f"herald-bench-celery-{run_id}:",
        database_url=database_url,
        table=f"celery_baseline_{run_id}",
        smtp_host=sink.host,
        smtp_port=sink.port,
    )
    configure(settings)
    payloads = [celery_payload(TENANT, index) for index in range(count)]
    worker_errors: list[str] = []

    def keep_errors(name: str, line: str) -> None:
        # The worker prints its banner whatever the log level; only errors are news.
        if any(word in line for word in _ERROR_WORDS) and len(worker_errors) < _ERRORS_KEPT:
            worker_errors.append(line.strip())

    with psycopg.connect(database_url, autocommit=True) as database:
        database.execute(create_table_sql(settings.table))
        worker = ManagedProcess(
            "celery-worker",
            [
                *(sys.executable, "-m", "celery", "-A", "infra.bench.celery_baseline.app", "worker"),
                *("--pool=prefork", f"--concurrency={concurrency}", "-O", "fair", "-Q", QUEUE),
                *("--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"),
                *("-n", f"bench-{run_id}@%h"),
            ],
            env=worker_environment(settings),
            cwd=REPO_ROOT,
            line_sink=keep_errors,
        )
        try:
            worker.start()
            sent = _Counter(database, settings.table)
            # Until a few tasks per process went all the way, the pool is not ready: none of that is timed.
            warm_up = 10 * concurrency
            _enqueue([celery_payload(WARM_UP_TENANT, index) for index in range(warm_up)])
            worker.wait_until(
                lambda: sent(WARM_UP_TENANT) >= warm_up,
                timeout=_WORKER_READY_TIMEOUT_S,
                what=f"{warm_up} warm-up tasks were sent",
            )
            probe = CpuProbe(
                {"celery main": worker.pid}
                | {f"celery worker {n}": pid for n, pid in enumerate(_children(worker.pid or 0), start=1)}
                | dict(pids),
                by_comm={"postgres": "postgres", "redis": "redis-server"},
            )
            delivered_before = sink.delivered()
            before, origin = probe.snapshot(), datetime.now(UTC)
            arrivals = Arrivals(count)
            _enqueue(payloads)
            produce_seconds = arrivals.elapsed()
            sent_when_enqueued = sent(TENANT)
            while arrivals.elapsed() < timeout_s:
                delivered = sink.delivered() - delivered_before if arrivals.awaiting_sink else None
                if arrivals.saw(delivered=delivered, sent=sent(TENANT) if arrivals.awaiting_store else None):
                    break
                if not worker.running:
                    raise ProcessError(worker.describe_failure("the Celery worker exited mid-run"))
                time.sleep(POLL_INTERVAL_S)
            cpu = usage_between(before, probe.snapshot(), arrivals.elapsed())
            arrived = arrivals.result()
            timeline = _timeline(database, settings.table, origin)
        finally:
            worker.stop(grace=_STOP_GRACE_S)
            database.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(settings.table)))
            _forget_keys(settings)
    return CeleryRun(
        baseline=f"Celery {version('celery')} prefork + Redis (kombu {version('kombu')}), psycopg {version('psycopg')}",
        concurrency=concurrency,
        prefetch_multiplier=PREFETCH_MULTIPLIER,
        sink=sink.name,
        produce_seconds=produce_seconds,
        sent_when_enqueued=sent_when_enqueued,
        arrived=arrived,
        worker_errors=worker_errors,
        cpu=cpu.to_json(),
        timeline=timeline,
    )


def _timeline(database: psycopg.Connection[Any], table: str, origin: datetime) -> Timeline:
    query = sql.SQL(_PER_SECOND).format(sql.Identifier(table))
    rows = database.execute(query, (origin, TENANT)).fetchall()
    return Timeline(
        latency_basis="enqueued -> sent",
        rates={"sent/s": dense_counts((row[0], row[1]) for row in rows)},
        latency_p99_ms={"sent": dense_values((row[0], row[2]) for row in rows)},
    )


def _forget_keys(settings: Settings) -> None:
    """Delete every key of this run (queue, unacknowledged set, bindings, de-duplication claims)."""
    redis = Redis.from_url(settings.broker_url, socket_timeout=10)
    try:
        keys = list(redis.scan_iter(match=f"{settings.key_prefix}*", count=5000))
        for start in range(0, len(keys), 5000):
            redis.unlink(*keys[start : start + 5000])
    finally:
        redis.close()
