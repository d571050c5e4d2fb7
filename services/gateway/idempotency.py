"""``Idempotency-Key`` on every mutating route (draft-ietf-httpapi-idempotency-key-header).

A route opts in with one line: ``dependencies=[IDEMPOTENT]`` on its decorator, or a parameter
``key: IdempotencyKey`` when it needs the key itself. For a request carrying the header, the key is
scoped to the caller (its tenant and the API key or JWT subject), method and path; the first request
claims it, and the response it gets (status, headers, body) is kept ``HERALD_IDEMPOTENCY_TTL_S``:

- the same key and body again: that response, byte for byte, with ``Idempotent-Replayed: true``;
- the same key with another body: 422 problem, the key was used for something else;
- the same key while the first request is still being answered: 409 problem, retry later;
- a 5xx (or a request that never got an answer) is not kept, so a retry can succeed.

Authorization comes first: the caller must pass every role and scope check of the route before a
stored response is looked up, and a stored response is only ever found by the credential that
produced it, so a lower role replaying an admin's key gets a 403 (or its own answer), never the
admin's. Stored responses are sealed (AES-GCM, like personal data in Postgres): they may quote
addresses, phone numbers or a new key's secret; Redis keys and body fingerprints are keyed hashes.

Redis holds the keys, not Postgres: one script call claims a key atomically in one round trip, expiry is
Redis's own (no sweeper job), and the status store's Postgres stays off the hot path of every POST.
The dependency claims the key before the route runs; :class:`IdempotencyMiddleware` keeps the
response before the client sees it, so a retry arriving right after the answer is a replay, never a 409.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
import structlog
from fastapi import Depends, FastAPI, Header, Request
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.gateway.auth import Principal, route_principal
from services.gateway.middleware import HttpMiddleware
from services.gateway.problems import Problem
from shared.crypto import Context, DecryptionError, Encryptor
from shared.observability import metrics
from shared.redis import KeyClaim, KeyClaimer

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Where the middleware leaves the per-request slot the dependency fills in.
SCOPE_KEY = "herald.idempotency"

# The draft makes the value a Structured Field String ("..."); a bare token is accepted too, as it
# always was, and means the same key. Printable ASCII only: the key is echoed in logs and problems.
_BARE_KEY = re.compile(r"[\x21\x23-\x7e]+")
_QUOTED_KEY = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_ESCAPE = re.compile(r'\\(["\\])')
# Both forms in one expression, for the OpenAPI document (a quoted key is 1 to 255 characters once unescaped).
KEY_PATTERN = r'^(?:[\x21\x23-\x7e]{1,255}|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255}")$'

# Store the finished response only if the key still holds this request's claim (a claim that outlived
# its lock may have been taken over); an empty response releases the key instead.
_SETTLE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""


class InvalidKey(ValueError):
    """The ``Idempotency-Key`` header is not a usable key."""


def parse_key(value: str) -> str:
    """The key in an ``Idempotency-Key`` header: a quoted Structured Field String or a bare token,
    1 to 255 printable ASCII characters. Raises :class:`InvalidKey` saying what is wrong."""
    quoted = _QUOTED_KEY.fullmatch(value)
    if quoted is not None:
        key = _ESCAPE.sub(r"\1", quoted[1])
    elif _BARE_KEY.fullmatch(value):
        key = value
    else:
        raise InvalidKey('must be printable ASCII without spaces, or a quoted string ("...")')
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidKey(f"must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def fingerprint(body: bytes, query: str = "") -> str:
    """SHA-256 (hex) of the body in canonical form: a JSON body with sorted keys and no insignificant
    whitespace, so the same request re-serialised by a client's retry still matches; any other body as is.
    The query string counts too: one key must not answer a purge with other filters. (The store keeps
    only a keyed hash of it.)"""
    canonical = body
    if body.strip():
        with contextlib.suppress(orjson.JSONDecodeError):
            canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical + b"\0" + query.encode()).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """The first response to a key, as it went out."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    def encode(self) -> bytes:
        header_lines = [[name.decode("latin-1"), value.decode("latin-1")] for name, value in self.headers]
        head = orjson.dumps({"status": self.status, "headers": header_lines})
        return len(head).to_bytes(4, "big") + head + self.body

    @classmethod
    def decode(cls, data: bytes) -> StoredResponse:
        length = int.from_bytes(data[:4], "big")
        head = orjson.loads(data[4 : 4 + length])
        headers = tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in head["headers"])
        return cls(head["status"], headers, data[4 + length :])

    def replay(self) -> Response:
        """The stored response again, marked as a replay."""
        response = Response(self.body, self.status)
        response.raw_headers = [*self.headers, (REPLAYED_HEADER.lower().encode(), b"true")]
        return response


@dataclass(frozen=True)
class Claim:
    """This request holds the key: its pending record, which only it may replace."""

    key: str
    fingerprint: str
    pending: bytes
    store: IdempotencyStore = field(repr=False, compare=False)


@dataclass(frozen=True)
class Previous:
    """Another request holds the key: its body's fingerprint, and its response once it has one."""

    fingerprint: str
    response: StoredResponse | None


class IdempotencyStore:
    """Keys and first responses in Redis; a claim is one script call (SET NX GET), settling it another.

    A record is JSON: ``{"fingerprint", "owner"}`` while its request runs, ``{"fingerprint", "tenant",
    "sealed"}`` once answered, the response sealed for its tenant.
    """

    def __init__(self, redis: Redis, encryptor: Encryptor, *, prefix: str, ttl_s: int, lock_ttl_s: int) -> None:
        self._encryptor = encryptor
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._lock_ttl_s = lock_ttl_s
        self._settle = redis.register_script(_SETTLE)
        self._claimer = KeyClaimer(redis)

    def key_for(self, principal: Principal, method: str, path: str, key: str) -> str:
        """The Redis key of ``key`` sent by ``principal`` to ``method path``: a keyed hash, as a caller's
        key may name a person (``welcome-ada@example.com``) and paths hold user ids."""
        # A JSON array keeps the parts apart: no caller, path and key can run into another scope's.
        scope = orjson.dumps([principal.kind, principal.subject, method, path, key]).decode()
        return f"{self._prefix}:{self._encryptor.blind_index(scope, _context(principal.tenant)).hex()}"

    def fingerprint_for(self, principal: Principal, body_fingerprint: str) -> str:
        """What the store keeps of a body's fingerprint: keyed, so a guessed body cannot be confirmed."""
        return self._encryptor.blind_index(body_fingerprint, _context(principal.tenant)).hex()

    async def begin(self, key: str, body_fingerprint: str) -> Claim | Previous:
        """Claim ``key`` for a request with this body, or say who holds it. The claim expires after the
        lock TTL, so a gateway that died mid-request does not block the key for a day."""
        pending = orjson.dumps({"fingerprint": body_fingerprint, "owner": uuid.uuid4().hex})
        (before,) = await self._claimer.claim([KeyClaim(key, pending, self._lock_ttl_s)])
        if before is None:
            return Claim(key, body_fingerprint, pending, self)
        record = orjson.loads(before)
        response = None if "owner" in record else self._open(key, record)
        return Previous(record["fingerprint"], response)

    async def finish(self, claim: Claim, tenant: str, response: StoredResponse) -> None:
        """Keep ``response`` for the key; a 5xx releases the key instead, so a retry can succeed."""
        if response.status >= 500:
            await self.release(claim)
            return
        sealed = self._encryptor.seal(response.encode(), _context(tenant, claim.key))
        record = orjson.dumps({"fingerprint": claim.fingerprint, "tenant": tenant, "sealed": sealed.hex()})
        await self._settle(keys=[claim.key], args=[claim.pending, record, self._ttl_s])

    def _open(self, key: str, record: dict[str, Any]) -> StoredResponse | None:
        try:
            return StoredResponse.decode(
                self._encryptor.open(bytes.fromhex(record["sealed"]), _context(record["tenant"], key))
            )
        except (DecryptionError, KeyError, ValueError) as error:
            # Its key was removed, or the record is not one of ours: as good as expired.
            log.warning("idempotency_record_unreadable", error=repr(error))
            return None

    async def release(self, claim: Claim) -> None:
        """Forget the claim: the request got no answer worth keeping."""
        await self._settle(keys=[claim.key], args=[claim.pending, b"", 0])


def _context(tenant: str, key: str = "") -> Context:
    # The Redis key in the context binds a sealed response to the one key it was stored under.
    return Context(f"http-idempotency{key and ':'}{key}", tenant)


@dataclass
class _Slot:
    """Per request: the claim the dependency made, and for whom, for the middleware to settle."""

    claim: Claim | None = None
    tenant: str = ""


class _Replay(Exception):
    def __init__(self, response: StoredResponse) -> None:
        super().__init__("replayed")
        self.response = response


def _problem(status: int, title: str, detail: str, *, tenant: str, outcome: str, retry: bool = False) -> Problem:
    metrics.HTTP_IDEMPOTENCY.labels(tenant=tenant, outcome=outcome).inc()
    return Problem(status, title, detail, headers={"Retry-After": "1"} if retry else None)


async def idempotency_key(
    request: Request,
    principal: Annotated[Principal, Depends(route_principal)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Makes a retry safe: the same key and body within 24 hours get the first response "
            "again (`Idempotent-Replayed: true`); the same key with another body is refused (422). "
            'Up to 255 printable ASCII characters; a quoted string ("...") or bare.',
            examples=["order-A-1001-shipped"],
            # Documented only: a key that does not match is a 400 problem (the draft's), not pydantic's 422.
            json_schema_extra={"pattern": KEY_PATTERN},
        ),
    ] = None,
) -> str | None:
    """FastAPI dependency: claim the request's ``Idempotency-Key``, or answer for an earlier request.

    Returns the key (None without the header). Raises the problems above, or the stored response.
    """
    tenant = principal.tenant
    if idempotency_key is None:
        return None
    try:
        key = parse_key(idempotency_key)
    except InvalidKey as error:
        raise _problem(400, "Invalid idempotency key", f"{HEADER}: {error}", tenant=tenant, outcome="invalid") from None
    if request.method not in MUTATING_METHODS:  # safe methods are idempotent already: nothing to keep
        return key
    slot = request.scope.get(SCOPE_KEY)
    if not isinstance(slot, _Slot):
        raise RuntimeError("IdempotencyMiddleware is not installed: call services.gateway.idempotency.install(app)")
    store: IdempotencyStore = request.app.state.idempotency
    body_fingerprint = store.fingerprint_for(principal, fingerprint(await request.body(), request.url.query))
    try:
        outcome = await store.begin(store.key_for(principal, request.method, request.url.path, key), body_fingerprint)
    except RedisError as error:
        log.warning("idempotency_store_unavailable", error=repr(error))
        detail = f"cannot check the {HEADER} now; retry later"
        raise _problem(503, "Service unavailable", detail, tenant=tenant, outcome="unavailable", retry=True) from None
    if isinstance(outcome, Claim):
        metrics.HTTP_IDEMPOTENCY.labels(tenant=tenant, outcome="new").inc()
        slot.claim = outcome
        slot.tenant = tenant
        return key
    if outcome.fingerprint != body_fingerprint:
        detail = f"{HEADER} {key!r} was already used with another request body; use a new key for a new request"
        raise _problem(422, "Idempotency key reused", detail, tenant=tenant, outcome="mismatch")
    if outcome.response is None:
        detail = f"a request with this {HEADER} is in progress; retry once it has been answered"
        raise _problem(409, "Request in progress", detail, tenant=tenant, outcome="in_progress", retry=True)
    metrics.HTTP_IDEMPOTENCY.labels(tenant=tenant, outcome="replayed").inc()
    raise _Replay(outcome.response)


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
IDEMPOTENT = Depends(idempotency_key)


class IdempotencyMiddleware(HttpMiddleware):
    """Keeps the response to a request that claimed its key, then sends it (plain ASGI).

    Only a claimed request's response is held back, and only until it is stored; every other one
    passes straight through. A request that ends without a response (an exception, a cancellation)
    releases its key.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = _Slot()
        scope[SCOPE_KEY] = slot
        start: Message = {}
        body = bytearray()

        async def keep(message: Message) -> None:
            nonlocal start
            claim = slot.claim
            if claim is None:
                await send(message)
            elif message["type"] == "http.response.start":
                start = message
            else:
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                slot.claim = None
                headers = tuple((bytes(name), bytes(value)) for name, value in start["headers"])
                response = StoredResponse(start["status"], headers, bytes(body))
                try:
                    await claim.store.finish(claim, slot.tenant, response)
                except RedisError as error:
                    # The work is done: answer anyway. The key stays claimed until its lock expires.
                    log.warning("idempotency_store_failed", error=repr(error))
                await send(start)
                await send({"type": "http.response.body", "body": response.body})

        try:
            await self.app(scope, receive, keep)
        finally:
            if slot.claim is not None:
                await _release(slot.claim)


async def _release(claim: Claim) -> None:
    try:
        await claim.store.release(claim)
    except RedisError as error:
        log.warning("idempotency_release_failed", error=repr(error))


def install(app: FastAPI) -> None:
    """Make ``app`` answer replays and keep first responses. Call it before adding other middleware,
    so this one is innermost and keeps exactly what the routes answered."""

    async def on_replay(request: Request, error: Exception) -> Response:
        assert isinstance(error, _Replay)
        return error.response.replay()

    app.add_exception_handler(_Replay, on_replay)
    app.add_middleware(IdempotencyMiddleware)
