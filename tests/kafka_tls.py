"""A Kafka broker that only speaks TLS and asks every client for a certificate, for the tests of secured clusters.

Tansu 0.6 cannot serve TLS itself, so the broker sits behind a TLS terminator (``infra/local/tls_terminator.py``)
that asks every client for a certificate signed by the test's CA, and advertises the terminator's port: every
connection a client makes, the bootstrap one and those metadata points it to, goes through TLS.
"""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

from infra.local.broker import Broker
from infra.local.processes import free_port
from infra.local.tls_terminator import TlsTerminator
from infra.standins.tls import LocalCa
from shared.kafka.admin import AdminSettings


class SecuredBroker:
    """A broker reachable only through TLS with a client certificate; ``settings()`` gives a client's."""

    def __init__(self, directory: Path) -> None:
        self.ca = LocalCa(directory, "Kafka test CA")
        context = self.ca.server_context()
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(self.ca.ca_file)
        self.terminator = TlsTerminator(context, upstream_port=free_port())
        self.broker = Broker(
            self.terminator.upstream_port, name="tls-broker", line_sink=None, advertised_port=self.terminator.port
        )
        self.client_certificate = self.ca.client_certificate("herald")

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.terminator.port}"

    def settings(self, **overrides: object) -> AdminSettings:
        certificate, key = self.client_certificate
        values: dict[str, object] = {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "kafka_security_protocol": "SSL",
            "kafka_ssl_ca_file": self.ca.ca_file,
            "kafka_ssl_cert_file": certificate,
            "kafka_ssl_key_file": key,
            "topic_prefix": f"tls-{uuid.uuid4().hex[:8]}",
            "kafka_topic_partitions": 1,
            "kafka_idempotent_producer": False,
        }
        return AdminSettings.model_validate(values | overrides)

    def environment(self) -> dict[str, str]:
        """The ``HERALD_KAFKA_*`` variables of a service that connects with the client certificate."""
        certificate, key = self.client_certificate
        return {
            "HERALD_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "HERALD_KAFKA_SECURITY_PROTOCOL": "SSL",
            "HERALD_KAFKA_SSL_CA_FILE": str(self.ca.ca_file),
            "HERALD_KAFKA_SSL_CERT_FILE": str(certificate),
            "HERALD_KAFKA_SSL_KEY_FILE": str(key),
        }


@contextlib.contextmanager
def secured_broker(directory: Path) -> Iterator[SecuredBroker]:
    """A :class:`SecuredBroker` running until the block ends."""
    secured = SecuredBroker(directory)
    secured.terminator.start()
    try:
        secured.broker.start()
        try:
            yield secured
        finally:
            secured.broker.stop()
    finally:
        secured.terminator.stop()
