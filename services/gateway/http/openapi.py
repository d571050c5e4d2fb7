"""The OpenAPI document the gateway serves: every answer a route can give is in it, each error as problem+json.

Routes document their successes and their own errors (404, 409). What every route of a kind answers is
added here, found from what the route depends on, so a new route cannot leave it out:

- a credential (:func:`~services.gateway.http.auth.authenticated_principal`): the bearer scheme, 401, 403, 429;
- an ``Idempotency-Key``: 400 (malformed), 409 (a request with it in progress), 422 (used for another body);
- a method that takes a body: 413 (over the size limit);
- any: 422 (a NUL character, :class:`~services.gateway.http.middleware.NulCharacters`; or bad parameters);

and every 4xx answer's content is ``application/problem+json`` with the :data:`PROBLEM` schema (FastAPI
would document its own 422 body, which the gateway never sends; :mod:`services.gateway.http.problems`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from services.gateway.http.auth import authenticated_principal
from services.gateway.http.idempotency import idempotency_key
from services.gateway.http.problems import PROBLEM_JSON, PROBLEM_RESPONSES

SECURITY_SCHEME = "bearer"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
PROBLEM: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document; `errors[].pointer` (a JSON Pointer) names each bad field.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["pointer", "detail"],
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
}
AUTHENTICATED = {status: PROBLEM_RESPONSES[status]["description"] for status in (401, 403, 429)}
IDEMPOTENT = {
    400: "Malformed Idempotency-Key (problem+json)",
    409: "A request with this Idempotency-Key is still being answered; retry after `Retry-After` (problem+json)",
    422: "Invalid request, or the Idempotency-Key was used with another body (problem+json)",
}
TOO_LARGE = {413: "Body over the size limit (problem+json)"}


def install(app: FastAPI) -> None:
    """Serve ``app``'s OpenAPI document completed as above (generated once, on first use)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """``document`` (FastAPI's) with the answers common to each kind of route, and problem+json errors."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`hk_live_…`) or, where enabled, a JWT.",
    }
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM
    # FastAPI's validation error bodies: the gateway answers problem documents instead.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for context in iter_route_contexts(routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        calls = list(_calls(route.dependant))
        for method in context.methods or ():
            operation = document["paths"][context.path_format][method.lower()]
            common = {422: PROBLEM_RESPONSES[422]["description"]}
            if authenticated_principal in calls:
                operation["security"] = [{SECURITY_SCHEME: []}]
                common |= AUTHENTICATED
            if idempotency_key in calls:
                common |= IDEMPOTENT
            if method in BODY_METHODS:
                common |= TOO_LARGE
            responses = operation.setdefault("responses", {})
            for status, description in common.items():
                responses.setdefault(str(status), {"description": description})
    for path in document["paths"].values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                if status.startswith("4"):
                    response["content"] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
                if response.get("description") == "Validation Error":  # FastAPI's own
                    response["description"] = PROBLEM_RESPONSES[422]["description"]
    return document


def _calls(dependant: Dependant) -> Iterator[object]:
    """Every dependency ``dependant`` has, however deep."""
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)
