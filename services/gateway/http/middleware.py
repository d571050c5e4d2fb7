"""ASGI middleware: request metrics, the body size limit and the NUL character check (plain ASGI: no
per-request task overhead)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.http.problems import Problem, pointer, problem_response
from shared.observability import metrics


class HttpMiddleware:
    """Base of the gateway's plain ASGI middleware: :meth:`handle` sees HTTP requests, the rest passes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestMetrics(HttpMiddleware):
    """Counts requests and times them by route template (not raw path, which would explode label cardinality)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            metrics.HTTP_SECONDS.labels(method=method, route=route).observe(time.perf_counter() - started)


class BodySizeLimit(HttpMiddleware):
    """Refuses bodies larger than ``max_bytes`` with a 413 problem.

    A declared ``Content-Length`` is checked before reading; a body without one (chunked) is read
    up to the limit first and handed on only if it fits, so no size of upload gets past. ``per_path``
    gives named paths a limit of their own (the bulk route's larger one), every other path has ``max_bytes``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: Mapping[str, int] | None = None) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.per_path.get(scope["path"], self.max_bytes)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await self._refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, limit)
        if body is None:
            await self._refuse(scope, receive, send, limit)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        problem = Problem(413, "Content too large", f"request bodies are limited to {limit} bytes")
        await problem_response(problem, scope["path"])(scope, receive, send)


class NulCharacters(HttpMiddleware):
    """Refuses a NUL character (U+0000) in the path, the query or a JSON body's text with a 422 problem.

    Postgres text cannot hold one: let through, it would fail a query as a 500, or a later service.
    Inside :class:`BodySizeLimit`, so the body it reads is bounded.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        assert body is not None  # no limit given
        where = _nul_in_url(scope) or _nul_in_json(body)
        if where is None:
            await self.app(scope, _replay(body, receive), send)
            return
        detail = "text must not contain the NUL character (U+0000)"
        problem = Problem(422, "Invalid request", f"{where}: {detail}", errors=[{"pointer": where, "detail": detail}])
        await problem_response(problem, scope["path"])(scope, receive, send)


def _nul_in_url(scope: Scope) -> str | None:
    """A pointer to the path or query parameter holding a NUL character, if one does."""
    if "\0" in scope["path"]:
        return pointer(["path"])
    query: bytes = scope["query_string"]
    if b"%00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\0" in name or "\0" in value:
                return pointer(["query", name.replace("\0", "")])
    return None


def _nul_in_json(body: bytes) -> str | None:
    """A pointer to the string of a JSON body that holds a NUL character (only JSON escapes it: \\u0000)."""
    if b"\\u0000" not in body:
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None  # the route refuses it as it is
    found = _nul_at(document, [])
    return None if found is None else pointer(found)


def _nul_at(document: Any, location: list[str | int]) -> list[str | int] | None:
    # Depth first with a stack of its own: a document nested a thousand deep (orjson reads 1,024 levels)
    # would overflow Python's stack, a 500 instead of an answer.
    pending: list[tuple[Any, list[str | int]]] = [(document, location)]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            if "\0" in value:
                return where
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        children = []
        for key, item in items:
            if isinstance(key, str) and "\0" in key:
                return [*where, key.replace("\0", "")]
            children.append((item, [*where, key]))
        pending.extend(reversed(children))  # the first child is looked at first, as a reader would
    return None


async def _read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body, or None once it is over ``limit`` bytes."""
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if limit is not None and len(body) > limit:
            return None
    return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields an already-read body once, then defers to the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
