"""Herald's Kafka clients on a cluster that enforces TLS and client certificates, and the OAUTHBEARER token
provider against a token endpoint. The broker and its TLS terminator: ``tests/kafka_tls.py``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from shared.kafka.admin import create_topics
from shared.kafka.connection import ClientCredentialsTokenProvider, TokenError, client_options
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Produce
from tests.kafka_tls import SecuredBroker, secured_broker
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    with secured_broker(tmp_path_factory.mktemp("kafka-tls")) as running:
        yield running


async def test_topics_produce_and_consume_go_through_mutual_tls(secured: SecuredBroker) -> None:
    settings = secured.settings()
    created = await create_topics(settings)
    topic = next(name for name in created if ".requests." in name)
    producer = MessageProducer(settings, client_id="tls-test")
    await producer.start()
    try:
        await (await producer.send(Produce(topic=topic, key=b"k", value=b"over TLS")))
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(topic, **client_options(settings), group_id="tls-test", auto_offset_reset="earliest")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [record.value for records in batches.values() for record in records] == [b"over TLS"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"kafka_ssl_cert_file": None, "kafka_ssl_key_file": None}, id="no-client-certificate"),
        pytest.param({"kafka_ssl_ca_file": None}, id="broker-certificate-from-an-untrusted-ca"),
        pytest.param({"kafka_security_protocol": "PLAINTEXT"}, id="plaintext"),
    ],
)
async def test_a_client_the_cluster_would_not_trust_or_that_would_not_trust_it_cannot_connect(
    secured: SecuredBroker, change: dict[str, object]
) -> None:
    producer = MessageProducer(secured.settings(**change), client_id="refused")
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


def token_endpoint_reply(token: str, expires_in: int) -> Reply:
    body = orjson.dumps({"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
    return Reply(200, {"Content-Type": "application/json"}, body)


async def test_the_token_provider_asks_with_client_credentials_and_reuses_a_token_until_near_its_expiry() -> None:
    with ScriptedServer().serving() as idp:
        # Lifetimes shorter than the refresh margin are refreshed at half their life; 0 s: at once.
        idp.script("/token", token_endpoint_reply("first", 3600), token_endpoint_reply("second", 0))
        provider = ClientCredentialsTokenProvider(f"{idp.url}/token", "herald", "s3cret", scope="kafka")

        assert [await provider.token(), await provider.token()] == ["first", "first"]
        assert len(idp.requests) == 1
        request = idp.requests[0]
        assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"herald:s3cret").decode()
        assert request.body == b"grant_type=client_credentials&scope=kafka"

        provider._refresh_at = 0.0
        assert await provider.token() == "second"
        idp.reply = token_endpoint_reply("third", 3600)
        assert await provider.token() == "third"


async def test_refused_client_credentials_name_the_settings_to_check() -> None:
    with ScriptedServer().serving() as idp:
        idp.reply = Reply(401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}')
        provider = ClientCredentialsTokenProvider(f"{idp.url}/token", "herald", "wrong")
        with pytest.raises(TokenError, match="HERALD_KAFKA_OAUTH_CLIENT_SECRET"):
            await provider.token()
