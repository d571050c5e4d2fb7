"""The operations endpoint: ``/health`` (liveness), ``/ready`` (readiness), ``/metrics`` (Prometheus).

Readiness runs every registered check (broker, Postgres, Redis, ...) with a timeout and answers 503
naming the ones that failed, so Kubernetes stops routing to, and operators can see, what is broken.
Liveness does the same with its own checks ("this process is making progress", e.g. each consumer
loop's): a 503 there makes Kubernetes restart the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Check = Callable[[], Awaitable[object]]
CHECK_TIMEOUT_S = 2.0


async def run_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    """Run every check concurrently; map each name to ``ok`` or the error it raised."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except Exception as error:
            return f"error: {error!r}"
        return "ok"

    results = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


async def _answer(checks: Mapping[str, Check]) -> Response:
    """200 if every check passes, else 503; the body names each check's result."""
    results = await run_checks(checks)
    ok = all(result == "ok" for result in results.values())
    body = {"status": "ok" if ok else "unavailable", "checks": results}
    return JSONResponse(body, status_code=200 if ok else 503)


def health_routes(checks: Mapping[str, Check], liveness: Mapping[str, Check] | None = None) -> list[Route]:
    """The three routes, for the ops server and for the gateway's own app: ``checks`` decide ``/ready``,
    ``liveness`` decide ``/health``."""

    async def health(_: Request) -> Response:
        return await _answer(liveness or {})

    async def ready(_: Request) -> Response:
        return await _answer(checks)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/health", health), Route("/ready", ready), Route("/metrics", metrics)]


def ops_app(checks: Mapping[str, Check], liveness: Mapping[str, Check] | None = None) -> Starlette:
    """A tiny app serving only the operations routes (for services without an HTTP API)."""
    return Starlette(routes=health_routes(checks, liveness))
