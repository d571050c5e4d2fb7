"""Authentication and roles: ``Authorization: Bearer <API key or JWT>`` names a tenant and its roles.

Who a credential names is :mod:`services.gateway.http.credentials`'s answer; here are the checks. Roles:

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

from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.gateway.api_keys.repository import hash_secret
from services.gateway.deps import GatewayDep
from services.gateway.http import ratelimit
from services.gateway.http.credentials import ADMIN, ROLES, SENDER, SERVICE, Principal, looks_like_jwt, unauthorized
from services.gateway.http.problems import Problem

BEARER = "bearer "
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
    "producer-keys",
)
READ, WRITE = "read", "write"
SCOPES = tuple(f"{resource}:{action}" for resource in RESOURCES for action in (READ, WRITE))


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


async def authenticated_principal(request: Request, gateway: GatewayDep) -> Principal:
    """FastAPI dependency: the caller, or a 401 problem (or a 429 one over a rate limit)."""
    # The collaborators from the one dependency every route resolves anyway: each dependency costs per request.
    authenticator, verifier, limiter = gateway.authenticator, gateway.jwt, gateway.rate_limiter
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(BEARER):
        raise unauthorized("send your API key or token as 'Authorization: Bearer <credential>'")
    token = header[len(BEARER) :].strip()
    if looks_like_jwt(token):
        if not verifier.enabled:
            raise unauthorized("this gateway does not accept JWTs; use an API key")
        principal = await verifier.verify(token)
    else:
        key = await authenticator.key_for(token)
        if key is None:
            raise unauthorized("unknown or revoked API key")
        principal = Principal(
            key.tenant_id, frozenset({key.role}), key.id, "api_key", hash_secret(token).hex(), key.scopes
        )
    # The request's logs and error reports name the tenant, as a consumer's name the one of its message.
    structlog.contextvars.bind_contextvars(tenant=principal.tenant)
    # Here, so every authenticated route is limited, before an idempotency claim or any work.
    await ratelimit.enforce(request, limiter, key_id=principal.limit_id, tenant=principal.tenant)
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
# The caller, authenticated but with no role check of its own: beside Tenant, to know who acts.
Caller = Annotated[Principal, Depends(authenticated_principal)]
