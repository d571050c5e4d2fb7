"""The gateway continues a caller's ``traceparent`` into the request it produces, even with no spans exported
(the trace id then still joins the caller's logs to the pipeline's)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from shared.config import HeraldSettings
from shared.kafka.records import TRACEPARENT
from shared.messages import NOTIFICATION_REQUEST
from shared.observability import tracing
from shared.topics import Topics
from tests.integration.conftest import auth
from tests.integration.test_gateway_api import body
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

CALLERS_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLERS_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLERS_TRACE}-{CALLERS_SPAN}-01"


@pytest.fixture
def traced_as_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracer a gateway gets from ``configure_tracing`` with no endpoint (the global provider is left alone)."""
    provider, exporting = tracing.tracer_provider("gateway", 0.01, None)
    assert not exporting
    monkeypatch.setattr(tracing, "_tracer", lambda: provider.get_tracer("herald"))


@pytest.mark.usefixtures("traced_as_in_production")
def test_the_produced_request_continues_the_callers_trace(client: TestClient, settings: HeraldSettings) -> None:
    traced = client.post("/api/v1/notifications", json=body(), headers={**auth(), "traceparent": CALLER})
    untraced = client.post("/api/v1/notifications", json=body(), headers=auth())
    assert traced.status_code == untraced.status_code == 202

    records = asyncio.run(read_topic(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix).requests, 2))
    trace_ids: dict[str, str] = {}
    for record in records:
        request = NOTIFICATION_REQUEST.decode(record.value)
        _, trace_id, span_id, _ = dict(record.headers)[TRACEPARENT].decode().split("-")
        trace_ids[request["notification_id"]] = trace_id
        assert span_id != CALLERS_SPAN, "the gateway's own step, not the caller's span again"
    assert trace_ids[traced.json()["id"]] == CALLERS_TRACE
    assert trace_ids[untraced.json()["id"]] != CALLERS_TRACE, "without a traceparent a request starts its own trace"
