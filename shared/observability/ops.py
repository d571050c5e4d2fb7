"""The operations endpoint: ``/health`` (liveness), ``/ready`` (readiness), ``/metrics`` (Prometheus).

Readiness runs every registered check (broker, Postgres, ...) with a timeout and answers 503 naming the
ones that failed, so Kubernetes stops routing to, and operators can see, what is broken. A dependency
the service works without, degraded (the gateway's Redis: its rate limiter fails open; a sender's
providers: breakers and the delay path hold the work), is *reported* under ``degraded`` in the same
answer but does not make the service unready: taking it out of its Service, or stalling a rollout or a
node drain under its PodDisruptionBudget, would help nothing.
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


async def _answer(checks: Mapping[str, Check], reported: Mapping[str, Check] | None = None) -> Response:
    """200 if every check passes, else 503; the body names each check's result, and each ``reported``
    one's under ``degraded``, which does not decide the status."""
    results, degraded = await asyncio.gather(run_checks(checks), run_checks(reported or {}))
    ok = all(result == "ok" for result in results.values())
    body: dict[str, object] = {"status": "ok" if ok else "unavailable", "checks": results}
    if reported:
        body["degraded"] = degraded
    return JSONResponse(body, status_code=200 if ok else 503)


def health_routes(
    checks: Mapping[str, Check],
    liveness: Mapping[str, Check] | None = None,
    reported: Mapping[str, Check] | None = None,
) -> list[Route]:
    """The three routes, for the ops server and for the gateway's own app: ``checks`` decide ``/ready``,
    ``liveness`` decide ``/health``, ``reported`` are shown by ``/ready`` without deciding it."""

    async def health(_: Request) -> Response:
        return await _answer(liveness or {})

    async def ready(_: Request) -> Response:
        return await _answer(checks, reported)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/health", health), Route("/ready", ready), Route("/metrics", metrics)]


def ops_app(
    checks: Mapping[str, Check],
    liveness: Mapping[str, Check] | None = None,
    reported: Mapping[str, Check] | None = None,
) -> Starlette:
    """A tiny app serving only the operations routes (for services without an HTTP API)."""
    return Starlette(routes=health_routes(checks, liveness, reported))
