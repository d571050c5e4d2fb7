"""Roles on every route, without I/O: each ``/api/v1`` route checks a role fitting what it does."""

from __future__ import annotations

import inspect

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from services.gateway.api_keys import schemas as api_keys
from services.gateway.api_keys.service import SECRET_LENGTH, new_secret
from services.gateway.app import create_app
from services.gateway.callbacks import routes as callbacks
from services.gateway.erasures import routes as erasures
from services.gateway.http.auth import (
    API_PREFIX,
    READERS,
    RESOURCES,
    WRITERS,
    grants,
    roles_for,
    route_roles,
    scope_for,
)
from services.gateway.http.credentials import ADMIN, looks_like_jwt
from services.gateway.producer_keys import schemas as producer_keys
from services.gateway.settings import GatewaySettings
from services.gateway.webhook_endpoints import schemas as webhook_endpoints

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_environment")]


def api_routes() -> list[tuple[RouteContext, str]]:
    """Every (route, method) of the app; FastAPI keeps included routers' routes behind contexts."""
    app = create_app(GatewaySettings())
    return [
        (context, method)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        for method in context.methods or ()
    ]


# Routes for admins alone: key management, and erasing a person (it cannot be undone).
ADMIN_ONLY = (api_keys.PATH, producer_keys.PATH, erasures.router.prefix)


def test_every_api_route_checks_a_role_fitting_its_method() -> None:
    """A new route fails here until it takes ``Tenant`` (a role by method) or ``Depends(require(...))``."""
    routes = [
        (context.path or "", route, method)
        for context, method in api_routes()
        if isinstance(route := context.original_route, APIRoute)
        # Signature-verified provider callbacks: no caller, no role.
        if (context.path or "").startswith("/api/v1/") and not (context.path or "").startswith(f"{callbacks.PREFIX}/")
    ]
    assert len(routes) > 20
    found = {(path, method): route_roles(route, method) for path, route, method in routes}
    assert [route for route, allowed in found.items() if allowed is None] == []
    for (path, method), allowed in found.items():
        if path.startswith(ADMIN_ONLY):
            assert allowed == frozenset({ADMIN}), (path, method)
        elif path.startswith(webhook_endpoints.PATH) and method not in {"GET", "HEAD"}:
            # An endpoint receives every notification's status: only admins register or change one.
            assert allowed == frozenset({ADMIN}), (path, method)
        elif method in {"GET", "HEAD"}:
            assert allowed == READERS, (path, method)
        else:
            assert allowed == WRITERS, (path, method)


def test_only_the_signed_routes_take_no_credential() -> None:
    """Besides /api/v1 (checked above): the signed tracking links, and the probes and docs (plain routes)."""
    paths = {context.path or "" for context, _ in api_routes()}
    assert {p for p in paths if p.startswith("/t/")}
    assert all(p.startswith(("/api/v1/", "/t/")) for p in paths), paths


def test_every_api_resource_can_be_named_in_a_scope() -> None:
    """A new resource under /api/v1 fails here until auth.RESOURCES lists it (keys could not be scoped to it)."""
    resources = {
        path[len(API_PREFIX) :].split("/", 1)[0]
        for context, _ in api_routes()
        if (path := context.path or "").startswith(API_PREFIX) and not path.startswith(f"{callbacks.PREFIX}/")
    }
    assert resources == set(RESOURCES)


@pytest.mark.parametrize(
    ("path", "method", "scope"),
    [
        ("/api/v1/notifications", "POST", "notifications:write"),
        ("/api/v1/notifications/abc", "GET", "notifications:read"),
        ("/api/v1/recipients/u-1/devices", "DELETE", "recipients:write"),
        ("/api/v1/dead-letters", "HEAD", "dead-letters:read"),
        ("/health", "GET", None),
    ],
)
def test_the_scope_a_request_needs_is_its_resource_and_access(path: str, method: str, scope: str | None) -> None:
    assert scope_for(path, method) == scope


def test_scopes_grant_what_they_name_and_write_implies_read() -> None:
    scopes = frozenset({"notifications:write", "templates:read"})
    assert grants(scopes, "notifications:write")
    assert grants(scopes, "notifications:read")
    assert grants(scopes, "templates:read")
    assert not grants(scopes, "templates:write")
    assert not grants(scopes, "recipients:read")
    # No scopes at all: the role decides alone; an empty set reaches nothing.
    assert grants(None, "recipients:write")
    assert not grants(frozenset(), "notifications:read")


def test_roles_by_method() -> None:
    assert roles_for("GET") == READERS == {"admin", "sender", "viewer", "service"}
    assert roles_for("post") == roles_for("DELETE") == WRITERS == {"admin", "sender", "service"}


def test_a_jwt_is_told_from_an_api_key_by_its_shape() -> None:
    assert looks_like_jwt("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    assert not looks_like_jwt("hk_live_0123456789abcdefABCDEF")
    assert not looks_like_jwt(new_secret("test"))


def test_new_secrets_are_prefixed_and_random() -> None:
    first, second = new_secret("live"), new_secret("live")
    assert first.startswith("hk_live_")
    assert len(first) == len("hk_live_") + SECRET_LENGTH
    assert first != second
    assert first[len("hk_live_") :].isalnum()


def _sync_calls(dependant: Dependant) -> list[str]:
    """The dependencies (and endpoint) under ``dependant`` FastAPI would run in its thread pool."""
    found = []
    call = dependant.call
    # A function, or an instance whose class's __call__ is the dependency (require(ADMIN)).
    runs_on_the_loop = inspect.iscoroutinefunction(call if inspect.isroutine(call) else type(call).__call__)
    if call is not None and not runs_on_the_loop:
        found.append(getattr(call, "__qualname__", repr(call)))
    for sub in dependant.dependencies:
        found += _sync_calls(sub)
    return found


def test_no_route_runs_a_dependency_in_the_thread_pool() -> None:
    """A plain function as a dependency costs a thread hand-off per request (a fifth of the gateway's CPU)."""
    routes = [context.original_route for context, _ in api_routes()]
    sync = {
        f"{route.path}: {call}"
        for route in routes
        if isinstance(route, APIRoute)
        for call in _sync_calls(route.dependant)
    }
    assert sync == set()
