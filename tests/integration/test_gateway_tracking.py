"""The gateway's tracking routes with the real broker: what a mail client's request records, and what it cannot do."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.gateway.tracking.routes import PIXEL_GIF
from shared import status
from shared.kafka.records import message_key
from shared.messages import STATUS_EVENT, StatusEvent
from shared.topics import Topics
from shared.tracking import TrackingTokens
from tests.integration.conftest import DEV_TENANT, assert_problem
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.integration

KEY = "gateway-tracking-test-key-0123456789"
SHOP = "https://shop.example.com/orders/42?ref=mail"


@pytest.fixture
def tokens() -> TrackingTokens:
    return TrackingTokens(KEY.encode())


@pytest.fixture
def tracking_client(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    settings = gateway_settings.model_copy(update={"tracking_signing_key": SecretStr(KEY)})
    with TestClient(create_app(settings)) as running:
        yield running


@pytest.fixture
def notification_id() -> str:
    return str(uuid.uuid4())


def status_events(settings: GatewaySettings, count: int) -> list[StatusEvent]:
    records = asyncio.run(read_topic(settings.kafka_bootstrap_servers, Topics(settings.topic_prefix).status, count))
    assert all(
        record.key == message_key(DEV_TENANT, STATUS_EVENT.decode(record.value)["notification_id"])
        for record in records
    )
    return [STATUS_EVENT.decode(record.value) for record in records]


def test_the_pixel_records_an_open_once_per_notification(
    tracking_client: TestClient, tokens: TrackingTokens, gateway_settings: GatewaySettings, notification_id: str
) -> None:
    pixel = f"/t/o/{tokens.open_token(DEV_TENANT, notification_id)}.gif"
    # No API key: a mail client fetches it.
    first, again = tracking_client.get(pixel), tracking_client.get(pixel)
    for response in (first, again):
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/gif"
        assert response.content == PIXEL_GIF
        assert response.content.startswith(b"GIF89a")
        assert "no-store" in response.headers["cache-control"]
    opened, opened_again = status_events(gateway_settings, 2)
    assert (opened["status"], opened["notification_id"], opened["tenant_id"]) == (
        status.OPENED,
        notification_id,
        DEV_TENANT,
    )
    assert (opened["service"], opened["channel"], opened["detail"]) == ("gateway", "email", None)
    # Both reach Kafka; the status store keeps one, by the event id.
    assert opened_again["event_id"] == opened["event_id"]


def test_a_click_is_recorded_per_url_and_redirects(
    tracking_client: TestClient, tokens: TrackingTokens, gateway_settings: GatewaySettings, notification_id: str
) -> None:
    other = "http://shop.example.com/help"
    responses = [
        tracking_client.get(f"/t/c/{tokens.click_token(DEV_TENANT, notification_id, url)}", follow_redirects=False)
        for url in (SHOP, other, SHOP)
    ]
    assert [(r.status_code, r.headers["location"]) for r in responses] == [(302, SHOP), (302, other), (302, SHOP)]
    assert "no-store" in responses[0].headers["cache-control"]
    clicks = status_events(gateway_settings, 3)
    assert [(e["status"], e["detail"]) for e in clicks] == [
        (status.CLICKED, SHOP),
        (status.CLICKED, other),
        (status.CLICKED, SHOP),
    ]
    assert clicks[0]["event_id"] != clicks[1]["event_id"]
    assert clicks[2]["event_id"] == clicks[0]["event_id"]


def tampered(token: str) -> str:
    """One character of the token changed."""
    return token[:20] + ("A" if token[20] != "A" else "B") + token[21:]


def forged(tokens: TrackingTokens, notification_id: str) -> str:
    """A click token whose signed URL was swapped for another: an open redirect attempt."""
    raw = base64.urlsafe_b64decode(tokens.click_token(DEV_TENANT, notification_id, SHOP) + "==")
    swapped = raw[:16] + raw[16:].replace(SHOP.encode(), b"https://evil.example.com/phish")
    return base64.urlsafe_b64encode(swapped).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(lambda t, n: f"/t/c/{forged(t, n)}", id="click-url-swapped"),
        pytest.param(lambda t, n: f"/t/c/{tampered(t.click_token(DEV_TENANT, n, SHOP))}", id="click-tampered"),
        pytest.param(lambda t, n: f"/t/o/{tampered(t.open_token(DEV_TENANT, n))}.gif", id="open-tampered"),
        pytest.param(lambda t, n: f"/t/c/{TrackingTokens(b'x' * 32).click_token(DEV_TENANT, n, SHOP)}", id="other-key"),
        pytest.param(lambda t, n: f"/t/c/{t.open_token(DEV_TENANT, n)}", id="open-token-as-click"),
        pytest.param(lambda t, n: f"/t/o/{t.click_token(DEV_TENANT, n, SHOP)}.gif", id="click-token-as-open"),
        # Signed, but not http(s): only a bug could make such a token, and it still goes nowhere.
        pytest.param(lambda t, n: f"/t/c/{t.click_token(DEV_TENANT, n, 'javascript:alert(1)')}", id="javascript"),
        pytest.param(lambda t, n: "/t/c/not-a-token", id="garbage"),
    ],
)
def test_a_token_that_does_not_verify_is_404_and_records_nothing(
    tracking_client: TestClient,
    tokens: TrackingTokens,
    gateway_settings: GatewaySettings,
    notification_id: str,
    path: Callable[[TrackingTokens, str], str],
) -> None:
    response = tracking_client.get(path(tokens, notification_id), follow_redirects=False)
    assert "location" not in response.headers
    assert_problem(response, 404)
    # Nothing was produced: the only event on the topic is the valid open sent after it.
    assert tracking_client.get(f"/t/o/{tokens.open_token(DEV_TENANT, notification_id)}.gif").status_code == 200
    [event] = status_events(gateway_settings, 1)
    assert event["status"] == status.OPENED


def test_a_query_cannot_change_where_a_click_goes(
    tracking_client: TestClient, tokens: TrackingTokens, notification_id: str
) -> None:
    token = tokens.click_token(DEV_TENANT, notification_id, SHOP)
    response = tracking_client.get(f"/t/c/{token}?url=https://evil.example.com", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (302, SHOP)


def test_without_a_signing_key_tracking_links_are_404(
    client: TestClient, tokens: TrackingTokens, notification_id: str
) -> None:
    assert_problem(client.get(f"/t/o/{tokens.open_token(DEV_TENANT, notification_id)}.gif"), 404)
    assert_problem(client.get(f"/t/c/{tokens.click_token(DEV_TENANT, notification_id, SHOP)}"), 404)
