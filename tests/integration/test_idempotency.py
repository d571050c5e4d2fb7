"""``Idempotency-Key`` on the real gateway app: Redis keeps the first response, the broker shows what
was (not) produced again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, cast

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr
from redis import Redis

from services.gateway.app import create_app
from services.gateway.deps import Gateway, attach, attached
from services.gateway.http.credentials import Principal
from services.gateway.http.problems import Problem
from services.gateway.settings import GatewaySettings
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Produce
from shared.messages import NOTIFICATION_REQUEST
from shared.requests import notification_id_for
from tests.integration.conftest import API_KEY, DEV_TENANT, assert_problem, auth
from tests.integration.test_gateway_api import NOTIFICATIONS, add_tenant_with_key, body
from tests.kafka_helpers import read_until

pytestmark = pytest.mark.integration

DEVICES = "/api/v1/recipients/user-9/devices"
REPLAYED = "idempotent-replayed"


def keyed(key: str, secret: str | None = None) -> dict[str, str]:
    return {**(auth(secret) if secret else auth()), "Idempotency-Key": key}


def app_of(client: TestClient) -> FastAPI:
    return cast(FastAPI, client.app)


def gateway(client: TestClient) -> Gateway:
    return attached(app_of(client))


def use_producer(client: TestClient, producer: object) -> Gateway:
    """Make the routes of ``client``'s app produce with ``producer``; the collaborators they had, to restore."""
    running = gateway(client)
    attach(app_of(client), replace(running, producer=producer))  # type: ignore[arg-type]
    return running


@pytest.fixture
def sync_redis(gateway_settings: GatewaySettings) -> Iterator[Redis]:
    client = Redis.from_url(gateway_settings.redis_url)
    try:
        yield client
    finally:
        client.close()


def principal_of(client: TestClient, secret: str = API_KEY) -> Principal:
    """The caller the gateway sees for API key ``secret``."""
    assert client.portal is not None
    live = client.portal.call(gateway(client).authenticator.key_for, secret)
    assert live is not None
    return Principal(live.tenant_id, frozenset({live.role}), live.id, "api_key", "")


def stored_key(client: TestClient, key: str, method: str = "POST", path: str = NOTIFICATIONS) -> str:
    return gateway(client).idempotency.key_for(principal_of(client), method, path, key)


def produced_ids(settings: GatewaySettings, until_id: str) -> list[str]:
    """The notification ids on the requests topic, up to and including ``until_id``."""

    def ids(records: Iterable[Any]) -> list[str]:
        return [NOTIFICATION_REQUEST.decode(record.value)["notification_id"] for record in records]

    topic = f"{settings.topic_prefix}.requests.v1"
    records = asyncio.run(
        read_until(settings.kafka_bootstrap_servers, topic, lambda rs: until_id in ids(rs), 30, until_id)
    )
    found = ids(records)
    return found[: found.index(until_id) + 1]


def assert_replay_of(replay: Response, first: Response) -> None:
    """``replay`` is ``first`` again, byte for byte, plus the replay marker."""
    assert replay.headers.get(REPLAYED) == "true"
    assert REPLAYED not in first.headers
    assert (replay.status_code, replay.content) == (first.status_code, first.content)
    assert [h for h in replay.headers.multi_items() if h[0] != REPLAYED] == list(first.headers.multi_items())


class HeldProducer:
    """The app's producer, but each produce waits until the test lets it go: a request caught in flight."""

    def __init__(self, inner: MessageProducer) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    async def produce(self, records: Iterable[Produce]) -> None:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 30)
        await self.inner.produce(records)


class BrokenProducer:
    """Fails every produce with ``error``: no answer at all (a crash, 500), or an answer of 5xx."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def produce(self, records: Iterable[Produce]) -> None:
        raise self.error


# --- replay -----------------------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_response_and_produce_nothing(
    client: TestClient, gateway_settings: GatewaySettings
) -> None:
    first = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-42"))
    assert first.status_code == 202, first.text
    assert first.json()["id"] == notification_id_for(DEV_TENANT, "order-42")
    # The same request re-serialised by a retrying client: other key order, other whitespace.
    reordered = orjson.dumps(dict(reversed(body().items())), option=orjson.OPT_INDENT_2)
    assert reordered != first.request.content
    replays = [
        client.post(NOTIFICATIONS, json=body(), headers=keyed("order-42")),
        client.post(NOTIFICATIONS, json=body(), headers=keyed('"order-42"')),  # the draft's quoted form
        client.post(
            NOTIFICATIONS, content=reordered, headers={**keyed("order-42"), "Content-Type": "application/json"}
        ),
    ]
    for replay in replays:
        assert_replay_of(replay, first)
    marker = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert produced_ids(gateway_settings, marker.json()["id"]) == [first.json()["id"], marker.json()["id"]]


def test_the_same_key_with_another_body_is_refused(client: TestClient, gateway_settings: GatewaySettings) -> None:
    first = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-43"))
    assert first.status_code == 202
    other = client.post(NOTIFICATIONS, json=body(priority="high"), headers=keyed("order-43"))
    problem = assert_problem(other, 422)
    assert "Idempotency-Key" in problem["detail"]
    assert problem["type"] == "https://herald.dev/problems/idempotency-key-reused"
    assert REPLAYED not in other.headers
    marker = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert produced_ids(gateway_settings, marker.json()["id"]) == [first.json()["id"], marker.json()["id"]]


def test_a_key_is_scoped_to_the_tenant_and_the_route(client: TestClient, database_url: str) -> None:
    other_secret = "other-tenant-key-0123456789"
    asyncio.run(add_tenant_with_key(database_url, "globex", other_secret))
    ours = client.post(NOTIFICATIONS, json=body(), headers=keyed("shared-key"))
    theirs = client.post(NOTIFICATIONS, json=body(), headers=keyed("shared-key", other_secret))
    device = client.post(DEVICES, json={"platform": "android", "token": "t-1"}, headers=keyed("shared-key"))
    assert (ours.status_code, theirs.status_code, device.status_code) == (202, 202, 201)
    assert REPLAYED not in theirs.headers
    assert REPLAYED not in device.headers
    assert theirs.json()["id"] == notification_id_for("globex", "shared-key") != ours.json()["id"]


def test_an_error_answer_is_kept_too(client: TestClient) -> None:
    """The first answer is the answer, a 4xx included; the key stays bound to that body."""
    invalid = body(content={"text": "no subject"})
    first = client.post(NOTIFICATIONS, json=invalid, headers=keyed("order-44"))
    assert_problem(first, 422)
    assert_replay_of(client.post(NOTIFICATIONS, json=invalid, headers=keyed("order-44")), first)
    assert_problem(client.post(NOTIFICATIONS, json=body(), headers=keyed("order-44")), 422)


def test_without_a_key_nothing_is_kept(client: TestClient) -> None:
    first = client.post(NOTIFICATIONS, json=body(), headers=auth())
    again = client.post(NOTIFICATIONS, json=body(), headers=auth())
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] != again.json()["id"]
    assert REPLAYED not in again.headers


# --- in flight, failures and expiry -----------------------------------------------------------------


def test_a_retry_while_the_first_request_is_in_flight_is_409(client: TestClient) -> None:
    held = HeldProducer(gateway(client).producer)
    use_producer(client, held)
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(client.post, NOTIFICATIONS, json=body(), headers=keyed("slow-1"))
        assert held.entered.wait(30)
        try:
            retry = client.post(NOTIFICATIONS, json=body(), headers=keyed("slow-1"))
        finally:
            held.release.set()
        first = in_flight.result(timeout=30)
    problem = assert_problem(retry, 409)
    assert "Idempotency-Key" in problem["detail"]
    assert retry.headers["retry-after"] == "1"
    assert first.status_code == 202
    # Once answered, the same retry gets that answer.
    assert_replay_of(client.post(NOTIFICATIONS, json=body(), headers=keyed("slow-1")), first)


def test_a_crash_is_not_kept_so_a_retry_can_succeed(
    client: TestClient, gateway_settings: GatewaySettings, sync_redis: Redis
) -> None:
    running = use_producer(client, BrokenProducer(RuntimeError("broker unreachable")))
    with pytest.raises(RuntimeError, match="broker unreachable"):  # TestClient re-raises what became a 500
        client.post(NOTIFICATIONS, json=body(), headers=keyed("order-45"))
    assert sync_redis.exists(stored_key(client, "order-45")) == 0
    attach(app_of(client), running)
    retry = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-45"))
    assert retry.status_code == 202, retry.text
    assert REPLAYED not in retry.headers
    assert produced_ids(gateway_settings, retry.json()["id"]) == [retry.json()["id"]]


def test_a_5xx_answer_is_not_kept(client: TestClient, sync_redis: Redis) -> None:
    running = use_producer(client, BrokenProducer(Problem(503, "Service unavailable", "the broker is down")))
    assert_problem(client.post(NOTIFICATIONS, json=body(), headers=keyed("order-49")), 503)
    assert sync_redis.exists(stored_key(client, "order-49")) == 0
    attach(app_of(client), running)
    retry = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-49"))
    assert retry.status_code == 202, retry.text
    assert REPLAYED not in retry.headers


def test_a_key_is_kept_for_the_configured_time(client: TestClient, sync_redis: Redis) -> None:
    assert client.post(NOTIFICATIONS, json=body(), headers=keyed("order-46")).status_code == 202
    ttl_ms = sync_redis.pttl(stored_key(client, "order-46"))
    assert 86_400_000 - 60_000 < ttl_ms <= 86_400_000


def test_once_a_key_expired_it_can_be_used_again(gateway_settings: GatewaySettings, sync_redis: Redis) -> None:
    settings = gateway_settings.model_copy(update={"idempotency_ttl_s": 1})
    with TestClient(create_app(settings)) as client:
        assert client.post(NOTIFICATIONS, json=body(), headers=keyed("order-47")).status_code == 202
        stored = stored_key(client, "order-47")
        assert sync_redis.exists(stored) == 1
        deadline = time.monotonic() + 10
        while sync_redis.exists(stored):  # Redis's own expiry, not a guess at how long it takes
            assert time.monotonic() < deadline, "the key never expired"
            time.sleep(0.05)
        again = client.post(NOTIFICATIONS, json=body(priority="high"), headers=keyed("order-47"))
    assert again.status_code == 202, again.text
    assert REPLAYED not in again.headers


def test_without_redis_a_keyed_request_is_503_and_others_go_on(gateway_settings: GatewaySettings) -> None:
    settings = gateway_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(settings)) as client:
        refused = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-48"))
        unkeyed = client.post(NOTIFICATIONS, json=body(), headers=auth())
        ready = client.get("/ready")
    problem = assert_problem(refused, 503)
    assert "Idempotency-Key" in problem["detail"]
    assert refused.headers["retry-after"] == "1"
    assert unkeyed.status_code == 202
    # Still ready: taking the gateway out of its Service would refuse the requests it can take.
    assert ready.status_code == 200
    assert ready.json()["degraded"]["redis"] != "ok"


# --- the key itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 256, id="too-long"),
        pytest.param("two words", id="space"),
        pytest.param('"unterminated', id="unterminated-quote"),
    ],
)
def test_a_malformed_key_is_a_400_problem_naming_the_header(client: TestClient, key: str) -> None:
    response = client.post(NOTIFICATIONS, json=body(), headers=keyed(key))
    problem = assert_problem(response, 400)
    assert problem["detail"].startswith("Idempotency-Key: ")


def test_the_key_is_checked_only_after_authentication(client: TestClient) -> None:
    assert_problem(client.post(NOTIFICATIONS, json=body(), headers={"Idempotency-Key": "k" * 256}), 401)


# --- devices ------------------------------------------------------------------------------------------


def test_device_registration_and_removal_are_idempotent(client: TestClient) -> None:
    device = {"platform": "ios", "token": "apns-idem-1"}
    registered = client.post(DEVICES, json=device, headers=keyed("register-1"))
    assert registered.status_code == 201, registered.text
    assert_replay_of(client.post(DEVICES, json=device, headers=keyed("register-1")), registered)
    assert_problem(client.post(DEVICES, json={**device, "platform": "web"}, headers=keyed("register-1")), 422)

    path = f"{DEVICES}/{registered.json()['id']}"
    removed = client.delete(path, headers=keyed("remove-1"))
    assert removed.status_code == 204
    assert_replay_of(client.delete(path, headers=keyed("remove-1")), removed)
    # Not run again: without the key (or with another) the device is already gone.
    assert_problem(client.delete(path, headers=keyed("remove-2")), 404)


# --- replays and roles --------------------------------------------------------------------------------


@pytest.fixture
def admin_api(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    """The gateway able to register webhook endpoints (their secrets are what a replay must not leak)."""
    settings = gateway_settings.model_copy(update={"webhook_signing_key": SecretStr("k" * 40)})
    with TestClient(create_app(settings)) as running:
        yield running


def key_with_role(client: TestClient, role: str) -> str:
    created = client.post("/api/v1/api-keys", json={"name": f"a {role}", "role": role}, headers=auth())
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    return secret


# Admin-only routes whose answer holds a secret: a replay by anyone else would hand it over.
SECRET_ANSWERS = [
    pytest.param("/api/v1/api-keys", {"name": "ops", "role": "admin"}, "secret", id="api-key"),
    pytest.param("/api/v1/webhook-endpoints", {"url": "https://hooks.example.com/in"}, "secret", id="webhook-endpoint"),
]


@pytest.mark.parametrize(("path", "request_body", "secret_field"), SECRET_ANSWERS)
@pytest.mark.parametrize("role", ["sender", "viewer", "service"])
def test_a_lower_role_replaying_an_admins_key_is_refused_and_gets_nothing_of_its_answer(
    admin_api: TestClient, path: str, request_body: dict[str, Any], secret_field: str, role: str
) -> None:
    lower = key_with_role(admin_api, role)
    first = admin_api.post(path, json=request_body, headers=keyed("provision-1"))
    assert first.status_code == 201, first.text
    secret = first.json()[secret_field]
    replay = admin_api.post(path, json=request_body, headers=keyed("provision-1", lower))
    assert_problem(replay, 403)
    assert REPLAYED not in replay.headers
    assert secret not in replay.text
    # The admin's own replay still works, untouched by the refused one.
    assert_replay_of(admin_api.post(path, json=request_body, headers=keyed("provision-1")), first)


@pytest.mark.parametrize(("path", "request_body", "secret_field"), SECRET_ANSWERS)
def test_a_key_claimed_first_by_a_lower_role_does_not_block_the_admin(
    admin_api: TestClient, path: str, request_body: dict[str, Any], secret_field: str
) -> None:
    sender = key_with_role(admin_api, "sender")
    assert_problem(admin_api.post(path, json=request_body, headers=keyed("provision-2", sender)), 403)
    answer = admin_api.post(path, json=request_body, headers=keyed("provision-2"))
    assert answer.status_code == 201, answer.text
    assert REPLAYED not in answer.headers
    assert answer.json()[secret_field]


def test_a_viewer_replaying_a_senders_notification_is_refused(
    client: TestClient, gateway_settings: GatewaySettings
) -> None:
    viewer = key_with_role(client, "viewer")
    first = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-60"))
    assert first.status_code == 202
    assert_problem(client.post(NOTIFICATIONS, json=body(), headers=keyed("order-60", viewer)), 403)


def test_another_key_of_the_same_tenant_gets_an_answer_of_its_own(client: TestClient) -> None:
    """Answers are bound to the credential, not just the tenant: another key of the tenant reusing an
    Idempotency-Key is answered afresh (it may hold another role). The notification id is still the
    tenant's and key's, so ingest delivers it once."""
    other = key_with_role(client, "sender")
    first = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-61"))
    second = client.post(NOTIFICATIONS, json=body(), headers=keyed("order-61", other))
    assert (first.status_code, second.status_code) == (202, 202)
    assert REPLAYED not in second.headers
    assert second.json()["id"] == first.json()["id"] == notification_id_for(DEV_TENANT, "order-61")


def test_redis_holds_no_personal_data_nor_secret_of_a_kept_answer(admin_api: TestClient, sync_redis: Redis) -> None:
    key = "welcome-grace@example.org"
    sent = admin_api.post(
        NOTIFICATIONS, json=body(recipient={"email": "grace@example.org", "phone": "+14155550123"}), headers=keyed(key)
    )
    assert sent.status_code == 202, sent.text
    created = admin_api.post("/api/v1/api-keys", json={"name": "ops", "role": "admin"}, headers=keyed("ops-key"))
    assert created.status_code == 201, created.text
    stored = [
        sync_redis.get(stored_key(admin_api, key)),
        sync_redis.get(stored_key(admin_api, "ops-key", path="/api/v1/api-keys")),
    ]
    assert all(stored), "both answers are kept"
    everything = b"".join(
        name + (sync_redis.get(name) or b"") for name in sync_redis.scan_iter(match="*http-idempotency*")
    )
    for clear in (b"grace", b"4155550123", b"welcome", created.json()["secret"].encode(), sent.json()["id"].encode()):
        assert clear not in everything
    # ...while the replays still answer in full.
    assert_replay_of(
        admin_api.post(
            NOTIFICATIONS,
            json=body(recipient={"email": "grace@example.org", "phone": "+14155550123"}),
            headers=keyed(key),
        ),
        sent,
    )
