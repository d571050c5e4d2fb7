"""Error tracking end to end: a failure a service logs while handling a message reaches a local Sentry
endpoint, tagged and without the recipient's address."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import orjson
import pytest
import sentry_sdk
import structlog
from fastapi import Depends
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.http.auth import authenticated_principal
from services.gateway.settings import GatewaySettings
from shared.observability.error_tracking import configure_error_tracking
from tests.integration.conftest import DEV_TENANT, auth
from tests.scripted_http import Recorded, Reply, ScriptedServer

pytestmark = pytest.mark.integration

ADDRESS = "jane.doe@example.com"


@pytest.fixture
def sentry(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """A local endpoint taking Sentry envelopes, with error tracking pointed at it for the test only."""
    logging_config = structlog.get_config()
    with ScriptedServer().serving() as server:
        server.reply = Reply(200, {"Content-Type": "application/json"}, b"{}")
        monkeypatch.setenv("SENTRY_DSN", f"http://key@127.0.0.1:{server.server_address[1]}/1")
        monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
        try:
            yield server
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)
            sentry_sdk.get_global_scope().clear()
            structlog.configure(**logging_config)


def envelope(request: Recorded) -> bytes:
    """The envelope a request carried, uncompressed."""
    return gzip.decompress(request.body) if request.headers.get("Content-Encoding") == "gzip" else request.body


def envelope_items(request: Recorded) -> list[dict[str, Any]]:
    """The JSON lines of an envelope: its header, then each item's header and payload."""
    return envelope_items_of(envelope(request))


def envelope_items_of(body: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def test_an_error_logged_while_handling_a_message_is_reported_without_the_address(sentry: ScriptedServer) -> None:
    assert configure_error_tracking("sender-email")
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(tenant="acme", notification_id="n-1"):
        try:
            raise ValueError(f"mailbox {ADDRESS} refused")
        except ValueError:
            log.exception("message_failed")
    sentry_sdk.flush(timeout=10)

    envelopes = [request for request in sentry.requests if request.path == "/api/1/envelope/"]
    assert [request.method for request in envelopes] == ["POST"]
    events = [item for item in envelope_items(envelopes[0]) if "exception" in item]
    assert len(events) == 1
    event = events[0]
    assert event["tags"] == {"service": "sender-email", "tenant": "acme", "notification_id": "n-1"}
    assert event["release"] == f"herald@{version('herald')}"
    assert event["environment"] == "staging"
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert ADDRESS.encode() not in envelope(envelopes[0])


def test_an_error_in_a_gateway_request_is_reported_with_its_tenant(
    sentry: ScriptedServer, gateway_settings: GatewaySettings
) -> None:
    """An unhandled exception in an authenticated request: a 500 problem, and an event tagged with the caller's
    tenant (bound when the credential is checked) without the address the request carried."""
    assert configure_error_tracking("gateway")
    app = create_app(gateway_settings)

    async def crash() -> None:
        raise RuntimeError(f"cannot reach {ADDRESS}")

    # A route of the test's own on the real app: no route of Herald's fails on purpose.
    app.add_api_route("/api/v1/test-crash", crash, dependencies=[Depends(authenticated_principal)])
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/v1/test-crash", headers=auth()).status_code == 500
    sentry_sdk.flush(timeout=10)

    bodies = [envelope(request) for request in sentry.requests if request.path == "/api/1/envelope/"]
    events = [item for body in bodies for item in envelope_items_of(body) if "exception" in item]
    assert [event["exception"]["values"][-1]["type"] for event in events] == ["RuntimeError"]
    assert events[0]["tags"]["service"] == "gateway"
    assert events[0]["tags"]["tenant"] == DEV_TENANT
    assert not [body for body in bodies if ADDRESS.encode() in body]


def test_nothing_is_configured_without_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    processors = structlog.get_config()["processors"]
    assert not configure_error_tracking("router")
    assert not sentry_sdk.get_client().is_active()
    assert structlog.get_config()["processors"] == processors
