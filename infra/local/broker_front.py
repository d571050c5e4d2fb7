"""A port in front of a Tansu broker that enforces what a secured Kafka cluster does: TLS (with client
certificates if the TLS context asks for them) and SASL (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``
against a table of users; ``OAUTHBEARER`` against the bearer tokens an identity provider issued), then
relays every byte to the broker's plain listener.

Why it exists: Tansu 0.6 cannot serve TLS (its ``--cert`` and ``--key`` flags exclude each other, and the
TLS acceptor it builds is never used), and its SASL cannot be relied on (its memory and S3 storage keep no
SCRAM credentials, and with ``--authentication`` it lets a client in after a failed SCRAM exchange). The
broker advertises the front's port (``Broker(advertised_port=...)``), so every connection a client makes
goes through it. Before a client has authenticated, only ApiVersions (relayed to the broker),
SaslHandshake and SaslAuthenticate are answered; anything else closes the connection, as Kafka does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections import Counter
from collections.abc import Callable, Mapping

from scramp import ScramException, ScramMechanism

from infra.local.background_loop import BackgroundLoop
from infra.local.processes import StartsAndStops, free_port

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
NONE, UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 0, 33, 58
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
MECHANISMS = ("PLAIN", *SCRAM_MECHANISMS, "OAUTHBEARER")
# What a request's frame may be at most before authentication: a SASL token, not a produce batch.
MAX_UNAUTHENTICATED_FRAME = 64 * 1024


class BrokerFront(StartsAndStops):
    """Listens on ``127.0.0.1:port``; TLS with ``tls`` if given; SASL against ``users`` (name -> password) if
    given, where OAUTHBEARER takes the tokens in :attr:`bearer_tokens` (what the test's identity provider
    issued); then relays to ``upstream_port``. Runs on an event loop of its own, in a thread."""

    def __init__(
        self,
        upstream_port: int,
        *,
        tls: ssl.SSLContext | None = None,
        users: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.tls = tls
        self.users = dict(users) if users is not None else None
        self.bearer_tokens: set[str] = set()
        self.port = port if port is not None else free_port()
        self.logins = 0
        # Logins by SASL mechanism: which clients used what.
        self.logins_by_mechanism: Counter[str] = Counter()
        self.refused_logins = 0
        self._scram = {name: ScramMechanism(name) for name in SCRAM_MECHANISMS}
        self._loop: BackgroundLoop | None = None
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        """Listen; returns once the port accepts connections."""
        self._loop = BackgroundLoop(f"broker-front-{self.port}")
        self._server = self._loop.call(asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls))

    def stop(self) -> None:
        """Close the port and every relayed connection."""
        if self._loop is None:
            return
        self._loop.call(self._close())
        self._loop.close()
        self._loop = self._server = None

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        try:
            if self.users is None or await self._authenticated(
                client_reader, client_writer, upstream_reader, upstream_writer
            ):
                await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_writer, upstream_writer):
                writer.close()

    async def _authenticated(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> bool:
        """Hold the connection until the client has logged in (True) or failed to (False)."""
        mechanism: str | None = None
        scram_server = None
        while True:
            frame = await _read_frame(client_reader)
            if len(frame) > MAX_UNAUTHENTICATED_FRAME:
                return False
            api_key, version, correlation_id, body = _request(frame)
            if api_key == API_VERSIONS:
                upstream_writer.write(struct.pack(">i", len(frame)) + frame)
                answer = await _read_frame(upstream_reader)
                client_writer.write(struct.pack(">i", len(answer)) + answer)
            elif api_key == SASL_HANDSHAKE and mechanism is None:
                asked = _string(body, 0)[0]
                code = NONE if asked in MECHANISMS else UNSUPPORTED_SASL_MECHANISM
                _answer(client_writer, correlation_id, struct.pack(">h", code) + _strings(list(MECHANISMS)))
                if code != NONE:
                    return False
                mechanism = asked
            elif api_key == SASL_AUTHENTICATE and mechanism is not None:
                token = _bytes(body)
                if mechanism == "PLAIN":
                    return self._login_plain(client_writer, correlation_id, version, token)
                if mechanism == "OAUTHBEARER":
                    return self._login_bearer(client_writer, correlation_id, version, token)
                if scram_server is None:
                    scram_server = self._scram[mechanism].make_server(self._auth_info(mechanism))
                    try:
                        scram_server.set_client_first(token.decode())
                    except (ScramException, KeyError, UnicodeDecodeError):
                        return self._refuse(client_writer, correlation_id, version, "unknown user")
                    _authenticate_answer(
                        client_writer, correlation_id, version, NONE, None, scram_server.get_server_first()
                    )
                    continue
                try:
                    scram_server.set_client_final(token.decode())
                except (ScramException, UnicodeDecodeError):
                    return self._refuse(client_writer, correlation_id, version, "invalid credentials")
                return self._accept(client_writer, correlation_id, version, mechanism, scram_server.get_server_final())
            else:
                # Kafka closes a connection that sends anything else before it has authenticated.
                return False
            await client_writer.drain()

    def _auth_info(self, mechanism: str) -> Callable[[str], tuple[bytes, bytes, bytes, int]]:
        scram = self._scram[mechanism]
        users = self.users or {}

        def auth_fn(username: str) -> tuple[bytes, bytes, bytes, int]:
            salt, stored_key, server_key, iterations = scram.make_auth_info(users[username], iteration_count=4096)
            return salt, stored_key, server_key, iterations

        return auth_fn

    def _login_plain(self, writer: asyncio.StreamWriter, correlation_id: int, version: int, token: bytes) -> bool:
        _, _, rest = token.partition(b"\0")
        username, _, password = rest.partition(b"\0")
        users = self.users or {}
        if users.get(username.decode(errors="replace")) != password.decode(errors="replace"):
            return self._refuse(writer, correlation_id, version, "invalid credentials")
        return self._accept(writer, correlation_id, version, "PLAIN")

    def _login_bearer(self, writer: asyncio.StreamWriter, correlation_id: int, version: int, token: bytes) -> bool:
        # RFC 7628's initial client response: "n,," then \x01-separated key=value pairs, auth=Bearer <token>.
        fields = dict(part.partition(b"=")[::2] for part in token.split(b"\x01")[1:] if part)
        scheme, _, bearer = fields.get(b"auth", b"").partition(b" ")
        if scheme.lower() != b"bearer" or bearer.decode(errors="replace") not in self.bearer_tokens:
            return self._refuse(writer, correlation_id, version, "invalid token")
        return self._accept(writer, correlation_id, version, "OAUTHBEARER")

    def _accept(
        self, writer: asyncio.StreamWriter, correlation_id: int, version: int, mechanism: str, token: str = ""
    ) -> bool:
        _authenticate_answer(writer, correlation_id, version, NONE, None, token)
        self.logins += 1
        self.logins_by_mechanism[mechanism] += 1
        return True

    def _refuse(self, writer: asyncio.StreamWriter, correlation_id: int, version: int, why: str) -> bool:
        self.refused_logins += 1
        message = f"Authentication failed: {why}"
        _authenticate_answer(writer, correlation_id, version, SASL_AUTHENTICATION_FAILED, message, "")
        return False


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _request(frame: bytes) -> tuple[int, int, int, bytes]:
    """api key, version, correlation id and body of a request frame (header v1: a nullable client id)."""
    api_key, version, correlation_id, client_id_length = struct.unpack(">hhih", frame[:10])
    return api_key, version, correlation_id, frame[10 + max(client_id_length, 0) :]


def _string(data: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack(">h", data[offset : offset + 2])
    return data[offset + 2 : offset + 2 + length].decode(), offset + 2 + length


def _strings(values: list[str]) -> bytes:
    encoded = [value.encode() for value in values]
    return struct.pack(">i", len(encoded)) + b"".join(struct.pack(">h", len(value)) + value for value in encoded)


def _bytes(body: bytes) -> bytes:
    (length,) = struct.unpack(">i", body[:4])
    return body[4 : 4 + length]


def _answer(writer: asyncio.StreamWriter, correlation_id: int, body: bytes) -> None:
    payload = struct.pack(">i", correlation_id) + body
    writer.write(struct.pack(">i", len(payload)) + payload)


def _authenticate_answer(
    writer: asyncio.StreamWriter, correlation_id: int, version: int, code: int, message: str | None, token: str
) -> None:
    """A SaslAuthenticate response, v0 or v1 (aiokafka asks for no later one)."""
    text = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message)) + message.encode()
    body = struct.pack(">h", code) + text + struct.pack(">i", len(token)) + token.encode()
    if version >= 1:
        body += struct.pack(">q", 0)
    _answer(writer, correlation_id, body)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()
