"""The webhook provider against a real local HTTP endpoint: signed POSTs and outcomes by status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from services.sender_webhook.poster import WebhookProvider
from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.messages import WebhookDelivery
from shared.providers.base import ProviderConfigError
from shared.webhook_secrets import tenant_secret
from tests.factories import delivery_fields
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.integration

KEY = b"k" * 32


def delivery(url: str, **overrides: object) -> WebhookDelivery:
    value = delivery_fields() | {
        "url": url,
        "payload_json": orjson.dumps({"type": "notification", "text": "hello"}).decode(),
    }
    value.update(overrides)
    return value  # type: ignore[return-value]


@pytest.fixture
def endpoint() -> Iterator[ScriptedServer]:
    with ScriptedServer().serving() as server:
        server.reply = Reply(204)
        yield server


@pytest.fixture
async def provider() -> AsyncIterator[WebhookProvider]:
    webhook = WebhookProvider(KEY, timeout_s=0.5, concurrency=4, allow_private_networks=True)
    try:
        yield webhook
    finally:
        await webhook.close()


async def test_a_delivery_is_posted_signed_and_verifiable(provider: WebhookProvider, endpoint: ScriptedServer) -> None:
    item = delivery(f"{endpoint.url}/hooks/herald")
    assert await provider.send(item) == Delivered("http", "204 No Content")
    [request] = endpoint.requests
    assert (request.method, request.path) == ("POST", "/hooks/herald")
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-id"] == item["delivery_id"]
    assert headers["content-type"] == "application/json"
    payload = Webhook(tenant_secret(KEY, "acme")).verify(request.body, headers)
    assert payload == {"type": "notification", "text": "hello"}


async def test_the_same_delivery_keeps_its_webhook_id_across_attempts(
    provider: WebhookProvider, endpoint: ScriptedServer
) -> None:
    item = delivery(endpoint.url)
    await provider.send(item)
    await provider.send({**item, "attempt": 2})
    assert len({r.headers["webhook-id"] for r in endpoint.requests}) == 1


@pytest.mark.parametrize(
    ("status", "outcome_type", "reason"),
    [
        (500, Retry, "endpoint_unavailable"),
        (503, Retry, "endpoint_unavailable"),
        (429, Retry, "rate_limited"),
        (408, Retry, "endpoint_unavailable"),
        (400, Failed, DeadLetterReason.PROVIDER_REJECTED),
        (410, Failed, DeadLetterReason.PROVIDER_REJECTED),
    ],
)
async def test_outcomes_by_status(
    provider: WebhookProvider, endpoint: ScriptedServer, status: int, outcome_type: type, reason: str
) -> None:
    endpoint.reply = Reply(status, headers={"Retry-After": "7"} if status == 429 else {})
    outcome = await provider.send(delivery(endpoint.url))
    assert isinstance(outcome, outcome_type)
    assert isinstance(outcome, Retry | Failed)
    assert outcome.reason == reason
    if status == 429:
        assert isinstance(outcome, Retry)
        assert outcome.after_s == 7


async def test_a_slow_endpoint_times_out_and_is_retried(provider: WebhookProvider, endpoint: ScriptedServer) -> None:
    endpoint.reply = Reply(200, delay_s=2.0)
    outcome = await provider.send(delivery(endpoint.url))
    assert isinstance(outcome, Retry)
    assert outcome.reason == "provider_timeout"


async def test_private_addresses_are_refused_unless_allowed(endpoint: ScriptedServer) -> None:
    guarded = WebhookProvider(KEY, timeout_s=1, concurrency=1, allow_private_networks=False)
    try:
        outcome = await guarded.send(delivery(endpoint.url))
    finally:
        await guarded.close()
    assert isinstance(outcome, Failed)
    assert "non-public address 127.0.0.1" in outcome.detail
    assert endpoint.requests == []


def test_a_signing_key_is_required() -> None:
    with pytest.raises(ProviderConfigError, match="HERALD_WEBHOOK_SIGNING_KEY"):
        WebhookProvider(None, timeout_s=1, concurrency=1, allow_private_networks=False).validate_config()
