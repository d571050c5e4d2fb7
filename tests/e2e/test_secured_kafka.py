"""The pipeline on a Kafka cluster that takes only TLS with client certificates and a SASL login: every
service on an email's way, the topics job and the gateway connect with ``HERALD_KAFKA_SECURITY_PROTOCOL=
SASL_SSL``, the CA and a client certificate, each with a SASL mechanism of its own (PLAIN, SCRAM-SHA-256,
SCRAM-SHA-512, OAUTHBEARER with a token from an identity provider), and an email sent over HTTP arrives
and is stored as sent: one notification delivered through every mechanism."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Pipeline, running_pipeline
from tests.scripted_http import ScriptedServer
from tests.secured_kafka import PASSWORD, USER, SecuredBroker, secured_broker, token_endpoint_reply

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The services an email passes on its way to `sent`: the others would only idle on.
EMAIL_PATH = ("gateway", "ingest", "router", "sender-email", "status")
TOKEN = "a-token-the-cluster-trusts"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    with secured_broker(tmp_path_factory.mktemp("kafka-secured"), users={USER: PASSWORD}) as running:
        yield running


@pytest.fixture(scope="module")
def secured_pipeline(secured: SecuredBroker) -> Iterator[Pipeline]:
    with ScriptedServer().serving() as identity_provider:
        identity_provider.reply = token_endpoint_reply(TOKEN, 3600)
        secured.front.bearer_tokens.add(TOKEN)
        oauth = {
            "HERALD_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "HERALD_KAFKA_OAUTH_TOKEN_URL": f"{identity_provider.url}/token",
            "HERALD_KAFKA_OAUTH_CLIENT_ID": "sender-email",
            "HERALD_KAFKA_OAUTH_CLIENT_SECRET": "its-client-secret",
        }
        # The topics job, router and status keep SCRAM-SHA-512, the connection's default.
        mechanisms = {
            "gateway": {"HERALD_KAFKA_SASL_MECHANISM": "PLAIN"},
            "ingest": {"HERALD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
            "sender-email": oauth,
        }
        with running_pipeline(
            secured.broker, overrides=secured.environment(), services=EMAIL_PATH, per_service=mechanisms
        ) as running:
            yield running


async def test_an_email_goes_through_a_cluster_that_takes_only_mutual_tls_and_a_login_by_every_mechanism(
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
    # Every service logged in, each by its mechanism (a client may log in more than once: one connection
    # per broker role).
    assert set(secured.front.logins_by_mechanism) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"}
    assert secured.front.logins >= len(EMAIL_PATH)
    assert secured.front.refused_logins == 0
