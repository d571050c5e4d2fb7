"""Web Push provider: encrypted pushes (RFC 8291) straight to browsers' push services, signed with VAPID (RFC 8292).

A web delivery's token is the browser's ``PushSubscription`` as JSON: the push service's endpoint
and the browser's keys. The payload is encrypted for those keys with pywebpush (aes128gcm through
http_ece); the request carries a VAPID token py_vapid signs with Herald's key, whose public half
the browser was given when it subscribed. There is no central service: each subscription names its
own (FCM's for Chrome, Mozilla's for Firefox, Apple's for Safari, ...), so each push goes through the
SSRF guard (:mod:`shared.ssrf`): an endpoint on a loopback, private or link-local address is never
called, and the subscription fails as invalid (the sender then disables the device). Of an answer,
only the status and reason phrase are kept in the delivery's detail, never the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher, WebPushException

from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import Priority, PushDelivery
from shared.providers.base import ProviderConfigError
from shared.ssrf import NonPublicAddress, OutboundGuard, status_line

NAME = "webpush"
# Kept this long when the delivery gives no TTL: four weeks, what push services keep at most.
DEFAULT_TTL_S = 2_419_200
# Push services must accept 4096 bytes of encrypted body (RFC 8030 section 7.2); most take no more.
MAX_BODY_BYTES = 4096
# A VAPID token's lifetime (RFC 8292 allows at most 24 hours) and how long one is reused: each is
# ECDSA work, so one per push service every hour rather than one per message.
VAPID_EXPIRY_S = 12 * 3600
VAPID_REUSE_S = 3600
# Signed tokens kept, one per push service origin; subscriptions come from browsers, so bounded.
MAX_CACHED_ORIGINS = 64
# The Topic header (the collapse key) allows at most 32 characters of the URL-safe base64 alphabet.
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_URGENCY: dict[Priority, str] = {"high": "high", "normal": "normal", "low": "low"}
_AUTH_SECRET_BYTES = 16
_P256_POINT_BYTES = 65
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
# Standard or URL-safe, possibly on several lines (a DER key as openssl prints it).
_BASE64 = re.compile(r"^[A-Za-z0-9+/_\s-]+={0,2}$")
_MAILTO = re.compile(r"^mailto:[^@\s]+@[^@\s]+$", re.IGNORECASE)


@dataclass(frozen=True)
class WebPushConfig:
    """Herald's VAPID key pair and contact, sent to every push service."""

    # The VAPID private key (P-256): PEM text, the path of a PEM (or base64 DER) file, or the raw
    # base64url key as web-push tooling prints it.
    vapid_private_key: str = field(repr=False)
    # Who push services may contact about this sender: a ``mailto:`` address or an ``https:`` URL.
    vapid_subject: str
    # Bound on one send: connecting, sending and the push service's answer (seconds).
    timeout_s: float = 10.0
    # HTTP connections open at once, across every push service.
    max_connections: int = 16
    # Which addresses push services may be at (subscriptions come from browsers: public ones only).
    guard: OutboundGuard = field(default_factory=OutboundGuard)


class WebPushProvider:
    """Delivers web :class:`PushDelivery` records to each subscription's push service over one pooled client."""

    name = NAME

    def __init__(self, config: WebPushConfig) -> None:
        self._config = config
        # Checked here, not in validate_config: without a key the provider cannot even say its public key.
        self._vapid = _load_vapid(config.vapid_private_key)
        public = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self._public_key = _b64url(public)
        # origin -> (Authorization header, when to sign a new one (epoch seconds)).
        self._vapid_headers: dict[str, tuple[str, float]] = {}
        # A push service answers 201 or an error; the guard's client follows no redirect.
        self._client = config.guard.client(
            timeout=config.timeout_s,
            limits=httpx.Limits(
                max_connections=max(config.max_connections, 1),
                max_keepalive_connections=max(config.max_connections, 1),
            ),
        )

    @property
    def public_key(self) -> str:
        """The application server key (base64url, uncompressed P-256 point) browsers subscribe with."""
        return self._public_key

    async def send(self, delivery: PushDelivery) -> Outcome:
        """Send one push: 201 is delivered; gone or unusable subscriptions and bad messages fail; the rest retries."""
        if delivery["platform"] != "web":
            return Failed(self.name, "webpush sends to web subscriptions only", DeadLetterReason.INVALID_PAYLOAD)
        try:
            subscription = _subscription(delivery["token"])
        except ValueError as error:  # no usable subscription: the sender disables it for good
            return Failed(self.name, f"invalid token: {error}", DeadLetterReason.INVALID_TOKEN)
        payload = json.dumps(
            {
                "notification_id": delivery["notification_id"],
                "title": delivery["title"],
                "body": delivery["body"],
                "data": delivery["data"],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()
        # Inline on the event loop: encrypting (an ephemeral ECDH key pair, HKDF, AES-GCM) took ~170 µs
        # and a VAPID signature ~90 µs on the development machine (timeit), less than a thread hop's worth
        # of waiting; signatures are cached per origin anyway.
        try:
            body: bytes = WebPusher(subscription.info).encode(payload, "aes128gcm")["body"]
            authorization = self._authorization(subscription.origin)
        except (WebPushException, VapidException, ValueError) as error:
            return Failed(
                self.name, f"invalid token: cannot encrypt or sign for it: {error}", DeadLetterReason.INVALID_TOKEN
            )
        if len(body) > MAX_BODY_BYTES:
            detail = f"payload too large: {len(body)} bytes encrypted, push services take {MAX_BODY_BYTES}"
            return Failed(self.name, detail, DeadLetterReason.INVALID_PAYLOAD)
        headers = {
            "Authorization": authorization,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(max(0, DEFAULT_TTL_S if delivery["ttl_s"] is None else delivery["ttl_s"])),
            "Urgency": _URGENCY[delivery["priority"]],
        }
        collapse_key = delivery["collapse_key"]
        # A key that cannot be a Topic would make the push service refuse the whole message: drop it instead.
        if collapse_key and _TOPIC.match(collapse_key):
            headers["Topic"] = collapse_key
        try:
            # One bound on the whole request: httpx's timeout applies to each phase (connect, write, read).
            async with asyncio.timeout(self._config.timeout_s):
                response = await self._client.post(subscription.endpoint, content=body, headers=headers)
        except NonPublicAddress as error:
            # Not a push service anyone may be sent to: the sender disables the subscription for good.
            return Failed(self.name, f"invalid token: endpoint refused: {error}", DeadLetterReason.INVALID_TOKEN)
        except (TimeoutError, httpx.TimeoutException):
            return Retry(self.name, f"no answer from {subscription.origin} within {self._config.timeout_s}s")
        except httpx.HTTPError as error:
            return Retry(self.name, f"cannot reach the push service at {subscription.origin}: {error!r}")
        if response.status_code in (401, 403):
            # Signed again next time, should the push service have refused this token rather than the key.
            self._vapid_headers.pop(subscription.origin, None)
        return _classify(response)

    def destination(self, delivery: PushDelivery) -> str:
        """The subscription's push service (its origin): each has its own circuit breaker, so one failing
        push service (or one a subscription made up) stops only the pushes to it."""
        # No usable subscription: "", since it fails for good at once, whatever the breaker says.
        try:
            value = json.loads(delivery["token"])
            endpoint = value.get("endpoint") if isinstance(value, dict) else None
            return _origin(endpoint) if isinstance(endpoint, str) else ""
        except ValueError:
            return ""

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        subject = config.vapid_subject
        url = urlsplit(subject)
        if not (_MAILTO.match(subject) or (url.scheme == "https" and url.hostname)):
            raise ProviderConfigError(
                f"HERALD_WEBPUSH_SUBJECT: not a mailto: address or an https: URL push services can reach: {subject!r}"
            )
        if config.timeout_s <= 0:
            raise ProviderConfigError(f"HERALD_PROVIDER_TIMEOUT_S: must be positive: {config.timeout_s}")
        if config.max_connections < 1:
            raise ProviderConfigError(f"HERALD_WEBPUSH_MAX_CONNECTIONS: at least 1: {config.max_connections}")

    async def health(self) -> None:
        """Readiness: the VAPID key is loaded and the client open.

        Web Push has no central service to ask: every subscription names its own push service, and
        only a push to a real subscription would prove the key, so there is nothing cheap to call.
        """
        if self._client.is_closed:
            raise RuntimeError("the Web Push provider is closed")

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    def _authorization(self, origin: str) -> str:
        """The ``vapid t=<JWT>,k=<public key>`` header for one push service, signed at most hourly."""
        now = time.time()
        cached = self._vapid_headers.get(origin)
        if cached is not None and now < cached[1]:
            return cached[0]
        claims = {"aud": origin, "sub": self._config.vapid_subject, "exp": int(now) + VAPID_EXPIRY_S}
        header: str = self._vapid.sign(claims)["Authorization"]
        self._vapid_headers.pop(origin, None)
        if len(self._vapid_headers) >= MAX_CACHED_ORIGINS:
            del self._vapid_headers[next(iter(self._vapid_headers))]  # the oldest
        self._vapid_headers[origin] = (header, now + VAPID_REUSE_S)
        return header


@dataclass(frozen=True)
class _Subscription:
    endpoint: str
    # scheme://host[:port], the VAPID token's audience.
    origin: str
    # As pywebpush takes it.
    info: dict[str, Any]


def _load_vapid(value: str) -> Vapid:
    """py_vapid's signer for a PEM text, a key file (PEM or base64 DER), or a raw base64url key."""
    variable = "HERALD_WEBPUSH_VAPID_PRIVATE_KEY"
    text = value.strip()
    if not text:
        raise ProviderConfigError(f"{variable}: required (py_vapid's `vapid --gen` makes a key pair)")
    try:
        if "-----BEGIN" not in text and _is_file(text):
            # The path of a key file, read once at start-up.
            text = Path(text).read_text(encoding="utf-8").strip()
        if "-----BEGIN" in text:
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"not an EC key: {type(key).__name__}")
            vapid = Vapid(private_key=key)
        else:
            # A 32-byte raw key or a base64 DER one, as py_vapid tells them apart.
            if not _BASE64.match(text):
                raise ValueError("neither PEM, base64 nor the path of a file")
            vapid = Vapid.from_string(text)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm, VapidException) as error:
        raise ProviderConfigError(f"{variable}: cannot read the VAPID private key: {error}") from error
    if not isinstance(vapid.private_key, ec.EllipticCurvePrivateKey) or vapid.private_key.curve.name != "secp256r1":
        raise ProviderConfigError(f"{variable}: not a P-256 key (VAPID signs with ES256)")
    # py_vapid's own check of the subject refuses https URLs with a path, which RFC 8292 allows:
    # validate_config checks it instead.
    vapid.conf = {"no-strict": True}
    return vapid


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: a key, not a path
        return False


def _subscription(token: str) -> _Subscription:
    """The browser's PushSubscription, checked as far as it can be before sending; ValueError says what is wrong."""
    try:
        value = json.loads(token)
    except ValueError:
        raise ValueError("not a PushSubscription (JSON)") from None
    if not isinstance(value, dict):
        raise ValueError("not a PushSubscription (a JSON object)")
    endpoint, keys = value.get("endpoint"), value.get("keys")
    if not isinstance(endpoint, str):
        raise ValueError("no endpoint")
    origin = _origin(endpoint)
    if not isinstance(keys, dict) or not isinstance(keys.get("p256dh"), str) or not isinstance(keys.get("auth"), str):
        raise ValueError("keys.p256dh and keys.auth are required")
    p256dh = _b64url_decode(keys["p256dh"], "keys.p256dh")
    if len(p256dh) != _P256_POINT_BYTES:
        raise ValueError("keys.p256dh is not an uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise ValueError("keys.p256dh is not a point on P-256") from None
    if len(_b64url_decode(keys["auth"], "keys.auth")) != _AUTH_SECRET_BYTES:
        raise ValueError(f"keys.auth is not a {_AUTH_SECRET_BYTES}-byte secret")
    return _Subscription(
        endpoint, origin, {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}
    )


def _origin(endpoint: str) -> str:
    """``scheme://host[:port]`` of a subscription's endpoint; ValueError says why it is not a usable URL."""
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"endpoint is not an http(s) URL: {endpoint[:200]!r}")
    try:
        httpx.URL(endpoint)
        port = url.port
    except (httpx.InvalidURL, ValueError) as error:
        raise ValueError(f"endpoint is not a valid URL: {error}") from None
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname  # an IPv6 literal keeps its brackets
    origin = f"{url.scheme}://{host}"
    if port is not None and port != (443 if url.scheme == "https" else 80):
        origin += f":{port}"
    return origin


def _b64url_decode(value: str, what: str) -> bytes:
    """Base64url, padded or not, as browsers give PushSubscription keys."""
    if not _BASE64URL.match(value):
        raise ValueError(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except binascii.Error:
        raise ValueError(f"{what} is not base64url") from None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _classify(response: httpx.Response) -> Outcome:
    status = response.status_code
    explained = status_line(response)
    if status in (200, 201, 202):
        return Delivered(NAME, response.headers.get("location") or explained)
    if status in (404, 410):
        # The browser unsubscribed (or the subscription expired): the sender disables it for good.
        return Failed(NAME, f"unregistered token: {explained}", DeadLetterReason.UNREGISTERED_TOKEN)
    if status == 400:
        return Failed(NAME, f"bad request: {explained}", DeadLetterReason.INVALID_PAYLOAD)
    if status == 413:
        return Failed(NAME, f"payload too large: {explained}", DeadLetterReason.INVALID_PAYLOAD)
    if status in (401, 403):
        # The VAPID key (or its token), not the message: another provider may still send it.
        return Retry(NAME, f"{explained} (check HERALD_WEBPUSH_VAPID_PRIVATE_KEY)", reason="provider_account")
    if status == 429:
        return Retry(NAME, explained, reason="rate_limited", after_s=_retry_after_s(response.headers))
    if status >= 500 or status == 408:
        return Retry(NAME, explained)
    # Any other refusal: sending it again will not help.
    return Failed(NAME, explained)


def _retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds to wait from ``Retry-After``: a number of seconds or an HTTP date."""
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time()) if value else None
    except (ValueError, TypeError):  # a header we cannot read gives no hint
        return None
