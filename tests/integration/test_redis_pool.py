"""A burst of requests far above the gateway's Redis pool: callers wait for a connection, none fails."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.integration.conftest import auth
from tests.integration.test_gateway_api import NOTIFICATIONS, body

pytestmark = pytest.mark.integration

POOL_SIZE = 2
# Clients at once, and requests in all: each keyed POST takes Redis connections for its rate limit,
# its idempotency claim and the stored answer.
CONCURRENT_CLIENTS = 48
REQUESTS = 240


@pytest.fixture
def small_pool_client(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    settings = gateway_settings.model_copy(update={"redis_max_connections": POOL_SIZE})
    with TestClient(create_app(settings)) as running:
        yield running


def test_a_burst_far_above_the_redis_pool_waits_for_connections_and_every_request_succeeds(
    small_pool_client: TestClient,
) -> None:
    def post(index: int) -> tuple[int, str]:
        headers = {**auth(), "Idempotency-Key": f"burst-{index}-{uuid.uuid4().hex[:8]}"}
        response = small_pool_client.post(NOTIFICATIONS, json=body(), headers=headers)
        return response.status_code, response.text if response.status_code != 202 else ""

    with ThreadPoolExecutor(max_workers=CONCURRENT_CLIENTS) as clients:
        answers = list(clients.map(post, range(REQUESTS)))

    statuses = Counter(status for status, _ in answers)
    failures = [text for status, text in answers if status != 202][:3]
    assert statuses == {202: REQUESTS}, f"{dict(statuses)}; first failures: {failures}"
