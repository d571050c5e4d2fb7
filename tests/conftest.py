"""Fixtures every test layer shares: a real Kafka-compatible broker, unique topic and key namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import coverage
import pytest
import structlog
from _pytest.nodeid import NodeId

from infra.local.broker import Broker, S3Storage
from infra.local.processes import PORT_RANGE_VARIABLE, listening_ports
from infra.local.stack import LOCAL_ENVIRONMENT
from shared.config import HeraldSettings
from shared.crypto import Encryptor
from shared.kafka.admin import AdminSettings, create_topics
from shared.observability import metrics
from tests.kafka_helpers import delete_topics
from tests.session_datastores import DEFAULT_REDIS_URL, REDIS_VARIABLE, SessionDatastores, provide_datastores

# Apache Kafka, Postgres and Redis in containers where a Docker engine runs (marker broker_compat).
pytest_plugins = ("tests.kafka_containers",)

# The session's Redis: pytest_configure points it at a private one if this one does not answer.
REDIS_URL = os.environ.get(REDIS_VARIABLE, DEFAULT_REDIS_URL)
# HERALD_KAFKA_FETCH_MAX_WAIT_MS of every consumer the tests run. Tansu holds an idle fetch for the whole
# wait: at the default 50 ms an idle pipeline keeps the broker and its ten consumers about 30 % of a core
# busy, which the suite, CPU-bound on two cores, pays for minutes; at 250 ms, 12 %, for up to 125 ms more
# per hop while a consumer is idle.
FETCH_MAX_WAIT_MS = 250
# Every settings object a test builds, the gateway's included, gets the local stack's keys.
for _name in ("HERALD_ENCRYPTION_KEYS", "HERALD_BLIND_INDEX_KEY"):
    os.environ.setdefault(_name, LOCAL_ENVIRONMENT[_name])
# The encryptor the services of a test use: repositories built by tests take it.
ENCRYPTOR = Encryptor.from_settings(HeraldSettings())
# Logs of code running inside the test process as the console shows them, with plain tracebacks: the
# default pretty ones take about a second each, which made tests of poison messages crawl.
structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="%H:%M:%S.%f"),
        structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
    ]
)


# A shell without job control (a script, `make test &`, a tool running commands) starts a background
# command with SIGINT ignored, and Python then never raises KeyboardInterrupt: Ctrl-C (SIGINT to the
# process group) did nothing while a fault test ran on for minutes. Take SIGINT back, as `make up` does.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_keyboard_interrupt() -> None:
    """Let the teardown that follows an interrupt finish: a second Ctrl-C would cut it short and leave
    processes behind (a private Postgres runs detached). It is bounded by the fixtures' grace periods."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def coverage_paused() -> Iterator[None]:
    """Run without line coverage (``make test --cov``) inside: for tests whose own work, such as a load
    they generate, the tracer would slow."""
    measuring = coverage.Coverage.current()
    if measuring is None:
        yield
        return
    measuring.stop()
    try:
        yield
    finally:
        measuring.start()


DATASTORES = pytest.StashKey[SessionDatastores]()


def pytest_configure(config: pytest.Config) -> None:
    """Datastores for the session, once (not in each xdist worker); a worker gets ports of its own."""
    global REDIS_URL
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None:
        # Each worker picks ports from its own slice of the range, so two workers (and the programs their
        # tests start, which inherit the variable) can never pick the same one.
        low, high = listening_ports()
        size = (high - low + 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
        first = low + int(worker.removeprefix("gw")) * size
        os.environ[PORT_RANGE_VARIABLE] = f"{first}-{first + size - 1}"
        return
    config.stash[DATASTORES] = provide_datastores()
    REDIS_URL = config.stash[DATASTORES].stores.redis_url


def pytest_unconfigure(config: pytest.Config) -> None:
    if DATASTORES in config.stash:
        config.stash[DATASTORES].stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return config.stash[DATASTORES].describe() if DATASTORES in config.stash else []


# Each test folder and the marker every test file in it carries: `make test-unit` and friends select by
# marker, so a file without its layer's marker would silently never run there.
LAYERS = frozenset({"unit", "integration", "e2e", "fault"})
# The fixture of a running pipeline (about ten processes) that each of these layers' tests share: with
# pytest-xdist (--dist loadgroup) the tests that use it run on one worker, so one pipeline serves them all.
# Tests of these layers that start what they need themselves are spread over the workers like any other.
PIPELINE_LAYERS = frozenset({"e2e", "fault"})
SHARED_PIPELINE = "pipeline"


def _layer(config: pytest.Config, path: Path) -> str | None:
    """The layer a test file's folder stands for (``tests/<layer>/...``), if any."""
    if not path.is_relative_to(config.rootpath):
        return None
    folders = path.relative_to(config.rootpath).parts[:-1]
    layer = folders[1] if len(folders) > 1 and folders[0] == "tests" else None
    return layer if layer in LAYERS else None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Keep the tests sharing a layer's pipeline on one xdist worker with ``--dist loadgroup``, and those of
    any other ``xdist_group``."""
    layer = _layer(item.config, item.path)
    if layer in PIPELINE_LAYERS and SHARED_PIPELINE in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group(layer))
    group = item.get_closest_marker("xdist_group")
    if group is not None and getattr(item.config.option, "loadgroup", False):
        # pytest-xdist 3.8 groups by a "@group" suffix it writes to item._nodeid, which pytest 9 no longer
        # reads (the id lives in item._id): without this, --dist loadgroup groups nothing.
        item._id = NodeId.parse(f"{item.nodeid}@{group.args[0]}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the ``slow`` tests first; fail the run when a test file lacks its folder's layer marker (before
    ``-m`` deselects its tests)."""
    # pytest-xdist hands the tests out in this order (after the xdist groups, largest first): a slow test
    # handed out last would end the run alone, the other workers idle, where quick tests fill the end.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    unmarked: dict[Path, str] = {}
    for item in items:
        module = item.getparent(pytest.Module)
        if module is None or module.path in unmarked:
            continue
        layer = _layer(config, module.path)
        if layer is not None and not any(mark.name == layer for mark in module.own_markers):
            unmarked[module.path] = layer
    if unmarked:
        wanted = (f"  {path.relative_to(config.rootpath)}: pytest.mark.{layer}" for path, layer in unmarked.items())
        raise pytest.UsageError("test files without their layer's marker:\n" + "\n".join(wanted))


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """One Tansu broker for the test session (memory storage); tests keep apart by topic prefix."""
    with Broker(name="test-broker", line_sink=None) as running:
        yield running


@pytest.fixture
def restartable_broker() -> Iterator[Broker]:
    """A broker of the test's own, which it may kill and start again (empty: memory storage); the session's
    broker must not be, as every other test has its topics there."""
    with Broker(name="restartable-broker", line_sink=None) as running:
        yield running


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    """A broker of the test's own on Tansu's S3 storage (a moto of its own), as ``make up`` runs it: it may
    kill it and start it again on what it stored."""
    with S3Storage(line_sink=None) as storage, Broker(name="durable-broker", line_sink=None, storage=storage) as broker:
        yield broker


@pytest.fixture
def tenant_labels() -> Iterator[None]:
    """Metrics labelled by tenant for the test (HERALD_METRICS_TENANT_LABELS; off by default)."""
    metrics.label_tenants(True)
    yield
    metrics.label_tenants(False)


@pytest.fixture
def namespace() -> str:
    """A unique name for this test's topics, consumer groups and Redis keys."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(broker: Broker, namespace: str) -> Iterator[HeraldSettings]:
    """Settings pointing at the test broker and Redis, isolated by ``namespace``, whose topics exist: the
    topics job creates them (no Herald client does), so the fixture does as the job would. They are deleted
    afterwards: a client's first metadata request lists every topic of the broker, and the thousands a
    worker's tests left behind made each test's clients (and the broker) slower than the last."""
    topics = asyncio.run(
        create_topics(
            AdminSettings(
                kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=namespace, kafka_topic_partitions=4
            )
        )
    )
    yield HeraldSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_prefix=namespace,
        kafka_idempotent_producer=False,
        kafka_session_timeout_ms=6000,
        kafka_fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        redis_url=REDIS_URL,
        redis_namespace=namespace,
    )
    asyncio.run(delete_topics(broker.bootstrap_servers, topics))
