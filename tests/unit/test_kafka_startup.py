"""Starting Kafka clients without a crash loop: back-off, one line per cause, readiness and liveness meanwhile.

The cluster is a port nothing listens on, so the diagnosis is the real one ("nothing answers Kafka").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import structlog
from aiokafka.errors import KafkaConnectionError

from infra.local.processes import free_port
from shared.kafka.connection import KafkaConnectionSettings
from shared.kafka.startup import KafkaNotStarted, KafkaStartup

pytestmark = pytest.mark.unit


def nowhere() -> KafkaConnectionSettings:
    return KafkaConnectionSettings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")


def failing(times: int, calls: list[str], name: str) -> Callable[[], Awaitable[None]]:
    """A client start that fails ``times`` times as a refused connection does, then succeeds."""

    async def start() -> None:
        calls.append(name)
        if calls.count(name) <= times:
            raise KafkaConnectionError("Unable to bootstrap")

    return start


async def test_starts_are_tried_again_with_back_off_in_order_and_the_cause_is_logged_once() -> None:
    calls: list[str] = []
    startup = KafkaStartup(
        nowhere(),
        [failing(3, calls, "producer"), failing(1, calls, "consumer")],
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )
    with structlog.testing.capture_logs() as logs:
        assert await startup.run(asyncio.Event())
    assert calls == ["producer"] * 4 + ["consumer"] * 2
    assert startup.started
    await startup.check()
    refusals = [entry for entry in logs if entry["event"] == "cannot use Kafka"]
    # Four failures, one cause: said once, with the setting to look at.
    assert len(refusals) == 1
    assert "nothing answers Kafka at" in refusals[0]["problem"]
    assert [entry["retry_in_s"] for entry in refusals] == [0.01]
    assert any(entry["event"] == "kafka_started" for entry in logs)


async def test_until_started_readiness_fails_with_the_cause_and_liveness_passes() -> None:
    calls: list[str] = []
    startup = KafkaStartup(nowhere(), [failing(1_000, calls, "producer")], backoff_initial_s=0.01)
    checked: list[str] = []

    async def progress() -> None:
        checked.append("progress")
        raise AssertionError("no progress")

    async def broker_has_topics() -> None:
        checked.append("topics")

    stopping = asyncio.Event()
    running = asyncio.create_task(startup.run(stopping))
    await startup.tried.wait()
    with pytest.raises(KafkaNotStarted, match="nothing answers Kafka"):
        await startup.readiness(broker_has_topics)()
    await startup.liveness(progress)()
    # Neither check was run: there is nothing to check before the clients started.
    assert checked == []

    stopping.set()
    assert await running is False


async def test_once_started_the_checks_are_the_clients_own() -> None:
    startup = KafkaStartup(nowhere(), [])
    assert await startup.run(asyncio.Event())

    async def stalled() -> None:
        raise AssertionError("no progress")

    async def ready() -> str:
        return "ok"

    assert await startup.readiness(ready)() == "ok"
    with pytest.raises(AssertionError, match="no progress"):
        await startup.liveness(stalled)()


async def test_a_stop_during_the_back_off_ends_the_wait_at_once() -> None:
    calls: list[str] = []
    startup = KafkaStartup(nowhere(), [failing(1, calls, "producer")], backoff_initial_s=3600)
    stopping = asyncio.Event()
    running = asyncio.create_task(startup.run(stopping))
    await startup.tried.wait()
    stopping.set()
    assert await asyncio.wait_for(running, 5) is False
    assert calls == ["producer"]
