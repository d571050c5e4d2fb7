"""API-key authentication: ``Authorization: Bearer <key>``; a key belongs to one tenant."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from services.gateway import ratelimit
from services.gateway.problems import Problem
from services.gateway.repository import ApiKeyRepository, hash_secret

BEARER = "bearer "


class ApiKeyAuthenticator:
    """Finds the tenant of an API key; remembers verified keys for ``ttl_s`` to spare Postgres."""

    def __init__(self, keys: ApiKeyRepository, ttl_s: float) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._verified: dict[bytes, tuple[str, float]] = {}

    async def tenant_for(self, secret: str) -> str | None:
        """The tenant owning ``secret``, or None if it is not a live key."""
        digest = hash_secret(secret)
        cached = self._verified.get(digest)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        tenant = await self._keys.find_tenant(secret)
        if tenant is not None:
            self._verified[digest] = (tenant, now + self._ttl_s)
        return tenant


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="herald"'})


async def authenticated_tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant, or a 401 problem (or a 429 one over a rate limit)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(BEARER):
        raise _unauthorized("send your API key as 'Authorization: Bearer <key>'")
    authenticator: ApiKeyAuthenticator = request.app.state.authenticator
    secret = header[len(BEARER) :].strip()
    tenant = await authenticator.tenant_for(secret)
    if tenant is None:
        raise _unauthorized("unknown or revoked API key")
    # Here, so every authenticated route is limited, before an idempotency claim or any work.
    await ratelimit.enforce(request, key_id=hash_secret(secret).hex(), tenant=tenant)
    return tenant


Tenant = Annotated[str, Depends(authenticated_tenant)]
