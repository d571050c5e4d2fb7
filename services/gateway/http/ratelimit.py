"""Request-rate limits on the authenticated API: per API key, per tenant and global (GCRA in Redis).

Each request authenticated by an API key is counted in up to three buckets in one Redis script call
(:mod:`shared.gcra`): its key's, its tenant's (all the tenant's keys together) and the gateway's
(every replica's requests). A limit of ``n`` a minute allows ``n`` requests at once, then one every
``60/n`` seconds, so a client never waits for a window boundary. A request over any of its limits
is answered 429 with ``Retry-After`` (when every bucket will allow it) and is counted in none.

Responses carry the headers of draft-ietf-httpapi-ratelimit-headers-06 (``RateLimit-Limit``,
``RateLimit-Remaining``, ``RateLimit-Reset``, ``RateLimit-Policy``), the version most clients read;
the trio describes the bucket closest to its limit, and the policy lists every bucket applied.

Only routes taking the :data:`~services.gateway.http.auth.Tenant` dependency are limited, as the buckets
are the caller's key and tenant. The others are not: /health, /ready and /metrics (probes and
scrapers), the docs, and the tracking pixel and links, which mail clients fetch from behind shared
proxies (one Gmail proxy address stands for millions of readers, so a per-IP limit would drop real
opens). Limit those at the ingress if needed.

When Redis fails the request goes on unlimited (fail open), logged and counted in
``herald_http_rate_limiter_unavailable_total``: the limiter must not take the API down with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import Message, Receive, Scope, Send

from services.gateway.http.middleware import HttpMiddleware
from services.gateway.http.problems import Problem
from services.gateway.settings import GatewaySettings
from shared.gcra import Bucket, Decision, Gcra, whole_seconds
from shared.observability import metrics

log = structlog.get_logger(__name__)

WINDOW_S = 60
# Where the middleware leaves the per-request slot the dependency fills in.
SCOPE_KEY = "herald.ratelimit"


@dataclass(frozen=True)
class Policy:
    """One limit applied to a request: ``limit`` requests a minute in ``bucket``, for ``scope``."""

    scope: str
    limit: int
    bucket: Bucket


@dataclass(frozen=True)
class Verdict:
    """The limiter's answer: the headers to send, and when refused, the scope at fault and the wait."""

    headers: list[tuple[str, str]]
    refused_by: Policy | None = None
    retry_after_s: int = 0


class RequestLimiter:
    """The gateway's limits (``HERALD_RATE_LIMIT_*``), checked in one Redis round trip per request."""

    def __init__(self, redis: Redis, *, prefix: str, settings: GatewaySettings) -> None:
        self._gcra = Gcra(redis)
        self._prefix = prefix
        self._settings = settings

    def policies(self, key_id: str, tenant: str) -> list[Policy]:
        """The limits on a request with API key ``key_id`` (its hash) of ``tenant``; 0 means none."""
        override = self._settings.rate_limit_tenants.get(tenant)
        per_key = self._settings.rate_limit_per_key
        per_tenant = self._settings.rate_limit_per_tenant
        if override is not None:
            per_key = per_key if override.per_key is None else override.per_key
            per_tenant = per_tenant if override.per_tenant is None else override.per_tenant
        limits = [
            ("key", per_key, f"key:{key_id}"),
            ("tenant", per_tenant, f"tenant:{tenant}"),
            ("global", self._settings.rate_limit_global, "global"),
        ]
        return [
            Policy(scope, limit, Bucket.per_second(f"{self._prefix}:{name}", limit / WINDOW_S, limit))
            for scope, limit, name in limits
            if limit > 0
        ]

    async def check(self, key_id: str, tenant: str) -> Verdict | None:
        """Count one request, or refuse it; None when no limit applies or Redis cannot say."""
        policies = self.policies(key_id, tenant)
        if not policies:
            return None
        try:
            decision = await self._gcra.take([policy.bucket for policy in policies])
        except RedisError as error:
            log.warning("rate_limiter_unavailable", error=repr(error))
            metrics.HTTP_RATE_LIMITER_UNAVAILABLE.inc()
            return None
        return _verdict(policies, decision)


def _verdict(policies: list[Policy], decision: Decision) -> Verdict:
    states = [
        (policy, ahead_us, policy.bucket.remaining(ahead_us))
        for policy, ahead_us in zip(policies, decision.ahead_us, strict=True)
    ]
    # The bucket closest to its limit: fewest requests left, then the longest wait for the next one
    # (on a refusal, the buckets left with none are those refusing: this is the one refusing longest).
    closest, ahead_us, remaining = min(states, key=lambda state: (state[2], -state[0].bucket.wait_us(state[1])))
    headers = [
        ("RateLimit-Limit", str(closest.limit)),
        ("RateLimit-Remaining", str(remaining)),
        # Seconds until the bucket is full again (GCRA has no windows: it refills continuously).
        ("RateLimit-Reset", str(whole_seconds(ahead_us))),
        ("RateLimit-Policy", ", ".join(f'{p.limit};w={WINDOW_S};comment="{p.scope}"' for p in policies)),
    ]
    if decision.wait_us == 0:
        return Verdict(headers)
    retry_after_s = whole_seconds(decision.wait_us)
    return Verdict([*headers, ("Retry-After", str(retry_after_s))], closest, retry_after_s)


@dataclass
class _Slot:
    """Per request: the headers the dependency decided on, for the middleware to send."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


async def enforce(request: Request, limiter: RequestLimiter, *, key_id: str, tenant: str) -> None:
    """Count an authenticated request against its limits; raise a 429 problem when it is over one.

    Called once per request by :func:`~services.gateway.http.auth.authenticated_principal`.
    """
    slot = request.scope.get(SCOPE_KEY)
    if not isinstance(slot, _Slot):
        raise RuntimeError("add the services.gateway.http.ratelimit.RateLimitHeaders middleware to the app")
    verdict = await limiter.check(key_id, tenant)
    if verdict is None:
        return
    slot.headers = [(name.lower().encode(), value.encode()) for name, value in verdict.headers]
    if verdict.refused_by is not None:
        refused_by = verdict.refused_by
        metrics.HTTP_RATE_LIMITED.labels(tenant=metrics.tenant_label(tenant), scope=refused_by.scope).inc()
        detail = (
            f"over the {refused_by.scope} limit of {refused_by.limit} requests a minute; "
            f"retry in {verdict.retry_after_s} s"
        )
        # Retry-After and the RateLimit fields come from the slot, like on every other limited response.
        raise Problem(429, "Too many requests", detail)


class RateLimitHeaders(HttpMiddleware):
    """Adds the rate-limit headers :func:`enforce` decided on to the response, whatever answered it
    (the route, a problem, an idempotent replay)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        slot = _Slot()
        scope[SCOPE_KEY] = slot

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and slot.headers:
                message = {**message, "headers": [*message.get("headers", []), *slot.headers]}
            await send(message)

        await self.app(scope, receive, add_headers)
