"""A Kafka broker that enforces what a secured cluster does, for the tests of Herald's Kafka security.

Tansu 0.6 can enforce neither TLS nor SASL itself, so the broker sits behind a front
(``infra/local/broker_front.py``) that does: TLS asking every client for a certificate signed by the test's
CA, SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) against the test's users, or both. The broker advertises the
front's port, so every connection a client makes, the bootstrap one and those metadata points it to, goes
through it. Where a Docker engine runs, :func:`secured_apache_kafka` is Apache Kafka enforcing both itself
(``tests/kafka_containers.py``); clients connect to either the same way (:class:`SecuredKafka`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from infra.local.broker import Broker
from infra.local.broker_front import BrokerFront
from infra.local.processes import free_port
from infra.standins.tls import LocalCa
from shared.kafka.admin import AdminSettings
from shared.kafka.connection import KafkaConnectionSettings, connection_problem
from tests.kafka_containers import START_TIMEOUT_S, kafka_container
from tests.scripted_http import Reply

USER, PASSWORD = "herald", "kafka-password-for-tests"


class SecuredKafka:
    """How a client connects to a cluster that takes mutual TLS with the test's CA if ``tls`` and a SASL login if
    ``sasl``: ``settings()`` and ``environment()`` give a client's connection with the client certificate and
    :data:`USER`. ``idempotent_producer``: whether the cluster answers InitProducerId (Tansu does not)."""

    def __init__(self, directory: Path, *, tls: bool, sasl: bool, idempotent_producer: bool = False) -> None:
        self.ca = LocalCa(directory, "Kafka test CA")
        self.client_certificate = self.ca.client_certificate("herald")
        self.protocol = ("SASL_" if sasl else "") + ("SSL" if tls else "PLAINTEXT")
        self.idempotent_producer = idempotent_producer

    @property
    def bootstrap_servers(self) -> str:
        raise NotImplementedError

    def connection(self, **overrides: object) -> dict[str, object]:
        """A client's ``kafka_*`` settings (SCRAM-SHA-512 as :data:`USER` where SASL is on)."""
        values: dict[str, object] = {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_security_protocol": self.protocol,
        }
        if self.protocol.endswith("SSL"):
            certificate, key = self.client_certificate
            values |= {
                "kafka_ssl_ca_file": self.ca.ca_file,
                "kafka_ssl_cert_file": certificate,
                "kafka_ssl_key_file": key,
            }
        if self.protocol.startswith("SASL_"):
            values |= {
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": USER,
                "kafka_sasl_password": PASSWORD,
            }
        return values | overrides

    def settings(self, **overrides: object) -> AdminSettings:
        """A client's settings, on topics of its own."""
        own = {
            "topic_prefix": f"secured-{uuid.uuid4().hex[:8]}",
            "kafka_topic_partitions": 1,
            "kafka_idempotent_producer": self.idempotent_producer,
        }
        return AdminSettings.model_validate(own | self.connection(**overrides))

    def environment(self, **overrides: object) -> dict[str, str]:
        """The ``HERALD_KAFKA_*`` variables of a service connecting as :meth:`connection` does."""
        return {f"HERALD_{name.upper()}": str(value) for name, value in self.connection(**overrides).items()}


class SecuredBroker(SecuredKafka):
    """A Tansu broker reachable only through its front: mutual TLS if ``tls``, SASL for ``users`` if any."""

    def __init__(self, directory: Path, *, tls: bool = True, users: Mapping[str, str] | None = None) -> None:
        super().__init__(directory, tls=tls, sasl=users is not None)
        context = None
        if tls:
            context = self.ca.server_context()
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca.ca_file)
        self.front = BrokerFront(free_port(), tls=context, users=users)
        self.broker = Broker(
            self.front.upstream_port, name="secured-broker", line_sink=None, advertised_port=self.front.port
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.front.port}"


@contextlib.contextmanager
def secured_broker(
    directory: Path, *, tls: bool = True, users: Mapping[str, str] | None = None
) -> Iterator[SecuredBroker]:
    """A :class:`SecuredBroker` running until the block ends."""
    secured = SecuredBroker(directory, tls=tls, users=users)
    secured.front.start()
    try:
        secured.broker.start()
        try:
            yield secured
        finally:
            secured.broker.stop()
    finally:
        secured.front.stop()


# Files Apache Kafka reads its TLS identity from (PEM: the key and certificate chain in one, the CA in the other).
_KEYSTORE, _TRUSTSTORE = "/etc/kafka/herald-server.pem", "/etc/kafka/herald-ca.pem"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


class SecuredApacheKafka(SecuredKafka):
    """Apache Kafka in a container whose listener for clients takes only mutual TLS and a login of :data:`USER`
    (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), configured as a secured cluster is, through the broker's settings."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, tls=True, sasl=True, idempotent_producer=True)
        # Not named ...SSL: Confluent's start script would then want JKS files of its own naming for it; the
        # settings below give the listener its TLS identity as PEM files instead.
        self.container = kafka_container(listener_name="CLIENTS", security_protocol="SASL_SSL")
        # Clients connect to the Docker host's address, which the certificate must name.
        hosts = dict.fromkeys(("localhost", "127.0.0.1", self.container.get_docker_client().host()))
        certificate, key = self.ca.server_certificate(list(hosts))
        self.container.with_copy_into_container(key.read_bytes() + certificate.read_bytes(), _KEYSTORE)
        self.container.with_copy_into_container(self.ca.ca_file.read_bytes(), _TRUSTSTORE)
        # Confluent's image turns KAFKA_A_B___C__D into the broker setting a.b-c_d.
        settings = {
            "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "KAFKA_LISTENER_NAME_CLIENTS_SSL_CLIENT_AUTH": "required",
            "KAFKA_LISTENER_NAME_CLIENTS_SSL_KEYSTORE_TYPE": "PEM",
            "KAFKA_LISTENER_NAME_CLIENTS_SSL_KEYSTORE_LOCATION": _KEYSTORE,
            "KAFKA_LISTENER_NAME_CLIENTS_SSL_TRUSTSTORE_TYPE": "PEM",
            "KAFKA_LISTENER_NAME_CLIENTS_SSL_TRUSTSTORE_LOCATION": _TRUSTSTORE,
            "KAFKA_LISTENER_NAME_CLIENTS_PLAIN_SASL_JAAS_CONFIG": (
                f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{USER}="{PASSWORD}";'
            ),
            "KAFKA_LISTENER_NAME_CLIENTS_SCRAM___SHA___256_SASL_JAAS_CONFIG": _SCRAM_LOGIN,
            "KAFKA_LISTENER_NAME_CLIENTS_SCRAM___SHA___512_SASL_JAAS_CONFIG": _SCRAM_LOGIN,
        }
        for name, value in settings.items():
            self.container.with_env(name, value)
        self._bootstrap_servers: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        assert self._bootstrap_servers is not None, "not started"
        return self._bootstrap_servers

    def start(self) -> None:
        """Start the broker, then give :data:`USER` its SCRAM credentials (Apache Kafka keeps them in its metadata,
        where only a running cluster can put them) and wait until it can log in with them."""
        self.container.start(timeout=START_TIMEOUT_S)
        self._bootstrap_servers = self.container.get_bootstrap_server()
        credentials = f"SCRAM-SHA-256=[password={PASSWORD}],SCRAM-SHA-512=[password={PASSWORD}]"
        # Through the broker's own plaintext listener, inside the container.
        exit_code, output = self.container.exec(
            "kafka-configs --bootstrap-server localhost:9092 --alter --entity-type users "
            f"--entity-name {USER} --add-config {credentials}"
        )
        if exit_code != 0:
            raise RuntimeError(f"creating the SCRAM user {USER!r} failed: {output.decode(errors='replace')}")
        login = KafkaConnectionSettings.model_validate(self.connection())
        deadline = time.monotonic() + 30
        while (problem := asyncio.run(connection_problem(login))) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the SCRAM user {USER!r} cannot log in: {problem}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.container.stop()


@contextlib.contextmanager
def secured_apache_kafka(directory: Path) -> Iterator[SecuredApacheKafka]:
    """A :class:`SecuredApacheKafka` running until the block ends."""
    secured = SecuredApacheKafka(directory)
    try:
        secured.start()
        yield secured
    finally:
        secured.stop()


def token_endpoint_reply(token: str, expires_in: int) -> Reply:
    """An OIDC token endpoint's answer to a client-credentials grant (``tests.scripted_http`` serves it)."""
    body = orjson.dumps({"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
    return Reply(200, {"Content-Type": "application/json"}, body)
