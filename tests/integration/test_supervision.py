"""``make up``'s supervision, for real: a process that exits is started again with back-off, a Herald
service killed with SIGKILL comes back and notifications flow, and the broker killed comes back with
its topics (with the S3 storage, with what it held, so a request answered 202 before is delivered).
``python -m infra.local.stack`` itself, which no longer stops when one of its processes dies, is tested
in ``tests/e2e/test_make_up.py``.

The services run as processes on a real broker, Postgres, Redis and SMTP server, supervised as the
stack supervises them (``infra.local.supervisor``, ``infra.local.stack.broker_supervised``); the
supervisor runs in a thread of the test, in place of ``make up``'s main thread.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from infra.local.broker import Broker, S3Storage
from infra.local.mail_sink import MailSink
from infra.local.processes import (
    ManagedProcess,
    free_port,
    stop_all,
    wait_until,
)
from infra.local.stack import (
    ServiceSpec,
    broker_supervised,
    herald_services,
    run_step,
    service_process,
    start_services,
)
from infra.local.supervisor import Backoff, Supervised, Supervisor
from shared.storage.migrate import ensure_database, migrate
from shared.topics import Topics
from tests.e2e.conftest import API_KEY, service_environment
from tests.integration.conftest import BASE_DATABASE_URL, _with_database

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

QUICK = Backoff(first_s=0.2, max_s=1.0, reset_after_s=30.0)
# Enough of Herald for an email to go from the HTTP API to the SMTP server.
SERVICES = ("gateway", "ingest", "router", "sender-email")


@contextmanager
def supervising(children: Sequence[Supervised], backoff: Backoff = QUICK) -> Iterator[Supervisor]:
    """A supervisor running in a thread until the block ends."""
    supervisor = Supervisor(children, backoff)
    thread = threading.Thread(target=supervisor.run, name="supervisor", daemon=True)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the supervisor did not stop"


# ------------------------------------------------------------------------------------------- back-off


def backoffs_of(script: str, backoff: Backoff, restarts: int) -> list[float]:
    """The back-off chosen after each of the first ``restarts`` exits of ``python -c script``, supervised."""
    process = ManagedProcess("child", [sys.executable, "-c", script], line_sink=None)
    process.start()
    child = Supervised.of(process)
    try:
        with supervising([child], backoff):
            wait_until(lambda: child.restarts >= restarts, timeout=60, what=f"{restarts} restarts")
    finally:
        process.stop()
    return child.delays[:restarts]


def test_a_process_that_keeps_exiting_is_restarted_each_time_after_a_doubling_capped_backoff() -> None:
    backoff = Backoff(first_s=0.05, max_s=0.2, reset_after_s=30.0)
    assert backoffs_of("raise SystemExit(3)", backoff, 5) == [0.05, 0.1, 0.2, 0.2, 0.2]


def test_a_process_that_stayed_up_a_while_is_restarted_after_the_first_backoff_again() -> None:
    backoff = Backoff(first_s=0.05, max_s=10.0, reset_after_s=0.3)
    assert backoffs_of("import time; time.sleep(0.5)", backoff, 3) == [0.05, 0.05, 0.05]


def test_stopping_the_supervisor_ends_it_while_a_restart_waits() -> None:
    crashing = ManagedProcess("crashing", [sys.executable, "-c", "raise SystemExit(3)"], line_sink=None)
    crashing.start()
    child = Supervised.of(crashing)
    with supervising([child], Backoff(first_s=600.0)):
        wait_until(lambda: child.restart_at is not None, timeout=30, what="a restart scheduled")
    assert child.restarts == 0
    assert not crashing.running


# ------------------------------------------------------------------------------------ Herald services


@dataclass
class SupervisedHerald:
    """A few Herald services and the broker, supervised; the SMTP server mail arrives at."""

    broker: Broker
    namespace: str
    environment: dict[str, str]
    specs: dict[str, ServiceSpec]
    processes: dict[str, ManagedProcess]
    children: dict[str, Supervised]
    sink: MailSink

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.specs['gateway'].port}"

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        """Wait until service ``name`` answers ``/ready`` (the supervisor may still be starting it)."""

        with httpx.Client(timeout=2) as client:

            def ready() -> bool:
                try:
                    return client.get(self.specs[name].ready_url).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, timeout=timeout, what=f"{name} ready")

    def send(self, subject: str, timeout: float = 60.0) -> str:
        """POST an email notification until it is answered 202, with one Idempotency-Key, as a client
        retries; its id."""
        headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": f"supervision-{uuid.uuid4()}"}
        payload = {
            "channels": ["email"],
            "recipient": {"email": "ada@example.com"},
            "content": {"subject": subject, "text": "Sent under supervision."},
        }
        answers: list[httpx.Response | httpx.HTTPError] = []

        def accepted() -> bool:
            try:
                answers.append(
                    httpx.post(f"{self.gateway}/api/v1/notifications", json=payload, headers=headers, timeout=10)
                )
            except httpx.HTTPError as error:
                answers.append(error)
            last = answers[-1]
            return isinstance(last, httpx.Response) and last.status_code == 202

        try:
            wait_until(accepted, timeout=timeout, what=f"{subject!r} accepted", interval=0.5)
        except TimeoutError as error:
            raise AssertionError(f"{error}; last answers: {answers[-3:]}") from None
        last = answers[-1]
        assert isinstance(last, httpx.Response)
        notification_id: str = last.json()["id"]
        return notification_id

    def wait_for_mail(self, notification_id: str, timeout: float = 60.0) -> None:
        wait_until(
            lambda: any(m.header("X-Herald-Notification-Id") == notification_id for m in self.sink.messages),
            timeout=timeout,
            what=f"the mail of {notification_id}",
        )

    def topics_missing(self) -> list[str]:
        """Herald's topics that the broker does not have."""

        async def listed() -> set[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.broker.bootstrap_servers)
            await admin.start()
            try:
                return set(await admin.list_topics())
            finally:
                await admin.close()

        existing = asyncio.run(listed())
        return [name for name in Topics(self.namespace).all() if name not in existing]


@contextmanager
def supervised_herald(
    storage: S3Storage | None = None, *, unsupervised: Sequence[str] = ()
) -> Iterator[SupervisedHerald]:
    """The broker (on ``storage``), topics, a database and :data:`SERVICES` but ``unsupervised``
    (neither started nor supervised), all supervised with :data:`QUICK` back-off."""
    namespace = f"supervision-{uuid.uuid4().hex[:10]}"
    database_url = _with_database(BASE_DATABASE_URL, f"herald_test_{uuid.uuid4().hex}")
    asyncio.run(ensure_database(database_url))
    asyncio.run(migrate(database_url))
    if storage is not None:
        storage.start()
    broker = Broker(name="broker", line_sink=None, storage=storage)
    broker.start()
    sink = MailSink()
    sink.start()
    specs = {spec.name: spec for spec in herald_services(free_port(), [free_port() for _ in range(10)])}
    environment = service_environment(namespace, broker, database_url, sink)
    environment["HERALD_TRACKING_BASE_URL"] = f"http://127.0.0.1:{specs['gateway'].port}"
    processes: dict[str, ManagedProcess] = {}
    try:
        run_step("topics", "shared.kafka.admin", environment)
        started = [specs[name] for name in SERVICES if name not in unsupervised]
        processes = {process.name: process for process in start_services(started, environment, line_sink=None)}
        children = [Supervised.of(process) for process in processes.values()]
        children.append(broker_supervised(broker, environment))
        herald = SupervisedHerald(broker, namespace, environment, specs, processes, {c.name: c for c in children}, sink)
        with supervising(children):
            yield herald
    finally:
        stop_all(processes.values(), 20)
        broker.stop()
        if storage is not None:
            storage.stop()
        sink.stop()


@pytest.fixture(scope="module")
def herald() -> Iterator[SupervisedHerald]:
    """One supervised Herald for the tests that kill a part of it and see it come back: each counts the
    restarts of what it killed from where they were, whichever test ran first."""
    with supervised_herald() as running:
        yield running


# On one worker together, so they share one Herald.
SHARES_THE_HERALD = pytest.mark.xdist_group("supervised-herald")


@pytest.mark.slow
@SHARES_THE_HERALD
def test_a_service_killed_with_sigkill_is_restarted_and_notifications_flow_again(herald: SupervisedHerald) -> None:
    broker_restarts = herald.children["broker"].restarts
    for name in ("gateway", "sender-email"):
        process, child = herald.processes[name], herald.children[name]
        killed_pid, restarts = process.pid, child.restarts
        os.kill(process.pid or 0, signal.SIGKILL)
        wait_until(lambda: child.restarts == restarts + 1, timeout=30, what=f"{name} restarted")  # noqa: B023
        assert process.pid != killed_pid
        herald.wait_ready(name)

        herald.wait_for_mail(herald.send(f"after {name} was killed"))
    assert herald.children["broker"].restarts == broker_restarts


@pytest.mark.slow
@SHARES_THE_HERALD
def test_the_broker_killed_comes_back_with_its_topics_and_notifications_flow_again(herald: SupervisedHerald) -> None:
    herald.wait_for_mail(herald.send("before the broker was killed"))
    restarts = herald.children["broker"].restarts

    herald.broker.kill()
    wait_until(lambda: herald.children["broker"].restarts == restarts + 1, timeout=60, what="the broker restarted")
    assert herald.topics_missing() == []

    herald.wait_for_mail(herald.send("after the broker was killed"), timeout=90)


@pytest.mark.slow
def test_with_s3_storage_a_request_accepted_before_the_broker_was_killed_is_delivered_after() -> None:
    # Nothing consumes the requests topic until ingest starts, after the broker came back: the request
    # was only in the broker when it died.
    with supervised_herald(S3Storage(line_sink=None), unsupervised=("ingest",)) as herald:
        notification_id = herald.send("accepted before the broker was killed")

        herald.broker.kill()
        wait_until(lambda: herald.children["broker"].restarts == 1, timeout=60, what="the broker restarted")
        ingest = service_process(herald.specs["ingest"], herald.environment, line_sink=None)
        herald.processes["ingest"] = ingest
        ingest.start()

        herald.wait_for_mail(notification_id, timeout=90)
