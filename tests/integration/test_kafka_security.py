"""Herald's Kafka clients on a cluster that enforces TLS and client certificates, on one that enforces SASL
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), and the OAUTHBEARER token provider against a token endpoint. The
brokers and what enforces it in front of them: ``tests/secured_kafka.py``.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from infra.local.processes import free_port, port_accepts
from infra.local.stack import WORKERS, herald_services, service_process
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.kafka.admin import AdminSettings, create_topics
from shared.kafka.connection import (
    ClientCredentialsTokenProvider,
    KafkaConnectionSettings,
    TokenError,
    client_options,
    connection_problem,
)
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Produce
from tests.conftest import REDIS_URL
from tests.integration.conftest import assert_problem, auth
from tests.scripted_http import Reply, ScriptedServer
from tests.secured_kafka import PASSWORD, USER, SecuredBroker, secured_broker, token_endpoint_reply

pytestmark = pytest.mark.integration

EMAIL_REQUEST = {
    "channels": ["email"],
    "recipient": {"email": "ada@example.com"},
    "content": {"subject": "Hi", "text": "Hi"},
}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """Mutual TLS, no SASL."""
    with secured_broker(tmp_path_factory.mktemp("kafka-tls")) as running:
        yield running


@pytest.fixture(scope="module")
def sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """SASL, no TLS: a login per mechanism is easier to watch fail."""
    with secured_broker(tmp_path_factory.mktemp("kafka-sasl"), tls=False, users={USER: PASSWORD}) as running:
        yield running


async def round_trip(settings: AdminSettings) -> list[bytes]:
    """Create the topics, produce one record to the requests topic and consume it back; the values read."""
    created = await create_topics(settings)
    topic = next(name for name in created if ".requests." in name)
    producer = MessageProducer(settings, client_id="secured-test")
    await producer.start()
    try:
        await (await producer.send(Produce(topic=topic, key=b"k", value=b"secured")))
    finally:
        await producer.stop()
    # Read by assignment, not in a group: a group's join would only add the broker's rebalance delay.
    consumer = AIOKafkaConsumer(**client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        batches = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    return [record.value for records in batches.values() for record in records if record.value is not None]


async def test_topics_produce_and_consume_go_through_mutual_tls(secured: SecuredBroker) -> None:
    assert await round_trip(secured.settings()) == [b"secured"]


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


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_each_sasl_mechanism_logs_in_and_produces_and_consumes(sasl: SecuredBroker, mechanism: str) -> None:
    refused = sasl.front.refused_logins
    assert await round_trip(sasl.settings(kafka_sasl_mechanism=mechanism)) == [b"secured"]
    assert sasl.front.refused_logins == refused


@pytest.mark.parametrize(
    ("change", "counted"),
    [
        pytest.param({"kafka_sasl_password": "wrong"}, True, id="scram-wrong-password"),
        pytest.param({"kafka_sasl_username": "nobody"}, True, id="scram-unknown-user"),
        pytest.param(
            {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_password": "wrong"}, True, id="plain-wrong-password"
        ),
        pytest.param(
            {"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}, False, id="no-sasl-at-all"
        ),
    ],
)
async def test_a_login_the_cluster_refuses_keeps_the_client_out(
    sasl: SecuredBroker, change: dict[str, object], counted: bool
) -> None:
    refused = sasl.front.refused_logins
    producer = MessageProducer(sasl.settings(**change), client_id="refused")
    with pytest.raises(KafkaError):
        await producer.start()
    await producer.stop()
    assert sasl.front.refused_logins == refused + (1 if counted else 0)


@pytest.fixture(scope="module")
def tls_and_sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredBroker]:
    """Mutual TLS and a SCRAM login, as the e2e test's cluster."""
    with secured_broker(tmp_path_factory.mktemp("kafka-both"), users={USER: PASSWORD}) as running:
        yield running


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            {"kafka_sasl_password": "wrong"},
            "check HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD",
            id="wrong-password",
        ),
        pytest.param({"kafka_sasl_username": "nobody"}, "login of 'nobody'", id="unknown-user"),
        pytest.param(
            {"kafka_ssl_cert_file": None, "kafka_ssl_key_file": None},
            "HERALD_KAFKA_SSL_CERT_FILE",
            id="no-client-certificate",
        ),
        pytest.param({"kafka_ssl_ca_file": None}, "set HERALD_KAFKA_SSL_CA_FILE", id="untrusted-certificate"),
        pytest.param({"kafka_security_protocol": "SSL", "kafka_sasl_mechanism": None}, "SASL_SSL", id="no-login"),
        pytest.param(
            {"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None}, "(PLAINTEXT)", id="plaintext"
        ),
        pytest.param(
            {"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}, "nothing answers Kafka", id="nothing-there"
        ),
    ],
)
async def test_why_a_client_cannot_connect_is_told_in_one_line_naming_the_settings(
    tls_and_sasl: SecuredBroker, change: dict[str, object], named: str
) -> None:
    assert await connection_problem(KafkaConnectionSettings.model_validate(tls_and_sasl.connection())) is None
    problem = await connection_problem(KafkaConnectionSettings.model_validate(tls_and_sasl.connection(**change)))
    assert problem is not None
    assert named in problem
    assert "\n" not in problem


def start_failures(metrics_url: str) -> float:
    """``herald_kafka_start_failures_total`` as the service's ``/metrics`` says."""
    families = text_string_to_metric_families(httpx.get(metrics_url).text)
    return next(family for family in families if family.name == "herald_kafka_start_failures").samples[0].value


def test_a_service_the_cluster_refuses_stays_up_not_ready_says_why_once_and_starts_once_it_may(
    tls_and_sasl: SecuredBroker,
) -> None:
    newcomer = f"newcomer-{uuid.uuid4().hex[:8]}"
    prefix = f"refused-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics(tls_and_sasl.settings(topic_prefix=prefix)))
    environment = {
        "HERALD_TOPIC_PREFIX": prefix,
        "HERALD_REDIS_URL": REDIS_URL,
        # Tansu refuses InitProducerId, which the idempotent producer needs.
        "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "false",
        # Requests are not consumed here: no producer keys, so no Postgres, needed.
        "HERALD_REQUIRE_SIGNED_REQUESTS": "false",
        # The user the service logs in as does not exist yet.
        **tls_and_sasl.environment(kafka_sasl_username=newcomer, kafka_sasl_password="its-own-password"),
    }
    spec = next(spec for spec in herald_services(free_port(), [free_port() for _ in WORKERS]) if spec.name == "ingest")
    ops = f"http://127.0.0.1:{spec.port}"
    with service_process(spec, environment, line_sink=None) as process:
        # Refused, and refused again after its back-off: it neither exits nor gives up.
        process.wait_until(
            lambda: port_accepts("127.0.0.1", spec.port) and start_failures(f"{ops}/metrics") >= 2,
            timeout=30,
            what="two refused starts",
        )
        ready = httpx.get(f"{ops}/ready")
        assert ready.status_code == 503
        assert "check HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD" in ready.json()["checks"]["kafka"]
        # Alive: restarting it would not change the answer.
        assert httpx.get(f"{ops}/health").status_code == 200
        output = process.output_tail(200)
        assert "Traceback" not in "\n".join(output)
        [line] = [line for line in output if "cannot use Kafka" in line]
        assert "check HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD" in line

        assert tls_and_sasl.front.users is not None
        tls_and_sasl.front.users[newcomer] = "its-own-password"
        try:
            process.wait_http_ready(f"{ops}/ready", timeout=60)
        finally:
            del tls_and_sasl.front.users[newcomer]
        assert any("kafka_started" in line for line in process.output_tail(50))


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


async def test_an_oauthbearer_login_presents_the_identity_providers_token_and_one_the_cluster_rejects_is_refused(
    sasl: SecuredBroker,
) -> None:
    with ScriptedServer().serving() as idp:
        oauth = {
            "kafka_sasl_mechanism": "OAUTHBEARER",
            "kafka_oauth_token_url": f"{idp.url}/token",
            "kafka_oauth_client_id": "herald",
            "kafka_oauth_client_secret": "s3cret",
        }
        idp.reply = token_endpoint_reply("a-token-the-cluster-trusts", 3600)
        sasl.front.bearer_tokens.add("a-token-the-cluster-trusts")
        logins = sasl.front.logins
        assert await round_trip(sasl.settings(**oauth)) == [b"secured"]
        assert sasl.front.logins > logins
        assert idp.requests[0].body == b"grant_type=client_credentials"

        idp.reply = token_endpoint_reply("a-token-from-elsewhere", 3600)
        refused = sasl.front.refused_logins
        producer = MessageProducer(sasl.settings(**oauth), client_id="refused")
        with pytest.raises(KafkaError):
            await producer.start()
        await producer.stop()
        assert sasl.front.refused_logins == refused + 1
        problem = await connection_problem(KafkaConnectionSettings.model_validate(sasl.connection(**oauth)))
        assert problem is not None
        assert "refused the OAUTHBEARER token of client 'herald'" in problem


async def test_refused_client_credentials_name_the_settings_to_check() -> None:
    with ScriptedServer().serving() as idp:
        idp.reply = Reply(401, {"Content-Type": "application/json"}, b'{"error": "invalid_client"}')
        provider = ClientCredentialsTokenProvider(f"{idp.url}/token", "herald", "wrong")
        with pytest.raises(TokenError, match="HERALD_KAFKA_OAUTH_CLIENT_SECRET"):
            await provider.token()


def test_a_gateway_the_cluster_refuses_serves_reads_answers_sends_with_503_and_is_not_ready(
    tls_and_sasl: SecuredBroker, gateway_settings: GatewaySettings
) -> None:
    refused = GatewaySettings.model_validate(
        {**gateway_settings.model_dump(), **tls_and_sasl.connection(kafka_sasl_password="wrong")}
    )
    with TestClient(create_app(refused)) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "check HERALD_KAFKA_SASL_USERNAME and HERALD_KAFKA_SASL_PASSWORD" in ready.json()["checks"]["kafka"]
        assert client.get("/health").status_code == 200

        sent = client.post("/api/v1/notifications", json=EMAIL_REQUEST, headers=auth())
        problem = assert_problem(sent, 503)
        assert "nothing was accepted" in problem["detail"]
        assert sent.headers["Retry-After"] == "5"
        # Reads do not need Kafka: the API stays useful.
        assert client.get("/api/v1/notifications", headers=auth()).status_code == 200
