"""A local Web Push service (RFC 8030), for tests: it subscribes like a browser and decrypts what it receives.

:meth:`PushService.subscribe` does what a browser does on ``PushManager.subscribe()``: it makes a
P-256 key pair and a 16-byte auth secret and returns the ``PushSubscription`` JSON, whose endpoint
is this server. ``POST /push/{id}`` then checks a push as push services do: the VAPID token
(RFC 8292: an ES256 JWT for this origin, verified with the key it names, not too far in the
future), the key the subscription is bound to (``application_server_key``), the ``TTL``,
``Urgency`` and ``Topic`` headers, an ``aes128gcm`` body of at most 4096 bytes, and it decrypts the
body with the subscription's private key (RFC 8291, http_ece) before it answers 201. ``fail_next``
scripts error answers; ``expire`` makes a subscription gone (410), as when a browser unsubscribes.

Standalone: ``python -m infra.standins.webpush --port 8090`` prints a subscription, then every push
that arrives for it, decrypted.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import json
import re
import secrets
import struct
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from infra.local.processes import StartsAndStops
from infra.standins.asgi import ThreadedServer

HOST = "127.0.0.1"
MAX_BODY_BYTES = 4096
# RFC 8292: a VAPID token must not expire more than 24 hours after the request.
MAX_VAPID_LIFETIME_S = 24 * 3600
# Allowance for a client clock slightly ahead of ours.
CLOCK_SKEW_S = 60
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

# A subscription as :meth:`PushService.subscribe` returned it, or that JSON as text (a push token).
SubscriptionRef = Mapping[str, Any] | str


@dataclass(frozen=True)
class PushMessage:
    """One push the service accepted, decrypted."""

    subscription_id: str
    # The URL the 201 answer named in ``Location``.
    location: str
    # The decrypted payload.
    payload: bytes
    # The size of the encrypted body.
    body_bytes: int
    # The request headers, names in lower case, without ``authorization``.
    headers: dict[str, str]
    # The VAPID token (JWT) and the public key (``k``) it was verified with, and its verified claims.
    vapid_token: str
    vapid_key: str
    vapid_claims: dict[str, Any]

    def json(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass
class _Subscription:
    id: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    # The VAPID public key the subscription is bound to (raw point bytes), if any.
    application_server_key: bytes | None
    expired: bool = False


@dataclass(frozen=True)
class _Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PushService(StartsAndStops):
    """A push service on one local port, served from a thread of its own."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._subscriptions: dict[str, _Subscription] = {}
        self._messages: list[PushMessage] = []
        self._failures: list[_Failure] = []
        self._attempts = 0
        self._ids = itertools.count(1)
        self._server: ThreadedServer | None = None
        # Called with each accepted push, decrypted (the local stack prints them).
        self.on_accept: Callable[[PushMessage], None] | None = None

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``: every endpoint's origin, the audience VAPID tokens must name."""
        return f"http://{self.host}:{self.port}"

    @property
    def attempts(self) -> int:
        """Pushes that arrived since the last reset, accepted or not."""
        with self._lock:
            return self._attempts

    def subscribe(self, application_server_key: str | None = None) -> dict[str, Any]:
        """A new subscription, as ``PushSubscription.toJSON()`` gives it in a browser.

        With ``application_server_key`` (a VAPID public key, base64url) only pushes signed with that
        key are accepted; others are refused 403, as push services do.
        """
        bound = _b64url_decode(application_server_key) if application_server_key is not None else None
        if bound is not None:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bound)  # raises if it is no key
        subscription = _Subscription(
            secrets.token_urlsafe(16), ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16), bound
        )
        with self._lock:
            self._subscriptions[subscription.id] = subscription
        public = subscription.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.origin}/push/{subscription.id}",
            "expirationTime": None,
            "keys": {"p256dh": _b64url(public), "auth": _b64url(subscription.auth_secret)},
        }

    def expire(self, subscription: SubscriptionRef) -> None:
        """Make a subscription gone, as when the browser unsubscribes: pushes to it are answered 410."""
        with self._lock:
            self._subscriptions[_id_of(subscription)].expired = True

    def received(self, subscription: SubscriptionRef | None = None) -> list[PushMessage]:
        """A snapshot of the accepted pushes (to one subscription, or all), oldest first."""
        with self._lock:
            return self._matching(subscription)

    def wait_for(
        self, subscription: SubscriptionRef | None = None, count: int = 1, timeout: float = 10.0
    ) -> list[PushMessage]:
        """Block until ``count`` pushes (to one subscription, or all) were accepted; return them all."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._matching(subscription)) >= count, timeout):
                raise TimeoutError(f"{count} push(es) not received within {timeout:g} s")
            return self._matching(subscription)

    def fail_next(self, status: int, count: int = 1, headers: Mapping[str, str] | None = None) -> None:
        """Answer the next ``count`` pushes it would accept with ``status`` (and ``headers``, e.g. Retry-After)."""
        with self._lock:
            self._failures.extend([_Failure(status, dict(headers or {}))] * count)

    def reset(self) -> None:
        """Forget accepted pushes, scripted failures and the attempt count (subscriptions stay)."""
        with self._lock:
            self._messages.clear()
            self._failures.clear()
            self._attempts = 0

    def start(self, timeout: float = 10.0) -> None:
        """Serve on a background thread; return once it accepts connections."""
        app = Starlette(routes=[Route("/push/{id}", self._push, methods=["POST"])])
        self._server = ThreadedServer(app, self.host, self.port, "Web Push stand-in")
        self._server.start(timeout)
        self.port = self._server.port

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.stop(timeout)
        self._server = None

    def _matching(self, subscription: SubscriptionRef | None) -> list[PushMessage]:
        wanted = None if subscription is None else _id_of(subscription)
        return [m for m in self._messages if wanted is None or m.subscription_id == wanted]

    # --- the HTTP API ---------------------------------------------------------------------------

    async def _push(self, request: Request) -> Response:
        with self._lock:
            self._attempts += 1
        body = await request.body()
        try:
            message = self._accept(request.path_params["id"], request.headers, body)
        except _Refusal as refusal:
            return JSONResponse({"code": refusal.status, "message": refusal.message}, status_code=refusal.status)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            if failure is None:
                self._messages.append(message)
                self._arrived.notify_all()
        if failure is None and self.on_accept is not None:
            self.on_accept(message)
        if failure is not None:
            return JSONResponse(
                {"code": failure.status, "message": "scripted failure"},
                status_code=failure.status,
                headers=failure.headers,
            )
        return Response(status_code=201, headers={"Location": message.location})

    def _accept(self, subscription_id: str, headers: Mapping[str, str], body: bytes) -> PushMessage:
        """Check a push as a push service does; raise the refusal it would answer."""
        token, key, claims = self._verify_vapid(headers.get("authorization", ""))
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
        if subscription is None or subscription.expired:
            raise _Refusal(410, "the subscription has expired or never existed")
        if (
            subscription.application_server_key is not None
            and _b64url_decode(key) != subscription.application_server_key
        ):
            raise _Refusal(403, "the VAPID key is not the one the subscription was created with")
        ttl = headers.get("ttl")
        if ttl is None or not ttl.isdigit():
            raise _Refusal(400, "a TTL header (seconds) is required")
        if "urgency" in headers and headers["urgency"] not in URGENCIES:
            raise _Refusal(400, f"Urgency must be one of {sorted(URGENCIES)}")
        if "topic" in headers and not _TOPIC.match(headers["topic"]):
            raise _Refusal(400, "Topic must be 1 to 32 characters of the URL-safe base64 alphabet")
        if headers.get("content-encoding", "").lower() != "aes128gcm":
            raise _Refusal(400, "Content-Encoding must be aes128gcm")
        if len(body) > MAX_BODY_BYTES:
            raise _Refusal(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            payload = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except (http_ece.ECEException, InvalidTag, ValueError, struct.error) as error:
            raise _Refusal(400, f"cannot decrypt the body: {error!r}") from error
        recorded = {name.lower(): value for name, value in headers.items() if name.lower() != "authorization"}
        location = f"{self.origin}/message/{next(self._ids)}"
        return PushMessage(subscription.id, location, bytes(payload), len(body), recorded, token, key, claims)

    def _verify_vapid(self, authorization: str) -> tuple[str, str, dict[str, Any]]:
        """RFC 8292: ``vapid t=<JWT>, k=<key>``; the token signed with k, for this origin, expiring within a day."""
        scheme, _, parameters = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refusal(401, "a VAPID Authorization header is required")
        parts: dict[str, str] = {}
        for item in parameters.split(","):
            name, _, value = item.strip().partition("=")
            parts[name.strip().lower()] = value.strip()
        token, key = parts.get("t", ""), parts.get("k", "")
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64url_decode(key))
        except ValueError as error:
            raise _Refusal(401, "k is not a P-256 public key") from error
        try:
            if jwt.get_unverified_header(token).get("alg") != "ES256":
                raise _Refusal(401, "the VAPID token must be signed with ES256")
            claims = jwt.decode(
                token,
                public_key,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["exp", "aud", "sub"]},
                leeway=CLOCK_SKEW_S,
            )
        except jwt.InvalidTokenError as error:
            raise _Refusal(401, f"invalid VAPID token: {error}") from error
        if float(claims["exp"]) > time.time() + MAX_VAPID_LIFETIME_S + CLOCK_SKEW_S:
            raise _Refusal(401, "the VAPID token expires more than 24 hours from now")
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise _Refusal(401, "the VAPID token names no contact (sub)")
        return token, key, claims


def _id_of(subscription: SubscriptionRef) -> str:
    value = json.loads(subscription) if isinstance(subscription, str) else subscription
    return str(value["endpoint"]).rsplit("/", 1)[-1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"not base64url: {value[:40]!r}") from error


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m infra.standins.webpush``."""
    parser = argparse.ArgumentParser(prog="python -m infra.standins.webpush", description="A local Web Push service")
    parser.add_argument("--host", default=HOST, help=f"address to listen on (default {HOST})")
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free one)")
    args = parser.parse_args(argv)
    with PushService(args.host, args.port) as service:
        print(json.dumps(service.subscribe()), flush=True)
        print("pushes to this subscription are printed as they arrive; Ctrl-C stops", file=sys.stderr, flush=True)
        seen = 0
        try:
            while True:
                try:
                    messages = service.wait_for(count=seen + 1, timeout=3600)
                except TimeoutError:
                    continue
                for message in messages[seen:]:
                    shown = {name: message.headers.get(name) for name in ("ttl", "urgency", "topic")}
                    print(json.dumps({**shown, "payload": message.payload.decode("utf-8", "replace")}), flush=True)
                seen = len(messages)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
