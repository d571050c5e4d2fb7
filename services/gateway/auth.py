"""Authentication and roles: ``Authorization: Bearer <API key or JWT>`` names a tenant and its roles.

An API key (``hk_live_…``, stored hashed) belongs to one tenant and has one role; a JWT (three
base64url parts separated by dots) carries its tenant and roles in claims. Roles:

- ``viewer``: read-only (GET) routes;
- ``sender``: also creates, cancels and retries notifications, registers devices;
- ``service``: a service account, allowed what a sender is (a machine, told apart in audits);
- ``admin``: everything, API-key management included.

Every route that takes :data:`Tenant` is authorised by its method (a GET needs a reader, anything
else a writer); stricter routes add :func:`require`.

Scopes narrow a credential below its role: ``<resource>:read`` or ``<resource>:write`` (write implies
read), where the resource is the path segment after ``/api/v1/`` (``notifications``, ``templates``, ...).
An API key created with scopes, or a JWT with a ``scope`` claim, reaches only those resources; without
scopes a credential reaches whatever its role allows.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.gateway import ratelimit
from services.gateway.problems import Problem
from services.gateway.repository import ApiKeyRepository, LiveKey, hash_secret
from services.gateway.settings import GatewaySettings

BEARER = "bearer "
ADMIN = "admin"
SENDER = "sender"
VIEWER = "viewer"
SERVICE = "service"
ROLES = (ADMIN, SENDER, VIEWER, SERVICE)
READERS = frozenset(ROLES)
WRITERS = frozenset({ADMIN, SENDER, SERVICE})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/v1/"
# What scopes can name: every first path segment under /api/v1 that takes credentials (a unit test
# fails when a new resource is missing here).
RESOURCES = (
    "notifications",
    "templates",
    "recipients",
    "webhook-endpoints",
    "suppressions",
    "dead-letters",
    "api-keys",
)
READ, WRITE = "read", "write"
SCOPES = tuple(f"{resource}:{action}" for resource in RESOURCES for action in (READ, WRITE))
# How long the JWKS document is trusted before it is fetched again (seconds); an unknown kid refetches sooner.
JWKS_LIFESPAN_S = 300
JWKS_TIMEOUT_S = 5


@dataclass(frozen=True)
class Principal:
    """Who is calling: their tenant, roles, and which key or subject they are."""

    tenant: str
    roles: frozenset[str]
    # The API key's id, or the JWT's "sub".
    subject: str
    kind: Literal["api_key", "jwt"]
    # What the per-key rate limit counts under.
    limit_id: str
    # None: no narrowing, the roles decide alone.
    scopes: frozenset[str] | None = None


def scope_for(path: str, method: str) -> str | None:
    """The scope a request for ``path`` needs (None outside ``/api/v1``)."""
    if not path.startswith(API_PREFIX):
        return None
    resource = path[len(API_PREFIX) :].split("/", 1)[0]
    return f"{resource}:{READ if method.upper() in SAFE_METHODS else WRITE}"


def grants(scopes: frozenset[str] | None, needed: str | None) -> bool:
    """Whether ``scopes`` allow ``needed``; a write scope also allows reading its resource."""
    if scopes is None or needed is None:
        return True
    resource = needed.rsplit(":", 1)[0]
    return needed in scopes or f"{resource}:{WRITE}" in scopes


def roles_for(method: str) -> frozenset[str]:
    """The roles a route taking :data:`Tenant` allows for ``method``."""
    return READERS if method.upper() in SAFE_METHODS else WRITERS


class ApiKeyAuthenticator:
    """Finds the live key of a secret; remembers verified keys for ``ttl_s`` to spare Postgres.

    A key revoked through this gateway is forgotten at once; other replicas keep trusting it for up
    to ``ttl_s`` (``HERALD_AUTH_CACHE_TTL_S``).
    """

    def __init__(self, keys: ApiKeyRepository, ttl_s: float) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._verified: dict[bytes, tuple[LiveKey, float]] = {}

    async def key_for(self, secret: str) -> LiveKey | None:
        """The live key with ``secret``, or None if it is not one."""
        digest = hash_secret(secret)
        cached = self._verified.get(digest)
        now = time.monotonic()
        if cached and cached[1] > now:
            return cached[0]
        key = await self._keys.find_key(secret)
        if key is not None:
            self._verified[digest] = (key, now + self._ttl_s)
        return key

    def forget(self, key_hash: bytes) -> None:
        """Stop trusting a key (just revoked) without waiting for its cache entry to expire."""
        self._verified.pop(key_hash, None)


class JwtVerifier:
    """Verifies JWTs: HS256 with a shared secret, RS256 with the keys of a JWKS URL (cached)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._tenant_claim = settings.jwt_tenant_claim
        self._leeway = settings.jwt_leeway_s
        self._secret = settings.jwt_hs256_secret.get_secret_value() if settings.jwt_hs256_secret else None
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, lifespan=JWKS_LIFESPAN_S, timeout=JWKS_TIMEOUT_S)
            if settings.jwt_jwks_url
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._secret is not None or self._jwks is not None

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; a 401 problem otherwise (503 when the JWKS is unreachable)."""
        try:
            algorithm = str(jwt.get_unverified_header(token).get("alg"))
        except jwt.InvalidTokenError as error:
            raise _unauthorized(f"invalid token: {error}") from None
        key = await self._key_for(algorithm, token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                # Only the algorithm this key is for: never HS256 "signed" with the RSA public key.
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise _unauthorized(f"invalid token: {error}") from None
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise _unauthorized(f"the token has no {self._tenant_claim!r} claim naming its tenant")
        subject = str(claims["sub"])
        limit_id = hash_secret(f"jwt\0{claims['iss']}\0{subject}").hex()
        return Principal(tenant, _claimed_roles(claims), subject, "jwt", limit_id, _claimed_scopes(claims))

    async def _key_for(self, algorithm: str, token: str) -> Any:
        if algorithm == "HS256" and self._secret is not None:
            return self._secret
        if algorithm == "RS256" and self._jwks is not None:
            jwks = self._jwks
            try:
                # A thread: a JWKS fetch (when the cached set is stale or lacks the kid) is blocking I/O.
                return (await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWKClientConnectionError:
                raise Problem(503, "Service unavailable", "cannot fetch the token signing keys; retry later") from None
            except (jwt.PyJWKClientError, jwt.InvalidTokenError) as error:
                raise _unauthorized(f"invalid token: {error}") from None
        raise _unauthorized(f"tokens signed with {algorithm!r} are not accepted")


def _claimed_roles(claims: dict[str, Any]) -> frozenset[str]:
    """The known roles in the ``role`` and ``roles`` claims (a string, space-separated, or a list)."""
    found: set[str] = set()
    for name in ("role", "roles"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return frozenset(found) & READERS


def _claimed_scopes(claims: dict[str, Any]) -> frozenset[str] | None:
    """The OAuth ``scope`` claim (space-separated), or ``scp`` (a list); None when the token has neither."""
    value = claims.get("scope", claims.get("scp"))
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return None


def looks_like_jwt(token: str) -> bool:
    """A JWS compact token has three dot-separated parts; an API key has no dots."""
    return token.count(".") == 2


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="herald"'})


async def _authenticate(request: Request, token: str) -> Principal:
    if looks_like_jwt(token):
        verifier: JwtVerifier = request.app.state.jwt
        if not verifier.enabled:
            raise _unauthorized("this gateway does not accept JWTs; use an API key")
        return await verifier.verify(token)
    authenticator: ApiKeyAuthenticator = request.app.state.authenticator
    key = await authenticator.key_for(token)
    if key is None:
        raise _unauthorized("unknown or revoked API key")
    return Principal(key.tenant_id, frozenset({key.role}), key.id, "api_key", hash_secret(token).hex(), key.scopes)


async def authenticated_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, or a 401 problem (or a 429 one over a rate limit)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(BEARER):
        raise _unauthorized("send your API key or token as 'Authorization: Bearer <credential>'")
    principal = await _authenticate(request, header[len(BEARER) :].strip())
    # Here, so every authenticated route is limited, before an idempotency claim or any work.
    await ratelimit.enforce(request, key_id=principal.limit_id, tenant=principal.tenant)
    return principal


def _check(principal: Principal, allowed: frozenset[str], request: Request) -> None:
    if not principal.roles & allowed:
        held = ", ".join(sorted(principal.roles)) or "none"
        needed = ", ".join(sorted(allowed))
        raise Problem(403, "Forbidden", f"this route needs one of the roles {needed}; the credential has {held}")
    scope = scope_for(request.url.path, request.method)
    if not grants(principal.scopes, scope):
        raise Problem(
            403, "Forbidden", f"this route needs the scope {scope}; the credential's scopes do not include it"
        )


class require:  # lower case: it reads as a function where it is used, Depends(require(ADMIN))
    """A dependency returning the caller when they hold one of ``roles``, else a 403 problem."""

    def __init__(self, *roles: str) -> None:
        # Public: tests/unit/test_auth.py reads it to prove every route checks a role.
        self.allowed_roles = frozenset(roles)

    async def __call__(
        self, request: Request, principal: Annotated[Principal, Depends(authenticated_principal)]
    ) -> Principal:
        _check(principal, self.allowed_roles, request)
        return principal


async def authorized_tenant(request: Request, principal: Annotated[Principal, Depends(authenticated_principal)]) -> str:
    """FastAPI dependency: the caller's tenant once their role allows this method (GET: any, else a writer)."""
    _check(principal, roles_for(request.method), request)
    return principal.tenant


def _calls(dependant: Dependant) -> list[object]:
    found: list[object] = []
    for dependency in dependant.dependencies:
        found.append(dependency.call)
        found.extend(_calls(dependency))
    return found


# (id of the route, method) -> (the route, kept so its id is not reused; its roles). Routes are few and fixed.
_ROUTE_ROLES: dict[tuple[int, str], tuple[APIRoute, frozenset[str] | None]] = {}


def route_roles(route: APIRoute, method: str) -> frozenset[str] | None:
    """The roles that may call ``route`` with ``method``: what all of its role checks allow together;
    None when it has none (a signed callback)."""
    known = _ROUTE_ROLES.get((id(route), method))
    if known is not None:
        return known[1]
    checks: list[frozenset[str]] = []
    for call in _calls(route.dependant):
        if call is authorized_tenant:
            checks.append(roles_for(method))
        elif isinstance(call, require):
            checks.append(call.allowed_roles)
    roles = frozenset.intersection(*checks) if checks else None
    _ROUTE_ROLES[(id(route), method)] = (route, roles)
    return roles


async def route_principal(
    request: Request, principal: Annotated[Principal, Depends(authenticated_principal)]
) -> Principal:
    """FastAPI dependency: the caller once every role check of the matched route has passed.

    For steps that run before the route's own dependencies (FastAPI resolves a decorator's
    ``dependencies`` first) and must not act for a caller the route would refuse: the idempotency
    store answers a replay only after this.
    """
    route = request.scope.get("route")
    allowed = route_roles(route, request.method) if isinstance(route, APIRoute) else None
    _check(principal, roles_for(request.method) if allowed is None else allowed, request)
    return principal


Tenant = Annotated[str, Depends(authorized_tenant)]
Admin = Annotated[Principal, Depends(require(ADMIN))]
