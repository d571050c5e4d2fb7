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

from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Header, Request
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from services.gateway.deps import IdempotencyDep
from services.gateway.http.auth import route_principal
from services.gateway.http.credentials import Principal
from services.gateway.http.idempotency_store import (
    HEADER,
    KEY_PATTERN,
    MUTATING_METHODS,
    Claim,
    InvalidKey,
    StoredResponse,
    fingerprint,
    parse_key,
)
from services.gateway.http.middleware import HttpMiddleware
from services.gateway.http.problems import Problem
from shared.observability import metrics

log = structlog.get_logger(__name__)

# Where the middleware leaves the per-request slot the dependency fills in.
SCOPE_KEY = "herald.idempotency"


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
    metrics.HTTP_IDEMPOTENCY.labels(tenant=metrics.tenant_label(tenant), outcome=outcome).inc()
    return Problem(status, title, detail, headers={"Retry-After": "1"} if retry else None)


async def idempotency_key(
    request: Request,
    principal: Annotated[Principal, Depends(route_principal)],
    store: IdempotencyDep,
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
        raise RuntimeError(
            "IdempotencyMiddleware is not installed: call services.gateway.http.idempotency.install(app)"
        )
    body_fingerprint = store.fingerprint_for(principal, fingerprint(await request.body(), request.url.query))
    try:
        outcome = await store.begin(store.key_for(principal, request.method, request.url.path, key), body_fingerprint)
    except RedisError as error:
        log.warning("idempotency_store_unavailable", error=repr(error))
        detail = f"cannot check the {HEADER} now; retry later"
        raise _problem(503, "Service unavailable", detail, tenant=tenant, outcome="unavailable", retry=True) from None
    if isinstance(outcome, Claim):
        metrics.HTTP_IDEMPOTENCY.labels(tenant=metrics.tenant_label(tenant), outcome="new").inc()
        slot.claim = outcome
        slot.tenant = tenant
        return key
    if outcome.fingerprint != body_fingerprint:
        detail = f"{HEADER} {key!r} was already used with another request body; use a new key for a new request"
        raise _problem(422, "Idempotency key reused", detail, tenant=tenant, outcome="mismatch")
    if outcome.response is None:
        detail = f"a request with this {HEADER} is in progress; retry once it has been answered"
        raise _problem(409, "Request in progress", detail, tenant=tenant, outcome="in_progress", retry=True)
    metrics.HTTP_IDEMPOTENCY.labels(tenant=metrics.tenant_label(tenant), outcome="replayed").inc()
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
