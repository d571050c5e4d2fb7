"""Herald's Kafka clients on Apache Kafka in a container (where a Docker engine runs; tests/kafka_containers.py):
topics created, a record produced with the idempotent producer and read back on a plaintext cluster; on a cluster
that takes only mutual TLS and a SASL login, configured as a secured cluster is (tests/secured_kafka.py), a round trip
through each mechanism, a wrong password kept out, and each refusal told in one line naming the settings, as the
tests of tests/integration/test_kafka_security.py show it on Tansu behind its front."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from aiokafka.errors import KafkaError

from shared.kafka.admin import AdminSettings
from shared.kafka.producer import MessageProducer
from tests.integration import test_kafka_security as on_tansu
from tests.integration.test_kafka_security import round_trip
from tests.kafka_containers import KafkaEndpoint
from tests.secured_kafka import SecuredApacheKafka, secured_apache_kafka

# The first test's setup pulls the images and starts the containers.
pytestmark = [pytest.mark.integration, pytest.mark.broker_compat, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def tls_and_sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredApacheKafka]:
    """Apache Kafka taking only mutual TLS and a login, as the e2e test's cluster on Tansu."""
    with secured_apache_kafka(tmp_path_factory.mktemp("apache-kafka-secured")) as running:
        yield running


async def test_topics_produce_with_the_idempotent_producer_and_consume(apache_kafka: KafkaEndpoint) -> None:
    settings = AdminSettings(
        kafka_bootstrap_servers=apache_kafka.bootstrap_servers,
        topic_prefix=f"compat-{uuid.uuid4().hex[:8]}",
        kafka_topic_partitions=1,
        kafka_idempotent_producer=True,
    )
    assert await round_trip(settings) == [b"secured"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_each_sasl_mechanism_logs_in_over_mutual_tls_and_produces_and_consumes(
    tls_and_sasl: SecuredApacheKafka, mechanism: str
) -> None:
    assert await round_trip(tls_and_sasl.settings(kafka_sasl_mechanism=mechanism)) == [b"secured"]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
async def test_a_wrong_password_keeps_the_client_out(tls_and_sasl: SecuredApacheKafka, mechanism: str) -> None:
    producer = MessageProducer(
        tls_and_sasl.settings(kafka_sasl_mechanism=mechanism, kafka_sasl_password="wrong"), client_id="refused"
    )
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()


# The test body of tests/integration/test_kafka_security.py, collected here again: it takes this module's cluster.
test_why_a_client_cannot_connect_is_told_in_one_line_naming_the_settings = (
    on_tansu.test_why_a_client_cannot_connect_is_told_in_one_line_naming_the_settings
)
