"""Apache Kafka, Postgres and Redis in containers, for the broker-compatibility tests (marker ``broker_compat``).

The suite runs on Tansu; Herald runs on Apache Kafka in production. Where a Docker engine answers, these fixtures
start Apache Kafka (KRaft), Postgres and Redis with testcontainers and hand them to test bodies written for Tansu,
which need of a broker only where it is (:class:`BrokerEndpoint`) and of the datastores their URLs. Where no engine
answers, every test marked ``broker_compat`` skips with one reason (``HERALD_TEST_REQUIRE_DOCKER=1``: fails
instead, as in CI's broker-compat job). A plugin of tests/conftest.py: testcontainers and docker are imported only
once a test asks for a container, so other sessions (a mutation run starts hundreds) do not pay for them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from testcontainers.community.kafka import KafkaContainer

# Apache Kafka 3.9 (docker-compose.yml runs apache/kafka:3.9.0) in Confluent's build, the image testcontainers'
# KafkaContainer knows how to start in KRaft mode: one node, broker and controller.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
# docker-compose.yml's.
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
# How long a container may take to start once its image is pulled (a CI runner shares its cores with the tests).
START_TIMEOUT_S = 120
# The settings the Tansu runs need and Apache Kafka does not: it answers InitProducerId, so the services use the
# idempotent producer, as in production.
APACHE_KAFKA_ENVIRONMENT = {"HERALD_KAFKA_IDEMPOTENT_PRODUCER": "true"}
REQUIRE_DOCKER_VARIABLE = "HERALD_TEST_REQUIRE_DOCKER"
DEFAULT_DOCKER_SOCKET = Path("/var/run/docker.sock")


class BrokerEndpoint(Protocol):
    """What tests need of a Kafka cluster: where it is. Tansu's :class:`infra.local.broker.Broker` and
    :class:`KafkaEndpoint` both say."""

    @property
    def bootstrap_servers(self) -> str: ...


@dataclass(frozen=True)
class KafkaEndpoint:
    """A running Apache Kafka, as tests see a broker."""

    bootstrap_servers: str


@dataclass(frozen=True)
class ContainerDatastores:
    """Postgres (``database_url``: the server's ``postgres`` database, as the session's) and Redis in containers."""

    database_url: str
    redis_url: str


@functools.cache
def docker_engine_problem() -> str | None:
    """Why no Docker engine can start containers, said as a skip reason; None when one answers a ping. Where none
    runs it says so in well under a second."""
    from testcontainers.core.docker_client import DockerClient, get_docker_host

    try:
        DockerClient(timeout=2).client.ping()
    except Exception as error:  # docker's, requests' or an SSH client's error: no engine to use, whichever
        host = get_docker_host()
        if host is not None:
            where = f"DOCKER_HOST={host}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        else:
            socket = "present but not answering" if DEFAULT_DOCKER_SOCKET.exists() else "absent"
            where = f"DOCKER_HOST unset, {DEFAULT_DOCKER_SOCKET} {socket}"
        return (
            f"no Docker engine reachable ({where}): the Apache Kafka compatibility run needs one; "
            "CI's broker-compat job runs it"
        )
    return None


def kafka_container(listener_name: str = "PLAINTEXT", security_protocol: str = "PLAINTEXT") -> KafkaContainer:
    """An Apache Kafka container, not yet started, whose listener for clients is ``listener_name`` speaking
    ``security_protocol`` (the broker's own listeners stay inside the container)."""
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer(KAFKA_IMAGE, listener_name=listener_name, security_protocol=security_protocol)
    # As in production (docker-compose.yml): a topic exists only once the topics job declared it; Tansu creates any.
    return container.with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``broker_compat`` test before its fixtures start anything where no Docker engine answers. Skipped
    here rather than in a fixture, every such test is reported at this one place: one line for them all."""
    if item.get_closest_marker("broker_compat") is None:
        return
    problem = docker_engine_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_DOCKER_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_DOCKER_VARIABLE}=1 and {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[KafkaEndpoint]:
    """Apache Kafka for the session, plaintext; tests keep apart by topic prefix, as on Tansu."""
    container = kafka_container()
    try:
        container.start(timeout=START_TIMEOUT_S)
        yield KafkaEndpoint(container.get_bootstrap_server())
    finally:
        container.stop()


@pytest.fixture(scope="session")
def container_datastores() -> Iterator[ContainerDatastores]:
    """Postgres and Redis in containers for the session."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    # The superuser, as on the machines the suite runs on: tests create and drop a database each.
    postgres = PostgresContainer(POSTGRES_IMAGE, username="postgres", password="herald", dbname="postgres", driver=None)
    redis = RedisContainer(REDIS_IMAGE)
    with postgres, redis:
        host = redis.get_container_host_ip()
        yield ContainerDatastores(
            database_url=postgres.get_connection_url(),
            redis_url=f"redis://{host}:{redis.get_exposed_port(redis.port)}/0",
        )
