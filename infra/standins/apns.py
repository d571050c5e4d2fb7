"""A local APNs provider API: HTTP/2 over TLS, token-based auth, Apple's error answers on demand.

It checks what Apple checks before accepting a notification (the ES256 provider token against the
team's key, the topic, push type, priority, expiration, collapse id and payload) and answers like
Apple: 200 with an ``apns-id``, or a status with ``{"reason": ...}``. It runs on a thread of its own
with its own event loop, so it serves any test's loop; ``ca_path`` is the CA a client must trust.
"""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import ProtocolError

from infra.local.background_loop import BackgroundLoop
from infra.local.processes import StartsAndStops
from infra.standins.tls import local_server_context

HOST = "127.0.0.1"
PUSH_TYPES = frozenset({"alert", "background"})
PRIORITIES = frozenset({"1", "5", "10"})
MAX_PAYLOAD_BYTES = 4096
MAX_COLLAPSE_ID_BYTES = 64
# Apple refuses provider tokens issued more than an hour ago.
TOKEN_MAX_AGE_S = 3600
# Allowance for a client clock slightly ahead of ours.
CLOCK_SKEW_S = 60


def generate_signing_key() -> str:
    """A fresh EC P-256 private key in PEM (PKCS#8), the format of the ``.p8`` keys Apple issues."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass(frozen=True)
class ApnsNotification:
    """One notification the stand-in accepted."""

    device_token: str
    apns_id: str
    # Every request header except the HTTP/2 pseudo-headers and ``authorization``.
    headers: dict[str, str]
    payload: dict[str, Any]
    # The verified provider token: its JOSE header (alg, kid) and its claims (iss, iat).
    token_header: dict[str, Any]
    token_claims: dict[str, Any]


class _Failure(Exception):
    """An error answer: raised while checking a request, or scripted by :meth:`ApnsStandIn.fail_next`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass
class _Stream:
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)


class ApnsStandIn(StartsAndStops):
    """Apple's ``POST /3/device/{token}`` for one team's signing key, on ``https://{host}:{port}``."""

    def __init__(
        self, *, team_id: str, key_id: str, signing_key_pem: str, topic: str | None = None, port: int = 0
    ) -> None:
        self.team_id = team_id
        self.key_id = key_id
        key = serialization.load_pem_private_key(signing_key_pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("an APNs signing key is an EC P-256 key")
        self._public_key = key.public_key()
        # When set, a request for another topic is refused as Apple does for apps outside the team.
        self.topic = topic
        self.host = HOST
        self.port = port
        self.notifications: list[ApnsNotification] = []
        # Called with each accepted notification (the local stack prints them).
        self.on_accept: Callable[[ApnsNotification], None] | None = None
        # Seconds before each answer is sent, to make a client time out.
        self.answer_delay_s = 0.0
        # deque: filled by the test's thread, drained by the server's.
        self._failures: collections.deque[_Failure] = collections.deque()
        self._directory: Path | None = None
        self._loop: BackgroundLoop | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    @property
    def ca_path(self) -> str:
        """The PEM file of the CA that signed the server certificate: what clients must trust."""
        return str(self._files() / "ca.pem")

    @property
    def cert_path(self) -> str:
        """The PEM file of the server certificate (for ``127.0.0.1`` and ``localhost``)."""
        return str(self._files() / "server.pem")

    def fail_next(self, status: int, reason: str) -> None:
        """Answer the next valid request with Apple's error ``status`` and ``reason`` instead of accepting it."""
        self._failures.append(_Failure(status, reason))

    def reset(self) -> None:
        """Forget accepted notifications and pending failures; answer at once again."""
        self.notifications.clear()
        self._failures.clear()
        self.answer_delay_s = 0.0

    def start(self, timeout: float = 10.0) -> None:
        """Generate the certificates, start listening and return once connections are accepted."""
        directory = Path(tempfile.mkdtemp(prefix="apns-standin-"))
        self._directory = directory
        context = local_server_context(directory, "Herald APNs stand-in CA")
        # Apple negotiates h2; a client offering no ALPN (aioapns's default) still speaks HTTP/2 at once.
        context.set_alpn_protocols(["h2"])
        self._loop = BackgroundLoop("apns-standin")
        try:
            self._loop.call(self._listen(context), timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every connection, stop listening and delete the certificates."""
        if self._loop is not None:
            self._loop.call(self._close())
            self._loop.close()
        self._loop = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _files(self) -> Path:
        if self._directory is None:
            raise RuntimeError("the APNs stand-in is not started")
        return self._directory

    async def _listen(self, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, stream: _Stream) -> tuple[int, str, dict[str, Any] | None]:
        """The status, ``apns-id`` and error body (None for 200) for one complete request."""
        headers = stream.headers
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        try:
            notification = self._accept(headers, bytes(stream.body), apns_id)
        except _Failure as failure:
            return failure.status, apns_id, {"reason": failure.reason}
        if self._failures:
            scripted = self._failures.popleft()
            body: dict[str, Any] = {"reason": scripted.reason}
            if scripted.status == 410:
                # When Apple last learned the token was invalid, in milliseconds since the epoch.
                body["timestamp"] = int(time.time() * 1000)
            return scripted.status, apns_id, body
        self.notifications.append(notification)
        if self.on_accept is not None:
            self.on_accept(notification)
        return 200, apns_id, None

    def _accept(self, headers: dict[str, str], body: bytes, apns_id: str) -> ApnsNotification:
        """Check a request as Apple does, in Apple's order; raise the answer it would give."""
        path = headers.get(":path", "")
        prefix = "/3/device/"
        if not path.startswith(prefix):
            raise _Failure(404, "BadPath")
        if headers.get(":method") != "POST":
            raise _Failure(405, "MethodNotAllowed")
        token_header, claims = self._verify_provider_token(headers.get("authorization"))
        device_token = path.removeprefix(prefix)
        if not device_token:
            raise _Failure(400, "MissingDeviceToken")
        if not _is_hex(device_token):
            raise _Failure(400, "BadDeviceToken")
        topic = headers.get("apns-topic")
        if not topic:
            raise _Failure(400, "MissingTopic")
        if self.topic is not None and topic != self.topic:
            raise _Failure(400, "TopicDisallowed")
        if headers.get("apns-push-type") not in PUSH_TYPES:
            raise _Failure(400, "InvalidPushType")
        if "apns-priority" in headers and headers["apns-priority"] not in PRIORITIES:
            raise _Failure(400, "BadPriority")
        if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
            raise _Failure(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > MAX_COLLAPSE_ID_BYTES:
            raise _Failure(400, "BadCollapseId")
        if not _is_uuid(apns_id):
            raise _Failure(400, "BadMessageId")
        if not body:
            raise _Failure(400, "PayloadEmpty")
        if len(body) > MAX_PAYLOAD_BYTES:
            raise _Failure(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            # Apple documents no reason for this; the stand-in refuses it so no test passes with one.
            raise _Failure(400, "BadPayload")
        recorded = {name: value for name, value in headers.items() if not name.startswith(":")}
        recorded.pop("authorization", None)
        return ApnsNotification(device_token, apns_id, recorded, payload, token_header, claims)

    def _verify_provider_token(self, authorization: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _Failure(403, "MissingProviderToken")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                raise _Failure(403, "InvalidProviderToken")
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["ES256"],
                issuer=self.team_id,
                options={"require": ["iss", "iat"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.InvalidTokenError as error:
            raise _Failure(403, "InvalidProviderToken") from error
        if time.time() - claims["iat"] > TOKEN_MAX_AGE_S:
            raise _Failure(403, "ExpiredProviderToken")
        return header, claims


class _Connection(asyncio.Protocol):
    """One client's HTTP/2 connection; each request is answered when its stream ends."""

    def __init__(self, standin: ApnsStandIn) -> None:
        self._standin = standin
        self._h2 = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self._streams: dict[int, _Stream] = {}
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._standin._connections.add(self)
        self._h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._standin._connections.discard(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError:
            self._flush()  # h2 queued a GOAWAY naming the error
            self.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._streams[event.stream_id] = _Stream({_text(name): _text(value) for name, value in event.headers})
            elif isinstance(event, DataReceived):
                self._streams[event.stream_id].body += event.data
                # Hand the window back, or a client sending many notifications stalls.
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                stream = self._streams.pop(event.stream_id)
                if self._standin.answer_delay_s:
                    asyncio.get_running_loop().call_later(
                        self._standin.answer_delay_s, self._respond, event.stream_id, stream
                    )
                else:
                    self._respond(event.stream_id, stream)
            elif isinstance(event, StreamReset):
                self._streams.pop(event.stream_id, None)
        self._flush()

    def _respond(self, stream_id: int, stream: _Stream) -> None:
        status, apns_id, error = self._standin.answer(stream)
        headers = [(":status", str(status)), ("apns-id", apns_id)]
        if error is None:
            self._h2.send_headers(stream_id, headers, end_stream=True)
            self._flush()
            return
        body = json.dumps(error).encode()
        headers += [("content-type", "application/json"), ("content-length", str(len(body)))]
        self._h2.send_headers(stream_id, headers)
        # One DATA frame: clients (aioapns among them) parse each frame's data as the whole JSON body.
        self._h2.send_data(stream_id, body, end_stream=True)
        self._flush()

    def _flush(self) -> None:
        if self._transport is not None:
            self._transport.write(self._h2.data_to_send())


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _is_hex(value: str) -> bool:
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


def _is_uuid(value: str) -> bool:
    # Apple wants the canonical 8-4-4-4-12 form, nothing looser.
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
