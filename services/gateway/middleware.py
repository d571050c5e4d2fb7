"""ASGI middleware: request metrics and the body size limit (plain ASGI: no per-request task overhead)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.problems import Problem, problem_response
from shared.observability import metrics


class RequestMetrics:
    """Counts requests and times them by route template (not raw path, which would explode label cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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


class BodySizeLimit:
    """Refuses bodies larger than ``max_bytes`` with a 413 problem before reading them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
                problem = Problem(413, "Content too large", f"request bodies are limited to {self.max_bytes} bytes")
                await problem_response(problem, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)
