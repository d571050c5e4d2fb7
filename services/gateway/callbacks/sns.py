"""Amazon SNS HTTP(S) deliveries: verifying a message's signature, and confirming a subscription.

SNS signs each message with its RSA key (SHA1 for SignatureVersion 1, SHA256 for 2) over the message's
fields in a fixed order; the certificate is at ``SigningCertURL``. Only certificates (and subscription
URLs) on SNS's own hosts, over HTTPS, are trusted, fetched through the SSRF guard (a name that resolves
to a private address is refused); and since anyone can have SNS sign messages of a topic of their own,
only messages of the configured topics are accepted.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shared.ssrf import NonPublicAddress, OutboundGuard

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
# The signed fields of each message type, in the order SNS signs them.
_SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# Signing certificates are few (one per region, rotated rarely); a bound keeps a flood of URLs harmless.
_MAX_CACHED_CERTIFICATES = 32


class NotFromSns(Exception):
    """The message is not a genuine SNS message of an accepted topic."""


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signed: ``name\\nvalue\\n`` for each signed field present, in SNS's order."""
    fields = _SIGNED_FIELDS.get(str(message.get("Type")))
    if fields is None:
        raise NotFromSns(f"unknown message type {message.get('Type')!r}")
    text = "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None)
    return text.encode()


class SnsVerifier:
    """Checks SNS messages for the ``topic_arns`` and fetches certificates and confirmations from ``hosts``,
    at addresses ``guard`` allows.

    ``ca_file`` (tests only) is trusted for those HTTPS requests instead of the system's CAs.
    """

    def __init__(
        self,
        *,
        topic_arns: Collection[str],
        hosts: str,
        guard: OutboundGuard,
        ca_file: str | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._topic_arns = frozenset(topic_arns)
        self._hosts = re.compile(hosts)
        self._guard = guard
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._timeout_s = timeout_s
        self._certificates: dict[str, rsa.RSAPublicKey] = {}

    def trusted_url(self, url: object) -> str:
        """``url`` if it is HTTPS on an SNS host; raises :class:`NotFromSns` otherwise."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "https" or not self._hosts.fullmatch(parts.hostname or ""):
            raise NotFromSns(f"not an SNS URL: {url!r}")
        return str(url)

    async def verify(self, message: Mapping[str, Any]) -> None:
        """Raise :class:`NotFromSns` unless ``message`` is signed by SNS and of an accepted topic."""
        topic = message.get("TopicArn")
        if not isinstance(topic, str) or topic not in self._topic_arns:
            raise NotFromSns(f"topic {topic!r} is not one of HERALD_SES_SNS_TOPIC_ARNS")
        algorithm = _HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise NotFromSns(f"unknown SignatureVersion {message.get('SignatureVersion')!r}")
        try:
            signature = base64.b64decode(str(message.get("Signature")), validate=True)
        except binascii.Error:
            raise NotFromSns("the signature is not base64") from None
        key = await self._certificate(self.trusted_url(message.get("SigningCertURL")))
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise NotFromSns("the signature does not verify") from None

    async def confirm(self, message: Mapping[str, Any]) -> None:
        """Confirm a (verified) subscription by fetching its ``SubscribeURL``, which must be SNS's."""
        (await self._get(self.trusted_url(message.get("SubscribeURL")))).raise_for_status()

    async def _certificate(self, url: str) -> rsa.RSAPublicKey:
        key = self._certificates.get(url)
        if key is None:
            response = await self._get(url)
            response.raise_for_status()
            try:
                public_key = x509.load_pem_x509_certificate(response.content).public_key()
            except ValueError:
                raise NotFromSns(f"no certificate at {url}") from None
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise NotFromSns(f"the certificate at {url} has no RSA key")
            if len(self._certificates) >= _MAX_CACHED_CERTIFICATES:
                self._certificates.clear()
            self._certificates[url] = key = public_key
        return key

    async def _get(self, url: str) -> httpx.Response:
        # The guard's client follows no redirects: a redirect could leave SNS's hosts.
        try:
            async with self._guard.client(verify=self._verify, timeout=self._timeout_s) as client:
                return await client.get(url)
        except NonPublicAddress as error:
            raise NotFromSns(f"refused: {error}") from None
