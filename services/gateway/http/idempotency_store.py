"""The ``Idempotency-Key`` store: the header's syntax, body fingerprints, and first responses kept in Redis.

:mod:`services.gateway.http.idempotency` is the dependency and middleware that use it on each request.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from starlette.responses import Response

from services.gateway.http.credentials import Principal
from shared.crypto import Context, DecryptionError, Encryptor
from shared.redis import KeyClaim, KeyClaimer

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

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
