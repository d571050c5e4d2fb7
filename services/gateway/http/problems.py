"""RFC 9457 problem documents for every error the API returns.

Expected errors (bad input, unknown id, missing key) are raised as :class:`Problem` or come from
pydantic's validation, and are answered as ``application/problem+json`` naming the field at fault
(``errors[].pointer`` is a JSON Pointer into the request body), never as a generic 500.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from shared.errors import InvalidRequest

# The problems every authenticated route documents in OpenAPI.
PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid API key or token (problem+json)"},
    403: {"description": "The credential's role does not allow this route (problem+json)"},
    422: {"description": "Invalid request; `errors[].pointer` names each bad field (problem+json)"},
    429: {"description": "Over a rate limit; retry after `Retry-After` seconds (problem+json)"},
}

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
# When a client that got a 503 for Kafka should try again.
KAFKA_RETRY_AFTER_S = 5
PROBLEM_TYPE_BASE = "https://herald.dev/problems/"


class Problem(Exception):
    """An expected error: its status, a short title and the detail for this occurrence."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: Sequence[dict[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def pointer(location: Sequence[str | int]) -> str:
    """A JSON Pointer (RFC 6901, in URI fragment form) to a field of the request body."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in location]
    return "#/" + "/".join(parts)


def problem_document(problem: Problem, instance: str) -> dict[str, Any]:
    """The RFC 9457 document of ``problem`` at ``instance`` (the request's path)."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + problem.title.lower().replace(" ", "-"),
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return body


def problem_response(problem: Problem, instance: str) -> Response:
    body = problem_document(problem, instance)
    return Response(orjson.dumps(body), problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def invalid_fields(errors: Sequence[Any], prefix: Sequence[str | int] = ()) -> Problem:
    """A 422 naming each of pydantic's ``errors`` by a JSON Pointer under ``prefix``."""
    found = [{"pointer": pointer([*prefix, *_body_location(e["loc"])]), "detail": e["msg"]} for e in errors]
    detail = "; ".join(f"{e['pointer']}: {e['detail']}" for e in found)
    return Problem(422, "Invalid request", detail, errors=found)


def invalid_request(error: InvalidRequest, prefix: Sequence[str | int] = ()) -> Problem:
    """A 422 naming the field the shared request rules refused, under ``prefix``."""
    errors = [{"pointer": pointer([*prefix, *error.field.split("/")]), "detail": error.detail}]
    return Problem(422, "Invalid request", str(error), errors=errors)


def install(app: FastAPI) -> None:
    """Answer every expected error of ``app`` with a problem document."""

    async def on_problem(request: Request, error: Exception) -> Response:
        assert isinstance(error, Problem)
        return problem_response(error, request.url.path)

    async def on_invalid_body(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return problem_response(invalid_fields(error.errors()), request.url.path)

    async def on_invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, InvalidRequest)
        return problem_response(invalid_request(error), request.url.path)

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        headers = dict(error.headers or {})
        if error.status_code == 405:
            # Starlette's Allow names the methods of the first route at the path, not of every router's.
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        problem = Problem(error.status_code, _title(error.status_code), str(error.detail), headers=headers)
        return problem_response(problem, request.url.path)

    async def on_kafka_error(request: Request, error: Exception) -> Response:
        # Nothing was accepted: the request may be sent again (an idempotency key makes that safe).
        log.warning("kafka_unavailable", path=request.url.path, error=repr(error))
        problem = Problem(
            503,
            "Service unavailable",
            "cannot hand the request to Kafka now; nothing was accepted, retry later",
            headers={"Retry-After": str(KAFKA_RETRY_AFTER_S)},
        )
        return problem_response(problem, request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(KafkaError, on_kafka_error)
    app.add_exception_handler(RequestValidationError, on_invalid_body)
    app.add_exception_handler(InvalidRequest, on_invalid_request)
    app.add_exception_handler(HTTPException, on_http_error)


def allowed_methods(request: Request) -> set[str]:
    """The methods of the most specific path the request's path matches: a literal segment beats a
    parameter, as in OpenAPI (``/notifications/bulk`` is not ``/notifications/{notification_id}``)."""
    methods: dict[str, set[str]] = {}
    for route in iter_route_contexts(request.app.routes):
        if route.matches(request.scope)[0] is not Match.NONE:
            methods.setdefault(route.path_format or "", set()).update(route.methods or ())
    return methods[min(methods, key=lambda path: path.count("{"))] if methods else set()


def _body_location(location: Sequence[str | int]) -> Sequence[str | int]:
    # pydantic prefixes where the value came from ("body", "query", "header"); the pointer is into that part.
    return location[1:] if location and location[0] == "body" else location


def _title(status: int) -> str:
    return HTTPStatus(status).phrase
