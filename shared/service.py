"""Start-up and shutdown shared by every service: logging, tracing, signals, the ops server.

A service's ``main.py`` builds its parts and hands them to :func:`serve_consumers`; on SIGTERM or
SIGINT every consumer loop finishes its batch, commits and leaves its group before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from importlib.metadata import version
from typing import Any

import structlog
import uvicorn
import uvloop

from shared.config import HeraldSettings
from shared.kafka.consumer import ConsumerLoop
from shared.kafka.producer import MessageProducer
from shared.kafka.startup import KafkaStartup
from shared.observability import metrics
from shared.observability.error_tracking import configure_error_tracking
from shared.observability.logging import configure_logging
from shared.observability.ops import Check, ops_app
from shared.observability.tracing import configure_tracing

log = structlog.get_logger(__name__)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a service's ``main`` coroutine on uvloop."""
    uvloop.run(main())


def setup(service: str, settings: HeraldSettings) -> None:
    """Configure logs, error tracking and traces for ``service``; call first in ``main``."""
    configure_logging(service, settings.log_level)
    configure_error_tracking(service)
    metrics.label_tenants(settings.metrics_tenant_labels)
    metrics.BUILD_INFO.labels(
        service=service, version=version("herald"), commit=os.environ.get("HERALD_COMMIT", "unknown")
    ).set(1)
    configure_tracing(service, settings.trace_sample_ratio, settings.otlp_endpoint)


class _OpsServer(uvicorn.Server):
    """Leaves signals to the service, which must stop its consumers before the ops endpoint goes."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ops_server(
    settings: HeraldSettings,
    checks: Mapping[str, Check],
    liveness: Mapping[str, Check] | None = None,
    reported: Mapping[str, Check] | None = None,
) -> uvicorn.Server:
    """An ops endpoint server on ``HERALD_OPS_PORT``: ``checks`` decide ``/ready``, ``liveness`` ``/health``,
    ``reported`` are shown under ``degraded``."""
    config = uvicorn.Config(
        ops_app(checks, liveness, reported),
        host=settings.ops_host,
        port=settings.ops_port,
        log_level="warning",
        access_log=False,
    )
    return _OpsServer(config)


async def serve_consumers(
    settings: HeraldSettings,
    consumers: Sequence[ConsumerLoop[Any]],
    checks: Mapping[str, Check],
    background: Sequence[Callable[[asyncio.Event], Awaitable[None]]] = (),
    producer: MessageProducer | None = None,
    reported: Mapping[str, Check] | None = None,
) -> None:
    """Run consumer loops (and background tasks that watch a stop event) until SIGTERM or SIGINT.

    The ops server comes up first; then ``producer`` and the loops start (:class:`KafkaStartup`: while the
    cluster refuses them or is away, the service stays up, not ready, and tries again), then the loops and
    ``background`` run. The ``kafka`` readiness check is the producer's; each loop adds a readiness check
    (not waiting for lost topics) and a liveness check (making progress, once started). ``reported``
    checks (dependencies the service works without) show in ``/ready`` without deciding it.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        log.info("stopping")
        stopping.set()
        for consumer in consumers:
            consumer.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    starts = ([producer.start] if producer is not None else []) + [consumer.start for consumer in consumers]
    startup = KafkaStartup(settings, starts)
    readiness = dict(checks)
    if producer is not None:
        readiness["kafka"] = startup.readiness(producer.check)
    readiness |= {f"consumer {c.group_id}": startup.readiness(c.check) for c in consumers}
    liveness = {f"consumer {c.group_id}": startup.liveness(c.alive) for c in consumers}
    server = ops_server(settings, readiness, liveness, reported)
    server_task = asyncio.create_task(server.serve())
    try:
        if not await startup.run(stopping):
            return
        log.info("started")
        await asyncio.gather(*(c.run() for c in consumers), *(task(stopping) for task in background))
    finally:
        server.should_exit = True
        await server_task
        log.info("stopped")
