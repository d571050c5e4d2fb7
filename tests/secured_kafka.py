"""A Kafka broker that enforces what a secured cluster does, for the tests of Herald's Kafka security.

Tansu 0.6 can enforce neither TLS nor SASL itself, so the broker sits behind a front
(``infra/local/broker_front.py``) that does: TLS asking every client for a certificate signed by the test's
CA, SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) against the test's users, or both. The broker advertises the
front's port, so every connection a client makes, the bootstrap one and those metadata points it to, goes
through it.
"""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from infra.local.broker import Broker
from infra.local.broker_front import BrokerFront
from infra.local.processes import free_port
from infra.standins.tls import LocalCa
from shared.kafka.admin import AdminSettings

USER, PASSWORD = "herald", "kafka-password-for-tests"


class SecuredBroker:
    """A broker reachable only through its front: mutual TLS if ``tls``, SASL for ``users`` if any;
    ``settings()`` and ``environment()`` give a client's connection with the client certificate and
    :data:`USER`."""

    def __init__(self, directory: Path, *, tls: bool = True, users: Mapping[str, str] | None = None) -> None:
        self.ca = LocalCa(directory, "Kafka test CA")
        context = None
        if tls:
            context = self.ca.server_context()
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca.ca_file)
        self.front = BrokerFront(free_port(), tls=context, users=users)
        self.broker = Broker(
            self.front.upstream_port, name="secured-broker", line_sink=None, advertised_port=self.front.port
        )
        self.client_certificate = self.ca.client_certificate("herald")
        self.protocol = ("SASL_" if users is not None else "") + ("SSL" if tls else "PLAINTEXT")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.front.port}"

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
            "kafka_idempotent_producer": False,
        }
        return AdminSettings.model_validate(own | self.connection(**overrides))

    def environment(self, **overrides: object) -> dict[str, str]:
        """The ``HERALD_KAFKA_*`` variables of a service connecting as :meth:`connection` does."""
        return {f"HERALD_{name.upper()}": str(value) for name, value in self.connection(**overrides).items()}


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
