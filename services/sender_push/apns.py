"""APNs provider: sends iOS alerts straight to Apple's provider API (HTTP/2, token auth) with aioapns."""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from aioapns.connection import APNsTLSClientProtocol
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import Priority, PushDelivery
from shared.providers.base import ProviderConfigError

NAME = "apns"
PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"
# Apple's key and team identifiers are ten upper-case letters and digits.
# How long close() waits for the connections to shut down.
CLOSE_TIMEOUT_S = 2.0
_APPLE_ID = re.compile(r"[A-Z0-9]{10}")
# As the FCM provider maps them: an alert at 5 may wait for the device's power state, too late for "normal".
_PRIORITY: dict[Priority, int] = {"high": 10, "normal": 10, "low": 5}


@dataclass(frozen=True)
class ApnsConfig:
    """An APNs signing key (.p8) of a team, and the app (topic) its notifications go to."""

    key_id: str
    team_id: str
    # The app's bundle id.
    topic: str
    # The .p8 key: its PEM text, or the path of its file (give one).
    key_pem: str | None = field(default=None, repr=False)
    key_path: str | None = None
    # Apple's sandbox, for development builds of the app; tokens of one environment fail in the other.
    use_sandbox: bool = False
    # Another host than Apple's (a stand-in in tests); None for Apple's production or sandbox host.
    host: str | None = None
    # 443, or Apple's alternative 2197 where outbound 443 is blocked.
    port: int = 443
    # A CA bundle to trust instead of the system's (a stand-in's CA); None for the system's.
    ca_file: str | None = None
    # Bound on one send: connecting, waiting for a stream and Apple's answer.
    timeout_s: float = 10.0
    # HTTP/2 connections to Apple at most; each carries many notifications at once.
    max_connections: int = 4
    # Connection attempts per send (aioapns waits a second between them).
    max_connection_attempts: int = 3


class ApnsProvider:
    """Delivers :class:`PushDelivery` records for iOS devices through APNs."""

    name = NAME

    def __init__(self, config: ApnsConfig) -> None:
        self._config = config
        self._host = config.host or (SANDBOX_HOST if config.use_sandbox else PRODUCTION_HOST)
        # Created on first send: aioapns binds its pool to the event loop running when it is made.
        self._client: APNs | None = None
        # Every send under way, those a timeout abandoned too (see send): held so none is collected mid-flight.
        self._in_flight: set[asyncio.Task[NotificationResult]] = set()

    async def send(self, delivery: PushDelivery) -> Outcome:
        """Send one alert: 200 is delivered; 429, 5xx, 403 and network trouble retryable; other refusals not."""
        if delivery["platform"] != "ios":
            return Failed(self.name, "apns sends to ios devices only", DeadLetterReason.INVALID_PAYLOAD)
        alert = {"body": delivery["body"]}
        if delivery["title"]:
            alert["title"] = delivery["title"]
        request = NotificationRequest(
            device_token=delivery["token"],
            # "aps" last: custom data must not replace what the device displays.
            message={**delivery["data"], "aps": {"alert": alert}},
            notification_id=_apns_id(delivery["delivery_id"]),
            time_to_live=delivery["ttl_s"],
            priority=_PRIORITY[delivery["priority"]],
            collapse_key=delivery["collapse_key"],
            push_type=PushType.ALERT,
        )
        # aioapns resolves each request's future from its connection; cancelling one mid-request makes
        # that later fail inside the connection and drop every other request on it. So the request runs
        # as a task of its own that a timeout (ours or the caller's) abandons rather than cancels.
        task = asyncio.ensure_future(self._apns().send_notification(request))
        self._in_flight.add(task)
        task.add_done_callback(self._forget)
        try:
            async with asyncio.timeout(self._config.timeout_s):
                result = await asyncio.shield(task)
        except TimeoutError:
            return Retry(self.name, f"no answer from APNs within {self._config.timeout_s}s")
        except (MaxAttemptsExceeded, ApnsConnectionError) as error:
            return Retry(self.name, f"cannot reach APNs at {self._host}:{self._config.port}: {error!r}")
        except (ConnectionClosed, OSError) as error:
            return Retry(self.name, f"APNs connection failed: {error!r}")
        return _classify(result)

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        if not _APPLE_ID.fullmatch(config.key_id):
            raise ProviderConfigError(f"HERALD_APNS_KEY_ID: not an APNs key id (10 letters/digits): {config.key_id!r}")
        if not _APPLE_ID.fullmatch(config.team_id):
            raise ProviderConfigError(f"HERALD_APNS_TEAM_ID: not a team id (10 letters/digits): {config.team_id!r}")
        if not config.topic:
            raise ProviderConfigError("HERALD_APNS_TOPIC: required (the app's bundle id)")
        if (config.key_pem is None) == (config.key_path is None):
            raise ProviderConfigError("HERALD_APNS_KEY or HERALD_APNS_KEY_PATH: give exactly one")
        variable = "HERALD_APNS_KEY" if config.key_pem is not None else "HERALD_APNS_KEY_PATH"
        try:
            key = serialization.load_pem_private_key(self._key_pem().encode(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise ProviderConfigError(f"{variable}: cannot read the .p8 signing key: {error}") from error
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ProviderConfigError(f"{variable}: not an EC P-256 key (APNs signs its tokens with ES256)")
        if not 0 < config.port < 65536:
            raise ProviderConfigError(f"HERALD_APNS_PORT: not a port: {config.port}")
        if config.ca_file is not None and not Path(config.ca_file).is_file():
            raise ProviderConfigError(f"HERALD_APNS_CA_FILE: no such file: {config.ca_file!r}")
        if config.timeout_s <= 0:
            raise ProviderConfigError("HERALD_PROVIDER_TIMEOUT_S: must be positive")
        if config.max_connections < 1:
            raise ProviderConfigError("HERALD_APNS_MAX_CONNECTIONS: at least 1")
        if config.max_connection_attempts < 1:
            raise ProviderConfigError("HERALD_APNS_MAX_CONNECTION_ATTEMPTS: at least 1")

    async def health(self) -> None:
        """Readiness: APNs accepts a TLS connection and agrees to speak HTTP/2.

        It does not prove the signing key: only a notification does, and there is none to spend.
        """
        async with asyncio.timeout(self._config.timeout_s):
            _, writer = await asyncio.open_connection(self._host, self._config.port, ssl=self._ssl_context())
            protocol = writer.get_extra_info("ssl_object").selected_alpn_protocol()
            # Dropped, not closed: the server's HTTP/2 SETTINGS arriving during a TLS close is an error.
            writer.transport.abort()
        if protocol != "h2":
            raise ConnectionError(f"{self._host}:{self._config.port} does not speak HTTP/2 (ALPN: {protocol!r})")

    async def close(self) -> None:
        """Close the connections and end abandoned sends (the client is made again if used after)."""
        if self._client is None:
            return
        pool, self._client = self._client.pool, None
        closed = [connection.closed for connection in pool.connections if isinstance(connection, _Connection)]
        pool.close()
        # TLS closes take a few turns of the loop; waiting lets no socket outlive it (bounded: Apple may not
        # answer the close).
        if closed:
            await asyncio.wait(closed, timeout=CLOSE_TIMEOUT_S)
        # Only now: the lost connections have failed the sends' requests, so cancelling cannot leave aioapns
        # a cancelled future to resolve, and it stops them reconnecting to send again.
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _apns(self) -> APNs:
        if self._client is None:
            config = self._config
            client = APNs(
                key=self._key_pem(),
                key_id=config.key_id,
                team_id=config.team_id,
                topic=config.topic,
                max_connections=config.max_connections,
                max_connection_attempts=config.max_connection_attempts,
                ssl_context=self._ssl_context(),
            )
            # aioapns takes the host and port from its protocol class (production's, or the sandbox's with
            # use_sandbox): a subclass points it at the host chosen here, which use_sandbox also decides.
            client.pool.protocol_class = _protocol_for(self._host, config.port)
            self._client = client
        return self._client

    def _key_pem(self) -> str:
        config = self._config
        if config.key_pem is not None:
            return config.key_pem
        return Path(config.key_path or "").read_text()

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self._config.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # aioapns offers no ALPN by default; offering h2 is what Apple documents and health() checks.
        context.set_alpn_protocols(["h2"])
        return context

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        # An abandoned send's error has no one waiting for it; retrieved so asyncio does not log it.
        if not task.cancelled():
            task.exception()


class _Connection(APNsTLSClientProtocol):
    """aioapns's connection, telling when it is closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: asyncio.Future[None] = self.loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if not self.closed.done():
                self.closed.set_result(None)


def _protocol_for(host: str, port: int) -> type[_Connection]:
    class _Pinned(_Connection):
        # Also the request's host header, as for Apple's own hosts.
        APNS_SERVER = host
        APNS_PORT = port

    return _Pinned


def _apns_id(delivery_id: str) -> str:
    """Apple's ``apns-id`` must be a canonical UUID: the delivery id if it is one, else one derived from it."""
    try:
        return str(uuid.UUID(delivery_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"herald:delivery:{delivery_id}"))


def _classify(result: NotificationResult) -> Outcome:
    status, reason = int(result.status), result.description or ""
    detail = f"{status} {reason}".rstrip()
    if status == 200:
        return Delivered(NAME, result.notification_id)
    # 410 is Unregistered (or ExpiredToken); BadDeviceToken is not a token of this environment's devices.
    if status == 410:
        return Failed(NAME, f"unregistered token: {detail}", DeadLetterReason.UNREGISTERED_TOKEN)
    if reason == "BadDeviceToken":
        return Failed(NAME, f"invalid token: {detail}", DeadLetterReason.INVALID_TOKEN)
    if reason == "DeviceTokenNotForTopic":
        # A token of another app (or a wrong HERALD_APNS_TOPIC): kept, since it may be right for that app.
        return Failed(NAME, f"token not for topic: {detail}", DeadLetterReason.PERMANENT_FAILURE)
    if status == 429:
        return Retry(NAME, detail, reason="rate_limited")
    if status == 403:
        # The signing key or team, not the message: another provider can still send it, so fail over.
        return Retry(
            NAME,
            f"{detail} (check HERALD_APNS_KEY, HERALD_APNS_KEY_ID, HERALD_APNS_TEAM_ID)",
            reason="provider_account",
        )
    if status >= 500:
        return Retry(NAME, detail)
    return Failed(NAME, detail)
