"""Who a bearer credential names: an API key (``hk_live_…``, stored hashed, verified keys cached) or a JWT.

An API key belongs to one tenant and has one role; a JWT (three base64url parts separated by dots) carries
its tenant, roles and scopes in claims. :mod:`services.gateway.http.auth` turns the result into route checks.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from services.gateway.api_keys.repository import ApiKeyRepository, LiveKey, hash_secret
from services.gateway.http.problems import Problem
from services.gateway.settings import GatewaySettings

# How long the JWKS document is trusted before it is fetched again (seconds); an unknown kid refetches sooner.
JWKS_LIFESPAN_S = 300
JWKS_TIMEOUT_S = 5
ADMIN = "admin"
SENDER = "sender"
VIEWER = "viewer"
SERVICE = "service"
# What a credential may hold; services.gateway.http.auth says what each may do.
ROLES = (ADMIN, SENDER, VIEWER, SERVICE)


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

    @property
    def author(self) -> str:
        """How records name who made them: ``api_key:<key id>`` or ``jwt:<subject>``."""
        return f"{self.kind}:{self.subject}"


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
            raise unauthorized(f"invalid token: {error}") from None
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
            raise unauthorized("the token has expired") from None
        except jwt.InvalidTokenError as error:
            raise unauthorized(f"invalid token: {error}") from None
        tenant = claims.get(self._tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise unauthorized(f"the token has no {self._tenant_claim!r} claim naming its tenant")
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
                raise unauthorized(f"invalid token: {error}") from None
        raise unauthorized(f"tokens signed with {algorithm!r} are not accepted")


def _claimed_roles(claims: dict[str, Any]) -> frozenset[str]:
    """The known roles in the ``role`` and ``roles`` claims (a string, space-separated, or a list)."""
    found: set[str] = set()
    for name in ("role", "roles"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return frozenset(found) & frozenset(ROLES)


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


def unauthorized(detail: str) -> Problem:
    """A 401 problem asking for a bearer credential."""
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="herald"'})
