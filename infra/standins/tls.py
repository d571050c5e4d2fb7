"""TLS for local stand-ins: a throwaway CA and a server certificate for 127.0.0.1 (or the names a test gives)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def local_server_context(
    directory: Path, issuer: str, hosts: Sequence[str] = ("localhost", "127.0.0.1")
) -> ssl.SSLContext:
    """A TLS server context for ``hosts`` (names or IP addresses), signed by a fresh CA written to
    ``directory/ca.pem``.

    Clients under test trust that CA file, so they verify certificates exactly as in production.
    """
    return LocalCa(directory, issuer).server_context(hosts)


class LocalCa:
    """A throwaway certificate authority in ``directory`` (``ca.pem``): it signs server certificates and,
    for mutual TLS, client certificates."""

    def __init__(self, directory: Path, issuer: str) -> None:
        self.directory = directory
        now = datetime.datetime.now(datetime.UTC)
        self._validity = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
        usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        certificate = (
            self._builder(self._name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def server_certificate(self, hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> tuple[Path, Path]:
        """A server certificate for ``hosts`` (names or IP addresses) and its key (PEM files), for a server that
        reads files (Apache Kafka in a container)."""
        names = x509.SubjectAlternativeName([_subject_name(host) for host in hosts])
        return self._issue("server", hosts[0], x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, names)

    def server_context(self, hosts: Sequence[str] = ("localhost", "127.0.0.1")) -> ssl.SSLContext:
        """A TLS server context with a certificate for ``hosts`` (names or IP addresses)."""
        certificate, key = self.server_certificate(hosts)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certificate, key)
        return context

    def client_certificate(self, name: str) -> tuple[Path, Path]:
        """A client certificate for ``name`` and its key (PEM files), for mutual TLS."""
        return self._issue(f"client-{name}", name, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._validity[0])
            .not_valid_after(self._validity[1])
        )

    def _issue(
        self,
        stem: str,
        common_name: str,
        purpose: x509.ObjectIdentifier,
        names: x509.SubjectAlternativeName | None = None,
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key())
        if names is not None:
            builder = builder.add_extension(names, critical=False)
        certificate = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        certificate_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}-key.pem"
        certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        pkcs8, unencrypted = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, unencrypted))
        return certificate_path, key_path


def _subject_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
