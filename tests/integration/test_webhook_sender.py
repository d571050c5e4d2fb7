"""The webhook provider against real local HTTP endpoints: signed POSTs, outcomes by status, the SSRF
guard (loopback, cloud metadata, a name rebinding to loopback), and a circuit breaker per destination
in the sender as main.py wires it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from services.sender_webhook.main import available_providers
from services.sender_webhook.poster import WebhookProvider
from services.sender_webhook.settings import WebhookSenderSettings
from shared import status
from shared.config import HeraldSettings
from shared.delivery import Delivered, Failed, Retry
from shared.errors import DeadLetterReason
from shared.kafka.records import Consumed, Output, Produce
from shared.messages import STATUS_EVENT, WEBHOOK_DELIVERY, StatusEvent, WebhookDelivery
from shared.providers.base import ProviderConfigError
from shared.providers.breaker import BreakerState
from shared.providers.factory import build_chain
from shared.redis import key
from shared.sender import DeliveryHandler, DeliveryLedger
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter
from shared.topics import Topics
from shared.webhook_secrets import tenant_secret
from tests.breakers import transitions
from tests.factories import delivery_fields, send_message
from tests.outbound import METADATA_ADDRESS, PUBLIC_ADDRESS, LocalInternet, ScriptedResolver, guard
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
    webhook = WebhookProvider(KEY, timeout_s=0.5, concurrency=4, guard=OutboundGuard(allow_private_networks=True))
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


async def refused_or_sent(url: str, internet: LocalInternet, resolver: ScriptedResolver | None = None) -> object:
    """What the provider, guarded as in production, makes of a delivery to ``url``."""
    guarded = WebhookProvider(KEY, timeout_s=2, concurrency=1, guard=guard(resolver, internet))
    try:
        return await guarded.send(delivery(url))
    finally:
        await guarded.close()


async def test_a_loopback_endpoint_is_refused_for_good(endpoint: ScriptedServer) -> None:
    internet = LocalInternet()
    outcome = await refused_or_sent(f"{endpoint.url}/admin/delete-everything", internet)
    assert isinstance(outcome, Failed)
    assert outcome.reason is DeadLetterReason.INVALID_PAYLOAD
    assert "non-public address 127.0.0.1 (loopback)" in outcome.detail
    assert (internet.attempts, endpoint.requests) == ([], [])


async def test_the_cloud_metadata_address_is_refused_before_any_connection() -> None:
    internet = LocalInternet()
    resolver = ScriptedResolver({"metadata.attacker.test": [[METADATA_ADDRESS]]})
    for url in (f"http://{METADATA_ADDRESS}/latest/meta-data/", "http://metadata.attacker.test/latest/meta-data/"):
        outcome = await refused_or_sent(url, internet, resolver)
        assert isinstance(outcome, Failed)
        assert f"non-public address {METADATA_ADDRESS} (link-local)" in outcome.detail
    assert internet.attempts == []


async def test_a_rebinding_name_is_posted_to_the_address_it_was_checked_at(endpoint: ScriptedServer) -> None:
    """The name resolves to a public address, then to 127.0.0.1: the POST goes to the public one, and the
    local listener on the URL's port never hears of it."""
    with ScriptedServer().serving() as public:
        public.reply = Reply(204)
        internet = LocalInternet({PUBLIC_ADDRESS: public.server_address[1]})
        resolver = ScriptedResolver({"hooks.rebind.test": [[PUBLIC_ADDRESS], ["127.0.0.1"]]})
        port = endpoint.server_address[1]
        outcome = await refused_or_sent(f"http://hooks.rebind.test:{port}/in", internet, resolver)
        [request] = public.requests
    assert outcome == Delivered("http", "204 No Content")
    assert endpoint.requests == []
    assert internet.attempts == [(PUBLIC_ADDRESS, port)]
    assert resolver.lookups == ["hooks.rebind.test"]
    assert request.headers["Host"] == f"hooks.rebind.test:{port}"


async def test_a_name_resolving_to_a_public_and_a_loopback_address_is_refused(endpoint: ScriptedServer) -> None:
    internet = LocalInternet()
    resolver = ScriptedResolver({"hooks.both.test": [[PUBLIC_ADDRESS, "127.0.0.1"]]})
    outcome = await refused_or_sent(f"http://hooks.both.test:{endpoint.server_address[1]}/", internet, resolver)
    assert isinstance(outcome, Failed)
    assert "non-public address 127.0.0.1" in outcome.detail
    assert (internet.attempts, endpoint.requests) == ([], [])


async def test_a_name_that_does_not_resolve_is_retried() -> None:
    outcome = await refused_or_sent("http://hooks.nowhere.test/in", LocalInternet())
    assert isinstance(outcome, Retry)
    assert "cannot resolve hooks.nowhere.test" in outcome.detail


def test_a_signing_key_is_required() -> None:
    with pytest.raises(ProviderConfigError, match="HERALD_WEBHOOK_SIGNING_KEY"):
        WebhookProvider(None, timeout_s=1, concurrency=1, guard=OutboundGuard()).validate_config()


# --- a circuit breaker per destination --------------------------------------------------------------


def consumed(value: WebhookDelivery, topics: Topics, offset: int) -> Consumed[WebhookDelivery]:
    return send_message(value, WEBHOOK_DELIVERY, topics, "webhook", value["url"], offset)


async def test_one_tenants_dead_endpoint_opens_only_its_own_circuit(settings: HeraldSettings, redis: Redis) -> None:
    """Tenant B's receiver answers 503 until its circuit opens; tenant A's webhook to another receiver is
    delivered at once, through the sender as main.py wires it (one chain, the http provider)."""
    sender_settings = WebhookSenderSettings(
        **settings.model_dump(),
        webhook_signing_key=SecretStr(KEY.decode()),
        webhook_allow_private_networks=True,
        breaker_minimum_calls=3,
        breaker_open_s=600,
    )
    topics = Topics(settings.topic_prefix)
    chain = build_chain("webhook", ["http"], available_providers(sender_settings), sender_settings, None)
    handler = DeliveryHandler(
        channel="webhook",
        provider=chain,
        contract=WEBHOOK_DELIVERY,
        ledger=DeliveryLedger(redis, key(settings, "delivered", "webhook")),
        reporter=StatusReporter(topics.status, "sender-webhook"),
        policies=sender_settings.policies(),
        delay_topic=topics.delay,
        concurrency=4,
    )

    def events(outputs: list[Output]) -> list[StatusEvent]:
        return [STATUS_EVENT.decode(o.value) for o in outputs if isinstance(o, Produce) and o.topic == topics.status]

    opened_before = transitions("http", BreakerState.OPEN)
    try:
        with ScriptedServer().serving() as tenant_a, ScriptedServer().serving() as tenant_b:
            tenant_a.reply, tenant_b.reply = Reply(204), Reply(503)
            # Two receivers on this machine: another port is another destination.
            url_a, url_b = f"http://localhost:{tenant_a.server_address[1]}/in", f"{tenant_b.url}/in"
            failing = [delivery(url_b, tenant_id="tenant-b") for _ in range(3)]
            for offset, item in enumerate(failing):
                [event] = events(await handler([consumed(item, topics, offset)]))
                assert (event["status"], event["reason"]) == (status.RETRYING, "endpoint_unavailable")
            assert chain.breaker("http", f"127.0.0.1:{tenant_b.server_address[1]}").state is BreakerState.OPEN

            later_b, first_a = delivery(url_b, tenant_id="tenant-b"), delivery(url_a, tenant_id="tenant-a")
            outputs = await handler([consumed(later_b, topics, 3), consumed(first_a, topics, 4)])
            by_tenant = {event["tenant_id"]: event for event in events(outputs)}
            b_requests, a_requests = len(tenant_b.requests), len(tenant_a.requests)
    finally:
        await chain.close()
    assert (by_tenant["tenant-a"]["status"], by_tenant["tenant-a"]["detail"]) == (status.SENT, "204 No Content")
    assert (by_tenant["tenant-b"]["status"], by_tenant["tenant-b"]["reason"]) == (status.RETRYING, "circuit_open")
    assert (a_requests, b_requests) == (1, 3)
    assert chain.breaker("http", f"localhost:{tenant_a.server_address[1]}").state is BreakerState.CLOSED
    # One transition counted under the provider's name: hosts never become metric labels.
    assert transitions("http", BreakerState.OPEN) == opened_before + 1
