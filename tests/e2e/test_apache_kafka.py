"""The pipeline's core tests, as they run on Tansu, on Apache Kafka, Postgres and Redis in containers (where a
Docker engine runs; tests/kafka_containers.py): every service on Apache Kafka with the idempotent producer on, as in
production, an email sent over HTTP and one produced with the Kafka client delivered and stored as sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import test_pipeline as on_tansu
from tests.e2e.conftest import Pipeline, running_pipeline
from tests.kafka_containers import APACHE_KAFKA_ENVIRONMENT, ContainerDatastores, KafkaEndpoint

# The first test's setup pulls the images and starts the containers.
pytestmark = [pytest.mark.e2e, pytest.mark.broker_compat, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def pipeline(apache_kafka: KafkaEndpoint, container_datastores: ContainerDatastores) -> Iterator[Pipeline]:
    """The whole pipeline on the containers, in place of the e2e tests' own on Tansu."""
    with running_pipeline(
        apache_kafka,
        base_database_url=container_datastores.database_url,
        redis_url=container_datastores.redis_url,
        overrides=APACHE_KAFKA_ENVIRONMENT,
    ) as running:
        yield running


# The test bodies of tests/e2e/test_pipeline.py, collected here again: they take this module's pipeline.
test_an_http_request_is_delivered_and_its_status_and_history_read_back = (
    on_tansu.test_an_http_request_is_delivered_and_its_status_and_history_read_back
)
test_a_request_produced_to_kafka_with_the_client_is_delivered = (
    on_tansu.test_a_request_produced_to_kafka_with_the_client_is_delivered
)
