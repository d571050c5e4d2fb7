"""What only the fault tests need: one pipeline on a private Postgres and a private Redis (so a test may
restart them without touching the machine's), started once for the whole fault suite, and the knobs
that size the load and the outages.

Knobs (environment variables):

* ``HERALD_FAULT_RATE`` (300) notifications a second and ``HERALD_FAULT_LOAD_S`` (6) seconds of load
  (the kill tests of the gateway, sender-sms, -webhook, -push and dead-letters: a third of the rate);
  a kill test's load goes on until its service has been ready again for a while, however long the
  restart takes, so the restarted service always takes over a flowing stream;
* ``HERALD_FAULT_PROVIDER_DOWN_S`` (10) how long the SMTP server is down (a 30 s outage:
  ``HERALD_FAULT_PROVIDER_DOWN_S=30``);
* ``HERALD_FAULT_DATASTORE_DOWN_S`` (3) how long Postgres or Redis stays down before it starts again;
* ``HERALD_FAULT_BROKER_DOWN_S`` (3) how long a broker killed with its storage kept stays down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from infra.local.broker import Broker
from infra.local.datastores import PostgresServer, RedisServer
from shared.tls import default_client_context
from tests.conftest import coverage_paused
from tests.e2e.conftest import Pipeline, eventually, running_pipeline

RATE_PER_S = int(os.environ.get("HERALD_FAULT_RATE", "300"))
LOAD_S = float(os.environ.get("HERALD_FAULT_LOAD_S", "6"))
PROVIDER_DOWN_S = float(os.environ.get("HERALD_FAULT_PROVIDER_DOWN_S", "10"))
DATASTORE_DOWN_S = float(os.environ.get("HERALD_FAULT_DATASTORE_DOWN_S", "3"))
BROKER_DOWN_S = float(os.environ.get("HERALD_FAULT_BROKER_DOWN_S", "3"))
LIGHT_RATE_PER_S = max(1, RATE_PER_S // 3)
# Mails a second the SMTP sink answers with 451 during a load that says so: some deliveries are then
# always waiting in the retry service (and its Postgres) when the fault lands.
DEFERRED_PER_S = 15

# What the fault pipeline sets beyond the e2e defaults, so a retried delivery outlives the provider outage.
FAULT_SETTINGS = {
    # Backoff grows to 4 s (from the e2e's 1 s): fewer rounds through the retry service while the
    # provider is down, so the retries do not swamp two cores.
    "HERALD_RETRY_MAX_DELAY_S": "4",
    # At least 2 s between attempts once backoff is capped, so these many attempts outlast the outage.
    "HERALD_MAX_ATTEMPTS": str(int(PROVIDER_DOWN_S) + 10),
    # An open circuit holds deliveries back this long: short, so they flow soon after the provider is back.
    "HERALD_BREAKER_OPEN_S": "2",
    # A member killed with SIGKILL leaves no word: the group hands its partitions on once its session
    # expires. Half the e2e's 6 s, so a kill test waits less for the takeover it is there to see.
    "HERALD_KAFKA_SESSION_TIMEOUT_MS": "3000",
    # A killed gateway leaves the Idempotency-Keys it was answering claimed: its clients' retries get
    # 409 until the claim expires (60 s by default), and the test would wait that long.
    "HERALD_IDEMPOTENCY_LOCK_TTL_S": "3",
}


@pytest.fixture(scope="package", autouse=True)
def untraced() -> Iterator[None]:
    """Fault tests run without line coverage: it would slow the load they generate, and what they
    exercise runs in the services' own processes, which are not measured anyway."""
    with coverage_paused():
        yield


@pytest.fixture(scope="package")
def private_postgres() -> Iterator[PostgresServer]:
    """A Postgres of the fault tests' own, which they stop and start."""
    # Under /tmp, searchable by others: as root the server runs as user postgres, which must reach it.
    folder = Path(tempfile.mkdtemp(prefix="herald-fault-"))
    folder.chmod(0o711)
    server = PostgresServer(folder / "data", database="postgres", line_sink=None)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def private_redis() -> Iterator[RedisServer]:
    """A Redis of the fault tests' own (no persistence: a restart forgets every key)."""
    server = RedisServer(line_sink=None)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def fault_pipeline(broker: Broker, private_postgres: PostgresServer, private_redis: RedisServer) -> Iterator[Pipeline]:
    """Every service on the private datastores; the fault tests take turns with it."""
    with running_pipeline(
        broker, base_database_url=private_postgres.url, redis_url=private_redis.url, overrides=FAULT_SETTINGS
    ) as running:
        asyncio.run(_one_delivered(running))
        yield running


async def _one_delivered(pipeline: Pipeline) -> None:
    """Send one email and wait until it is stored as sent: every consumer group on its way then has its
    partitions, so the first test's fault lands in a flowing stream, not in the pipeline's warm-up."""
    async with pipeline.kafka_client("dev") as client:
        notification_id = await client.send(
            channels=["email"], recipient={"email": "warm-up@example.com"}, content={"subject": "Up?", "text": "Up."}
        )
    await pipeline.wait_for_status(notification_id, "sent", timeout=90)


@pytest.fixture
def pipeline(fault_pipeline: Pipeline) -> Pipeline:
    """The fault pipeline with an empty mailbox, accepting every mail: each test counts only its own."""
    fault_pipeline.sink.store.reset_refusals()
    fault_pipeline.sink.clear()
    return fault_pipeline


async def start_again(pipeline: Pipeline, name: str, timeout: float = 60.0) -> None:
    """Start a stopped service again and wait, without blocking the event loop, until it is ready."""
    spec = next(spec for spec in pipeline.specs if spec.name == name)
    process = pipeline.processes[name]
    # From this (the main) thread: a child started from a worker thread dies when that thread ends.
    process.start()
    async with httpx.AsyncClient(timeout=2, verify=default_client_context()) as client:

        async def ready() -> bool | None:
            if not process.running:
                raise AssertionError(process.describe_failure(f"{name} exited while starting again"))
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(spec.ready_url)).status_code == 200:
                    return True
            return None

        try:
            await eventually(ready, timeout, f"{name} to be ready again")
        except AssertionError as error:
            raise AssertionError(f"{error}; its last lines:\n" + "\n".join(process.output_tail(30))) from None


@contextlib.asynccontextmanager
async def reconfigured(pipeline: Pipeline, name: str, settings: Mapping[str, str]) -> AsyncIterator[None]:
    """Run service ``name`` with ``settings`` added to its environment, and as before afterwards."""
    process = pipeline.processes[name]
    before = dict(process.env)
    await asyncio.to_thread(process.stop, 20)
    process.env.update(settings)
    await start_again(pipeline, name)
    try:
        yield
    finally:
        await asyncio.to_thread(process.stop, 20)
        process.env = before
        await start_again(pipeline, name)


async def outage(
    seconds: float,
    stop: Callable[[], object],
    start: Callable[[], object],
    *,
    in_thread: bool,
    noticed: Callable[[], Awaitable[bool | None]] | None = None,
) -> None:
    """Stop something, keep it down ``seconds`` (and, with ``noticed``, until that returns True), start it
    again (also if the wait is interrupted).

    ``in_thread`` runs ``stop`` and ``start`` off the event loop, so the load keeps flowing meanwhile;
    only for what does not die with the thread that started it (a child process does, see ManagedProcess).
    """

    async def run(step: Callable[[], object]) -> None:
        if in_thread:
            await asyncio.to_thread(step)
        else:
            step()

    await run(stop)
    try:
        # The outage itself: its length is the fault under test, not a wait for something to happen.
        await asyncio.sleep(seconds)
        if noticed is not None:
            await eventually(noticed, 60, "the outage to be noticed")
    finally:
        await run(start)
