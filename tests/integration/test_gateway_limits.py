"""The gateway's rate limits, CORS and HTTPS, with the real app, Postgres, Redis and broker.

The limits are small and GCRA is exact, so each answer is computed, not waited for: a limit of ``n``
a minute allows ``n`` requests at once, and the next one ``60/n`` seconds after the first, less the
(sub-second) time the test took so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from infra.local.processes import free_port
from infra.standins.tls import local_server_context
from services.gateway.app import create_app
from services.gateway.main import server_config
from services.gateway.settings import GatewaySettings, TenantRateLimits
from tests.integration.conftest import API_KEY, DEV_TENANT, assert_problem, auth
from tests.integration.test_gateway_api import add_tenant_with_key, body

# Counted by tenant: with tenant labels on, another tenant's requests in the process count apart.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("tenant_labels")]

NOTIFICATIONS = "/api/v1/notifications"
SECOND_KEY = "second-dev-key-0123456789"
OTHER_TENANT, OTHER_KEY = "globex", "globex-key-0123456789"
ORIGIN = "https://app.example.com"


def unknown_notification() -> str:
    """A cheap authenticated request (a 404 problem): limited like any other."""
    return f"{NOTIFICATIONS}/{uuid.uuid4()}"


def limited_client(gateway_settings: GatewaySettings, **limits: Any) -> TestClient:
    return TestClient(create_app(gateway_settings.model_copy(update=limits)))


def rate_limited(tenant: str, scope: str) -> float:
    return REGISTRY.get_sample_value("herald_http_rate_limited_total", {"tenant": tenant, "scope": scope}) or 0.0


def assert_refused(response: httpx.Response, *, interval_s: int, started_s: float, limit: int) -> dict[str, Any]:
    """A 429 problem whose Retry-After is one interval after the first request of the burst."""
    problem = assert_problem(response, 429)
    elapsed_s = time.monotonic() - started_s
    assert interval_s - math.ceil(elapsed_s) <= int(response.headers["retry-after"]) <= interval_s
    assert response.headers["ratelimit-limit"] == str(limit)
    assert response.headers["ratelimit-remaining"] == "0"
    return problem


@pytest.fixture
def second_keys(database_url: str) -> None:
    """Another key of the dev tenant, and a key of another tenant."""
    asyncio.run(add_tenant_with_key(database_url, DEV_TENANT, SECOND_KEY))
    asyncio.run(add_tenant_with_key(database_url, OTHER_TENANT, OTHER_KEY))


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("second_keys")
def test_a_key_over_its_limit_gets_429_while_another_key_meets_only_the_tenant_limit(
    gateway_settings: GatewaySettings,
) -> None:
    # Per key 2 a minute (one every 30 s), per tenant 3 (one every 20 s).
    key_refusals, tenant_refusals = rate_limited(DEV_TENANT, "key"), rate_limited(DEV_TENANT, "tenant")
    with limited_client(gateway_settings, rate_limit_per_key=2, rate_limit_per_tenant=3) as client:
        started_s = time.monotonic()
        first = [client.get(unknown_notification(), headers=auth()) for _ in range(2)]
        over_key = client.get(unknown_notification(), headers=auth())
        second_key = client.get(unknown_notification(), headers=auth(SECOND_KEY))
        over_tenant = client.get(unknown_notification(), headers=auth(SECOND_KEY))
        other_tenant = client.get(unknown_notification(), headers=auth(OTHER_KEY))

    assert [r.status_code for r in first] == [404, 404]
    problem = assert_refused(over_key, interval_s=30, started_s=started_s, limit=2)
    assert problem["type"] == "https://herald.dev/problems/too-many-requests"
    assert "key limit of 2 requests a minute" in problem["detail"]
    # The refusal counted nothing: the tenant had room for one more, which the second key takes.
    assert second_key.status_code == 404
    assert second_key.headers["ratelimit-limit"] == "3"
    assert second_key.headers["ratelimit-remaining"] == "0"
    # Its own key bucket still has one left: only the tenant's refuses it, 20 s after the tenant's first.
    problem = assert_refused(over_tenant, interval_s=20, started_s=started_s, limit=3)
    assert "tenant limit of 3 requests a minute" in problem["detail"]
    assert other_tenant.status_code == 404
    assert other_tenant.headers["ratelimit-remaining"] == "1"
    assert rate_limited(DEV_TENANT, "key") == key_refusals + 1
    assert rate_limited(DEV_TENANT, "tenant") == tenant_refusals + 1


def test_the_headers_count_down_on_every_kind_of_answer(gateway_settings: GatewaySettings) -> None:
    with limited_client(gateway_settings, rate_limit_per_key=3, rate_limit_per_tenant=0) as client:
        answers = [
            client.post(NOTIFICATIONS, json=body(), headers=auth()),
            client.get(unknown_notification(), headers=auth()),
            client.post(NOTIFICATIONS, json=body(channels=["pigeon"]), headers=auth()),
        ]
        refused = client.get(unknown_notification(), headers=auth())

    assert [r.status_code for r in answers] == [202, 404, 422]
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["2", "1", "0"]
    assert {r.headers["ratelimit-limit"] for r in answers} == {"3"}
    assert {r.headers["ratelimit-policy"] for r in answers} == {'3;w=60;comment="key"'}
    # Seconds until the bucket is full again: one 20 s interval more per request counted.
    resets = [int(r.headers["ratelimit-reset"]) for r in answers]
    assert resets == sorted(resets)
    assert 0 < resets[0] <= 20
    assert 40 < resets[2] <= 60
    assert "retry-after" not in answers[0].headers
    assert refused.status_code == 429
    assert int(refused.headers["ratelimit-reset"]) == resets[2]


@pytest.mark.usefixtures("second_keys")
def test_the_global_limit_counts_every_tenant(gateway_settings: GatewaySettings) -> None:
    global_refusals = rate_limited(OTHER_TENANT, "global")
    settings = {"rate_limit_per_key": 0, "rate_limit_per_tenant": 0, "rate_limit_global": 2}
    with limited_client(gateway_settings, **settings) as client:
        started_s = time.monotonic()
        allowed = [client.get(unknown_notification(), headers=auth(k)) for k in (API_KEY, OTHER_KEY)]
        refused = client.get(unknown_notification(), headers=auth(OTHER_KEY))

    assert [r.status_code for r in allowed] == [404, 404]
    assert [r.headers["ratelimit-remaining"] for r in allowed] == ["1", "0"]
    problem = assert_refused(refused, interval_s=30, started_s=started_s, limit=2)
    assert "global limit" in problem["detail"]
    assert rate_limited(OTHER_TENANT, "global") == global_refusals + 1


@pytest.mark.usefixtures("second_keys")
def test_a_tenant_override_replaces_the_defaults_for_that_tenant_only(gateway_settings: GatewaySettings) -> None:
    overrides = {DEV_TENANT: TenantRateLimits(per_key=1)}
    with limited_client(gateway_settings, rate_limit_per_key=5, rate_limit_tenants=overrides) as client:
        dev = [client.get(unknown_notification(), headers=auth()).status_code for _ in range(2)]
        other = [client.get(unknown_notification(), headers=auth(OTHER_KEY)).status_code for _ in range(2)]
    assert dev == [404, 429]
    assert other == [404, 404]


def test_idempotent_replays_carry_their_own_headers(gateway_settings: GatewaySettings) -> None:
    keyed = {**auth(), "Idempotency-Key": "limits-1"}
    with limited_client(gateway_settings, rate_limit_per_key=5) as client:
        first = client.post(NOTIFICATIONS, json=body(), headers=keyed)
        replay = client.post(NOTIFICATIONS, json=body(), headers=keyed)
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == first.content
    # The stored answer kept none of the first request's headers: the replay's are its own.
    assert [first.headers["ratelimit-remaining"], replay.headers["ratelimit-remaining"]] == ["4", "3"]
    assert replay.headers.get_list("ratelimit-remaining") == ["3"]


def test_unlimited_routes_are_never_limited(gateway_settings: GatewaySettings) -> None:
    limits = {"rate_limit_per_key": 1, "rate_limit_per_tenant": 1, "rate_limit_global": 1}
    with limited_client(gateway_settings, **limits) as client:
        assert client.get(unknown_notification(), headers=auth()).status_code == 404
        others = [
            client.get(path)
            for path in ("/health", "/ready", "/metrics", "/docs", "/openapi.json", "/t/o/not-a-token.gif")
            for _ in range(3)
        ]
        unauthenticated = [client.get(unknown_notification()) for _ in range(3)]
        still_refused = client.get(unknown_notification(), headers=auth())

    assert {r.status_code for r in others} <= {200, 404}
    assert not any("ratelimit-remaining" in r.headers for r in others)
    assert [r.status_code for r in unauthenticated] == [401] * 3
    assert still_refused.status_code == 429


def test_without_redis_requests_go_on_unlimited(gateway_settings: GatewaySettings) -> None:
    unavailable = REGISTRY.get_sample_value("herald_http_rate_limiter_unavailable_total") or 0.0
    settings = {"redis_url": "redis://127.0.0.1:1/0", "rate_limit_per_key": 1, "rate_limit_per_tenant": 1}
    with limited_client(gateway_settings, **settings) as client:
        answers = [client.get(unknown_notification(), headers=auth()) for _ in range(3)]
        accepted = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert [r.status_code for r in answers] == [404] * 3
    assert accepted.status_code == 202
    assert not any("ratelimit-limit" in r.headers for r in answers)
    assert REGISTRY.get_sample_value("herald_http_rate_limiter_unavailable_total") == unavailable + 4


# --- CORS -----------------------------------------------------------------------------------------


@pytest.fixture
def cors_client(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    with limited_client(gateway_settings, cors_origins=[ORIGIN], rate_limit_per_key=2) as running:
        yield running


def preflight(client: TestClient, origin: str) -> httpx.Response:
    response: httpx.Response = client.options(
        NOTIFICATIONS,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    return response


def test_a_preflight_from_an_allowed_origin_allows_the_api_headers(cors_client: TestClient) -> None:
    allowed = preflight(cors_client, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    allowed_headers = allowed.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {h.strip() for h in allowed_headers.split(",")}
    refused = preflight(cors_client, "https://evil.example.com")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


def test_simple_requests_expose_the_api_headers_to_allowed_origins_only(cors_client: TestClient) -> None:
    headers = {**auth(), "Origin": ORIGIN}
    accepted = cors_client.post(NOTIFICATIONS, json=body(), headers=headers)
    other = cors_client.get(unknown_notification(), headers={**auth(), "Origin": "https://evil.example.com"})
    refused = cors_client.get(unknown_notification(), headers=headers)

    assert accepted.status_code == 202
    assert accepted.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip().lower() for h in accepted.headers["access-control-expose-headers"].split(",")}
    assert {"location", "retry-after", "idempotent-replayed", "ratelimit-remaining", "ratelimit-reset"} <= exposed
    # The server still answers another origin; without the header the browser hides the answer.
    assert other.status_code == 404
    assert "access-control-allow-origin" not in other.headers
    # A 429 is readable too, so a browser client can honour Retry-After.
    assert refused.status_code == 429
    assert refused.headers["access-control-allow-origin"] == ORIGIN


def test_without_origins_configured_there_are_no_cors_headers(client: TestClient) -> None:
    answer = client.get(unknown_notification(), headers={**auth(), "Origin": ORIGIN})
    assert answer.status_code == 404
    assert not any(name.startswith("access-control-") for name in answer.headers)
    assert preflight(client, ORIGIN).status_code == 405


# --- HTTPS ----------------------------------------------------------------------------------------


@asynccontextmanager
async def served(settings: GatewaySettings) -> AsyncIterator[None]:
    """The gateway as uvicorn serves it in production, on ``settings.gateway_port``, in this event loop."""
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn's own flag: the socket listens and the lifespan ran
            assert not serving.done(), "the gateway stopped while starting"
            await asyncio.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        await serving


async def test_the_gateway_serves_https_with_the_configured_certificate(
    gateway_settings: GatewaySettings, tmp_path: Path
) -> None:
    local_server_context(tmp_path, "Herald test CA")
    settings = GatewaySettings(
        **{
            **gateway_settings.model_dump(),
            "gateway_host": "127.0.0.1",
            "gateway_port": free_port(),
            "gateway_tls_cert_file": tmp_path / "server.pem",
            "gateway_tls_key_file": tmp_path / "server-key.pem",
        }
    )
    base = f"https://localhost:{settings.gateway_port}"
    async with served(settings):
        trusting = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        async with httpx.AsyncClient(verify=trusting) as https:
            health = await https.get(f"{base}/health")
            api = await https.get(f"{base}{unknown_notification()}", headers=auth())
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get(f"{base}/health")
    assert health.status_code == 200
    assert api.status_code == 404
    assert api.headers["ratelimit-limit"]


# --- what one request may hold and take -----------------------------------------------------------------

HEADER_TIMEOUT_S = 0.5


@pytest.fixture
async def gateway_port(gateway_settings: GatewaySettings) -> AsyncIterator[int]:
    """A gateway served by uvicorn with small request limits; its port."""
    settings = gateway_settings.model_copy(
        update={
            "gateway_host": "127.0.0.1",
            "gateway_port": free_port(),
            "max_header_bytes": 8192,
            "max_headers": 50,
            "request_header_timeout_s": HEADER_TIMEOUT_S,
            "request_body_timeout_s": HEADER_TIMEOUT_S,
        }
    )
    async with served(settings):
        yield settings.gateway_port


async def exchange(port: int, request: bytes, *, then_wait_s: float = 10.0) -> bytes:
    """Send ``request`` (as much of it as the server reads) and return all it answers before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):  # the server may close before the rest is sent
            writer.write(request)
            await writer.drain()
        async with asyncio.timeout(then_wait_s):
            return await reader.read(-1)  # until the server closes the connection
    finally:
        writer.close()


def status_and_problem(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert b"application/problem+json" in head
    return int(head.split(b" ", 2)[1]), orjson.loads(body)


def get(path: str, headers: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gateway\r\n" + headers + b"\r\n"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"".join(b"X-H%d: v\r\n" % n for n in range(20_000)), id="20000-headers"),
        pytest.param(b"X-Big: " + b"a" * 10 * 1024 * 1024 + b"\r\n", id="10MB-header"),
        pytest.param(b"Cookie: " + b"c" * 9000 + b"\r\n", id="just-over-the-limit"),
    ],
)
async def test_headers_over_the_limits_are_431_and_the_connection_closes(gateway_port: int, headers: bytes) -> None:
    status, problem = status_and_problem(await exchange(gateway_port, get("/health", headers)))
    assert status == 431
    assert problem["status"] == 431


async def test_headers_within_the_limits_are_served(gateway_port: int) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 100) for n in range(40)) + b"Connection: close\r\n"
    answer = await exchange(gateway_port, get("/health", headers))
    assert answer.startswith(b"HTTP/1.1 200")


async def test_headers_sent_too_slowly_are_408_and_the_connection_closes(gateway_port: int) -> None:
    """Slowloris: half a request, then nothing. The connection is not held for ever."""
    started = time.monotonic()
    status, _ = status_and_problem(await exchange(gateway_port, b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-A: 1\r\n"))
    assert status == 408
    assert time.monotonic() - started >= HEADER_TIMEOUT_S


async def test_a_connection_that_never_sends_is_closed(gateway_port: int) -> None:
    assert await exchange(gateway_port, b"") == b""


async def test_a_body_sent_too_slowly_closes_the_connection(gateway_port: int) -> None:
    head = (
        b"POST /api/v1/notifications HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer "
        + API_KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    answer = await exchange(gateway_port, head + b'{"channels": ')
    assert b" 202 " not in answer
