"""Every /api/v1 route, tried across tenants: another tenant's admin key never reads, changes or learns
of the first tenant's data.

Tenant ``dev`` (the dev key) creates one of everything; tenant ``globex``'s admin key then calls each
route at dev's ids. A route naming one of dev's resources answers 404; a listing or a write answers
for globex alone. No answer to globex may contain any of dev's ids or personal data, and afterwards
dev's data reads back exactly as before. A new route fails :func:`test_every_route_is_tried` until a
probe for it is added here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.callbacks import routes as callbacks
from services.gateway.settings import GatewaySettings
from shared.storage.database import create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.suppressions import Suppression, SuppressionRepository
from tests.conftest import ENCRYPTOR
from tests.integration.conftest import DEV_TENANT, auth
from tests.integration.test_dead_letters import stored_letter
from tests.integration.test_gateway_api import add_tenant_with_key, body

pytestmark = pytest.mark.integration

OTHER_TENANT = "globex"
OTHER_KEY = "globex-isolation-key-0123456789"
USER = "victim-42"
EMAIL = "victim@example.com"
PHONE = "+14155550123"
TEMPLATE = "isolation-welcome"


@dataclass(frozen=True)
class Probe:
    """One call globex makes at dev's data, and the status it must get."""

    method: str
    path: str
    status: int
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class DevData:
    """The ids of what dev created."""

    notification: str = ""
    device: str = ""
    dead_letter: str = ""
    replay: str = ""
    endpoint: str = ""
    api_key: str = ""
    producer_key: str = ""

    def secrets(self) -> list[str]:
        """What must never appear in an answer to another tenant."""
        ids = [self.notification, self.device, self.dead_letter, self.replay, self.endpoint, self.api_key]
        ids.append(self.producer_key)
        return [*ids, EMAIL, PHONE, "dev-only-subject", "hooks.dev.example"]


@pytest.fixture
def isolation_client(gateway_settings: GatewaySettings, database_url: str) -> Iterator[TestClient]:
    settings = gateway_settings.model_copy(
        update={
            "webhook_signing_key": SecretStr("isolation-webhook-signing-key-0123456789"),
            "webhook_allow_private_networks": True,
        }
    )
    asyncio.run(add_tenant_with_key(database_url, OTHER_TENANT, OTHER_KEY))
    with TestClient(create_app(settings)) as running:
        yield running


def _ok(response: Any, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def create_dev_data(client: TestClient, database_url: str) -> DevData:
    """One of every kind of resource, owned by dev."""
    data = DevData()
    sent = body(recipient={"user_id": USER, "email": EMAIL}, content={"subject": "dev-only-subject", "text": "x"})
    data.notification = _ok(client.post("/api/v1/notifications", json=sent, headers=auth()), 202)["id"]
    data.device = _ok(
        client.post(
            f"/api/v1/recipients/{USER}/devices", json={"platform": "android", "token": "tok-dev"}, headers=auth()
        ),
        201,
    )["id"]
    _ok(client.put(f"/api/v1/recipients/{USER}", json={"email": EMAIL, "phone": PHONE}, headers=auth()), 201)
    rules = {"preferences": [{"category": "marketing", "channel": "email", "enabled": False}]}
    _ok(client.put(f"/api/v1/recipients/{USER}/preferences", json=rules, headers=auth()), 200)
    template = {"id": TEMPLATE, "name": "Welcome", "channels": {"email": {"subject": "dev-only-subject", "text": "Hi"}}}
    _ok(client.post("/api/v1/templates", json=template, headers=auth()), 201)
    endpoint = {"url": "https://hooks.dev.example/herald", "events": ["sent"]}
    data.endpoint = _ok(client.post("/api/v1/webhook-endpoints", json=endpoint, headers=auth()), 201)["id"]
    data.api_key = _ok(client.post("/api/v1/api-keys", json={"name": "dev", "role": "viewer"}, headers=auth()), 201)[
        "id"
    ]
    data.producer_key = _ok(client.post("/api/v1/producer-keys", json={"name": "dev"}, headers=auth()), 201)["id"]

    async def seed() -> None:
        pool = await create_pool(database_url, 1)
        try:
            letter = replace(stored_letter(), tenant_id=DEV_TENANT, notification_id=data.notification)
            await DeadLetterRepository(pool, ENCRYPTOR).store([letter])
            await SuppressionRepository(pool, ENCRYPTOR).add([Suppression(DEV_TENANT, "email", EMAIL, "bounced")])
        finally:
            await pool.close()

    asyncio.run(seed())
    data.dead_letter = _ok(client.get("/api/v1/dead-letters", headers=auth()), 200)["items"][0]["id"]
    data.replay = _ok(
        client.post("/api/v1/dead-letters/replays", json={"notification_id": "none-such"}, headers=auth()), 202
    )["id"]
    return data


def probes(dev: DevData) -> list[Probe]:
    """globex's calls, one per route and method (paths as the app declares them, for the coverage check)."""
    n, u, t, e = dev.notification, USER, TEMPLATE, dev.endpoint
    own_notification = body(recipient={"user_id": u, "email": "globex-user@example.com"})
    own_template = {"id": "globex-own", "name": "Own", "channels": {"sms": {"text": "Hi"}}}
    return [
        Probe("POST", "/api/v1/notifications", 202, json=own_notification),
        Probe("GET", f"/api/v1/notifications/{n}", 404),
        Probe("DELETE", f"/api/v1/notifications/{n}", 404),
        Probe("POST", f"/api/v1/notifications/{n}/retry", 404),
        Probe("GET", "/api/v1/notifications", 200, params={"recipient": EMAIL}),
        Probe("POST", "/api/v1/notifications/bulk", 200, json={"notifications": [own_notification]}),
        Probe("POST", f"/api/v1/recipients/{u}/devices", 201, json={"platform": "ios", "token": "ab" * 32}),
        Probe("GET", f"/api/v1/recipients/{u}/devices", 200),
        Probe("DELETE", f"/api/v1/recipients/{u}/devices/{dev.device}", 404),
        Probe("GET", f"/api/v1/recipients/{u}/erasures", 200),
        Probe("GET", f"/api/v1/recipients/{u}", 404),
        Probe("GET", "/api/v1/recipients", 200),
        Probe("GET", f"/api/v1/recipients/{u}/preferences", 404),
        Probe("PUT", f"/api/v1/recipients/{u}/preferences", 404, json={"preferences": []}),
        Probe(
            "PATCH",
            f"/api/v1/recipients/{u}/preferences",
            404,
            json={"category": "*", "channel": "*", "enabled": False},
        ),
        Probe("DELETE", f"/api/v1/recipients/{u}", 404),
        # globex's own recipient of the same user id: after the probes above, which found none.
        Probe("PUT", f"/api/v1/recipients/{u}", 201, json={"email": "globex-user@example.com"}),
        # Erases globex's own user of that id: dev's data is checked untouched afterwards.
        Probe("POST", f"/api/v1/recipients/{u}/erasures", 201, json={"emails": [EMAIL]}),
        Probe("GET", "/api/v1/dead-letters", 200),
        Probe("POST", "/api/v1/dead-letters/replays", 202, json={}),
        Probe("GET", f"/api/v1/dead-letters/replays/{dev.replay}", 404),
        Probe("POST", f"/api/v1/dead-letters/{dev.dead_letter}/retry", 404),
        Probe("GET", f"/api/v1/dead-letters/{dev.dead_letter}", 404),
        Probe("DELETE", f"/api/v1/dead-letters/{dev.dead_letter}", 404),
        Probe("DELETE", "/api/v1/dead-letters", 200, params={"notification_id": n}),
        Probe("GET", "/api/v1/suppressions", 200, params={"channel": "email", "address": EMAIL}),
        Probe("DELETE", "/api/v1/suppressions", 404, params={"channel": "email", "address": EMAIL}),
        Probe("GET", "/api/v1/templates", 200),
        Probe("GET", f"/api/v1/templates/{t}", 404),
        Probe("PUT", f"/api/v1/templates/{t}", 404, json={k: v for k, v in own_template.items() if k != "id"}),
        Probe("GET", f"/api/v1/templates/{t}/versions", 404),
        Probe("GET", f"/api/v1/templates/{t}/versions/1", 404),
        Probe("POST", f"/api/v1/templates/{t}/preview", 404, json={"channel": "email"}),
        Probe("DELETE", f"/api/v1/templates/{t}", 404),
        Probe("POST", "/api/v1/templates", 201, json=own_template),
        Probe("POST", "/api/v1/api-keys", 201, json={"name": "globex", "role": "viewer"}),
        Probe("GET", "/api/v1/api-keys", 200),
        Probe("DELETE", f"/api/v1/api-keys/{dev.api_key}", 404),
        Probe("POST", "/api/v1/producer-keys", 201, json={"name": "globex"}),
        Probe("GET", "/api/v1/producer-keys", 200),
        Probe("DELETE", f"/api/v1/producer-keys/{dev.producer_key}", 404),
        Probe("GET", "/api/v1/webhook-endpoints", 200),
        Probe("GET", f"/api/v1/webhook-endpoints/{e}", 404),
        Probe("PATCH", f"/api/v1/webhook-endpoints/{e}", 404, json={"description": "taken over"}),
        Probe("POST", f"/api/v1/webhook-endpoints/{e}/rotate-secret", 404),
        Probe("DELETE", f"/api/v1/webhook-endpoints/{e}", 404),
        Probe("GET", f"/api/v1/webhook-endpoints/{e}/deliveries", 404),
        Probe("POST", "/api/v1/webhook-endpoints", 201, json={"url": "https://hooks.globex.example/h"}),
    ]


def declared_routes() -> set[tuple[str, str]]:
    """Every (method, path) under /api/v1 that takes a credential."""
    app = create_app(GatewaySettings())
    return {
        (method, path)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and (path := context.path or "").startswith("/api/v1/")
        and not path.startswith(f"{callbacks.PREFIX}/")
        for method in context.methods or ()
    }


def _declared(probe: Probe, dev: DevData) -> tuple[str, str]:
    """The probe's route as the app declares it: dev's ids put back as their path parameters."""
    path = probe.path
    names = {
        dev.notification: "{notification_id}",
        dev.device: "{device_id}",
        dev.dead_letter: "{dead_letter_id}",
        dev.replay: "{replay_id}",
        dev.endpoint: "{endpoint_id}",
        dev.api_key: "{key_id}",
        dev.producer_key: "{key_id}",
        USER: "{user_id}",
        TEMPLATE: "{template_id}",
    }
    parts = [names.get(part, part) for part in path.split("/")]
    if parts[-2:] == ["versions", "1"]:
        parts[-1] = "{version}"
    return probe.method, "/".join(parts)


def test_every_route_is_tried() -> None:
    dev = DevData("n-id", "d-id", "dl-id", "r-id", "e-id", "k-id", "pk-id")
    assert {_declared(probe, dev) for probe in probes(dev)} == declared_routes()


def snapshot(client: TestClient, dev: DevData) -> dict[str, Any]:
    """Everything dev can read of its own data."""
    reads = {
        "notification": f"/api/v1/notifications/{dev.notification}",
        "devices": f"/api/v1/recipients/{USER}/devices",
        "recipient": f"/api/v1/recipients/{USER}",
        "preferences": f"/api/v1/recipients/{USER}/preferences",
        "template": f"/api/v1/templates/{TEMPLATE}",
        "endpoint": f"/api/v1/webhook-endpoints/{dev.endpoint}",
        "dead_letter": f"/api/v1/dead-letters/{dev.dead_letter}",
        "replay": f"/api/v1/dead-letters/replays/{dev.replay}",
        "suppressions": "/api/v1/suppressions",
        "api_keys": "/api/v1/api-keys",
        "producer_keys": "/api/v1/producer-keys",
        "erasures": f"/api/v1/recipients/{USER}/erasures",
    }
    found = {name: _ok(client.get(path, headers=auth()), 200) for name, path in reads.items()}
    # Read times move on every read; they say nothing about who changed what.
    for key in found["api_keys"]:
        key.pop("last_used_at")
    return found


def test_another_tenant_reaches_none_of_a_tenants_data_on_any_route(
    isolation_client: TestClient, database_url: str
) -> None:
    client = isolation_client
    dev = create_dev_data(client, database_url)
    before = snapshot(client, dev)
    assert before["erasures"] == []

    for number, probe in enumerate(probes(dev)):
        headers = {**auth(OTHER_KEY), "Idempotency-Key": f"isolation-{number}"}
        response = client.request(probe.method, probe.path, json=probe.json, params=probe.params, headers=headers)
        call = f"{probe.method} {probe.path}"
        assert response.status_code == probe.status, (call, response.text)
        # An id globex itself sent may come back in a problem's detail ("no notification <id>").
        sent = f"{probe.path} {probe.params} {probe.json}"
        leaked = [secret for secret in dev.secrets() if secret in response.text and secret not in sent]
        assert leaked == [], (call, response.text)

    assert snapshot(client, dev) == before
