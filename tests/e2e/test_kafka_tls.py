"""The whole pipeline on a Kafka cluster that takes only TLS with client certificates: every service, the
topics job and the gateway connect with ``HERALD_KAFKA_SECURITY_PROTOCOL=SSL``, the CA and a client
certificate, and an email sent over HTTP arrives and is stored as sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Pipeline, running_pipeline
from tests.kafka_tls import secured_broker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The services an email passes on its way to `sent`: the others would only idle on.
EMAIL_PATH = ("gateway", "ingest", "router", "sender-email", "status")


@pytest.fixture(scope="module")
def pipeline_over_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    directory: Path = tmp_path_factory.mktemp("kafka-tls")
    with (
        secured_broker(directory) as secured,
        running_pipeline(secured.broker, overrides=secured.environment(), services=EMAIL_PATH) as running,
    ):
        yield running


async def test_an_email_goes_through_a_cluster_that_takes_only_mutual_tls(pipeline_over_tls: Pipeline) -> None:
    async with pipeline_over_tls.client() as client:
        response = await client.post(
            "/api/v1/notifications",
            json={
                "channels": ["email"],
                "recipient": {"email": "ada@example.com"},
                "content": {"subject": "Over TLS", "text": "Every hop on Kafka was encrypted."},
            },
        )
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]

    mail = await pipeline_over_tls.wait_for_mail(notification_id, timeout=60)
    assert mail.subject == "Over TLS"
    await pipeline_over_tls.wait_for_status(notification_id, "sent", timeout=60)
