"""Push devices through the API and the repository, on real Postgres."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from services.gateway.api_keys.repository import ApiKeyRepository
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.storage.database import Pool, create_pool
from shared.storage.devices import DeviceRepository
from tests.conftest import ENCRYPTOR
from tests.integration.conftest import API_KEY, assert_problem, auth

pytestmark = pytest.mark.integration

DEVICES = "/api/v1/recipients/user-7/devices"


def test_a_device_is_registered_listed_and_removed(client: TestClient) -> None:
    created = client.post(DEVICES, json={"platform": "android", "token": "fcm-token-1"}, headers=auth())
    assert created.status_code == 201, created.text
    device = created.json()
    assert (device["user_id"], device["platform"], device["token"], device["active"]) == (
        "user-7",
        "android",
        "fcm-token-1",
        True,
    )
    assert [d["id"] for d in client.get(DEVICES, headers=auth()).json()] == [device["id"]]

    assert client.delete(f"{DEVICES}/{device['id']}", headers=auth()).status_code == 204
    assert client.get(DEVICES, headers=auth()).json() == []
    kept = client.get(DEVICES, params={"include_disabled": True}, headers=auth()).json()
    assert [(d["id"], d["active"], d["disabled_reason"]) for d in kept] == [
        (device["id"], False, "removed through the API")
    ]
    assert_problem(client.delete(f"{DEVICES}/{device['id']}", headers=auth()), 404)


def test_registering_a_known_token_again_moves_it_and_re_enables_it(client: TestClient) -> None:
    first = client.post(DEVICES, json={"platform": "ios", "token": "apns-abc"}, headers=auth()).json()
    client.delete(f"{DEVICES}/{first['id']}", headers=auth())
    again = client.post(
        "/api/v1/recipients/user-8/devices", json={"platform": "ios", "token": "apns-abc"}, headers=auth()
    )
    assert again.status_code == 201
    assert (again.json()["id"], again.json()["user_id"], again.json()["active"]) == (first["id"], "user-8", True)
    assert client.get(DEVICES, headers=auth()).json() == []


@pytest.mark.parametrize(
    ("payload", "pointer"),
    [
        ({"platform": "blackberry", "token": "t"}, "#/platform"),
        ({"platform": "web", "token": ""}, "#/token"),
        ({"platform": "web"}, "#/token"),
    ],
)
def test_invalid_devices_are_refused_naming_the_field(
    client: TestClient, payload: dict[str, str], pointer: str
) -> None:
    problem = assert_problem(client.post(DEVICES, json=payload, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == pointer


def subscription(endpoint: str) -> str:
    return json.dumps({"endpoint": endpoint, "keys": {"p256dh": "BNc", "auth": "tBH"}})


@pytest.mark.parametrize(
    ("endpoint", "kind"),
    [
        ("http://127.0.0.1:8080/push/1", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:10.0.0.1]/push/1", "IPv4-mapped IPv6"),
        ("http://0.0.0.0:9000/push/1", "unspecified"),
    ],
)
def test_a_web_subscription_whose_push_service_is_not_public_is_refused(
    client: TestClient, endpoint: str, kind: str
) -> None:
    response = client.post(DEVICES, json={"platform": "web", "token": subscription(endpoint)}, headers=auth())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["pointer"] == "#/token"
    assert f"({kind})" in problem["errors"][0]["detail"]
    assert client.get(DEVICES, headers=auth()).json() == []


def test_a_local_push_service_is_registered_where_private_networks_are_allowed(
    gateway_settings: GatewaySettings,
) -> None:
    settings = gateway_settings.model_copy(update={"webpush_allow_private_networks": True})
    with TestClient(create_app(settings)) as local:
        token = subscription("http://127.0.0.1:8080/push/1")
        assert local.post(DEVICES, json={"platform": "web", "token": token}, headers=auth()).status_code == 201
        # Link-local (cloud metadata) stays refused even then.
        metadata = subscription("http://169.254.169.254/push/1")
        assert_problem(local.post(DEVICES, json={"platform": "web", "token": metadata}, headers=auth()), 422)


def test_devices_need_a_key_and_stay_within_their_tenant(client: TestClient, database_url: str) -> None:
    assert_problem(client.get(DEVICES), 401)
    device = client.post(DEVICES, json={"platform": "web", "token": "sub-1"}, headers=auth()).json()

    async def other_tenant_key() -> None:
        pool = await create_pool(database_url, 1)
        try:
            keys = ApiKeyRepository(pool)
            await keys.ensure_tenant("globex", "Globex")
            await keys.create_key("globex", "globex key", "globex-key-0123456789")
        finally:
            await pool.close()

    asyncio.run(other_tenant_key())
    other = auth("globex-key-0123456789")
    assert client.get(DEVICES, headers=other).json() == []
    assert_problem(client.delete(f"{DEVICES}/{device['id']}", headers=other), 404)
    assert [d["id"] for d in client.get(DEVICES, headers=auth(API_KEY)).json()] == [device["id"]]


async def test_an_unregistered_token_is_disabled_once_and_never_listed_as_active(db_pool: Pool) -> None:
    devices = DeviceRepository(db_pool, ENCRYPTOR)
    await devices.register("acme", "u1", "android", "dead-token")
    await devices.register("acme", "u1", "ios", "live-token")
    assert await devices.disable_token("acme", "dead-token", "unregistered token (fcm)") is True
    assert await devices.disable_token("acme", "dead-token", "again") is False
    assert await devices.disable_token("globex", "live-token", "other tenant") is False
    assert [d.token for d in await devices.for_user("acme", "u1")] == ["live-token"]
    disabled = [d for d in await devices.for_user("acme", "u1", active_only=False) if d.disabled_at]
    assert [(d.token, d.disabled_reason) for d in disabled] == [("dead-token", "unregistered token (fcm)")]
