"""The pipeline on a Kafka cluster that takes only TLS with client certificates and a SCRAM login: every
service on an email's way, the topics job and the gateway connect with ``HERALD_KAFKA_SECURITY_PROTOCOL=
SASL_SSL``, SCRAM-SHA-512, the CA and a client certificate, and an email sent over HTTP arrives and is
stored as sent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Pipeline, running_pipeline
from tests.secured_kafka import PASSWORD, USER, SecuredBroker, secured_broker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The services an email passes on its way to `sent`: the others would only idle on.
EMAIL_PATH = ("gateway", "ingest", "router", "sender-email", "status")


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    with secured_broker(tmp_path_factory.mktemp("kafka-secured"), users={USER: PASSWORD}) as running:
        yield running


@pytest.fixture(scope="module")
def secured_pipeline(secured: SecuredBroker) -> Iterator[Pipeline]:
    with running_pipeline(secured.broker, overrides=secured.environment(), services=EMAIL_PATH) as running:
        yield running


async def test_an_email_goes_through_a_cluster_that_takes_only_mutual_tls_and_scram(
    secured_pipeline: Pipeline, secured: SecuredBroker
) -> None:
    assert secured_pipeline.environment["HERALD_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    async with secured_pipeline.client() as client:
        response = await client.post(
            "/api/v1/notifications",
            json={
                "channels": ["email"],
                "recipient": {"email": "ada@example.com"},
                "content": {"subject": "Over TLS", "text": "Every hop on Kafka was encrypted and authenticated."},
            },
        )
    assert response.status_code == 202, response.text
    notification_id = response.json()["id"]

    mail = await secured_pipeline.wait_for_mail(notification_id, timeout=60)
    assert mail.subject == "Over TLS"
    await secured_pipeline.wait_for_status(notification_id, "sent", timeout=60)
    # Every service logged in (a client may log in more than once: one connection per broker role).
    assert secured.front.logins >= len(EMAIL_PATH)
    assert secured.front.refused_logins == 0
