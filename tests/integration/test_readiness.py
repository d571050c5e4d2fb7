"""What readiness means for a running service: a sender whose every provider is down stays ready and says
so under ``degraded`` (its breakers and the delay path hold the work; taking it out of rotation would only
stall rollouts and node drains)."""

from __future__ import annotations

import httpx
import pytest

from infra.local.processes import free_port
from infra.local.stack import WORKERS, herald_services, service_process
from shared.config import HeraldSettings
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


def test_a_sender_whose_providers_are_all_down_stays_ready_and_reports_them(settings: HeraldSettings) -> None:
    spec = next(
        spec for spec in herald_services(free_port(), [free_port() for _ in WORKERS]) if spec.name == "sender-email"
    )
    environment = {
        "HERALD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_REDIS_URL": REDIS_URL,
        "HERALD_REDIS_NAMESPACE": settings.redis_namespace,
        # Nothing listens there: the SMTP provider's health check fails.
        "HERALD_SMTP_HOST": "127.0.0.1",
        "HERALD_SMTP_PORT": str(free_port()),
    }
    with service_process(spec, environment, line_sink=None) as process:
        process.wait_http_ready(spec.ready_url, timeout=60)
        ready = httpx.get(spec.ready_url)
    assert ready.status_code == 200
    assert "no provider is healthy" in ready.json()["degraded"]["providers"]
    assert set(ready.json()["checks"]) == {"redis", "kafka", f"consumer {settings.topic_prefix}.sender-email"}
