"""``/api/v1/producer-keys``: admins create (the credential answered), list and revoke their tenant's keys; the
credential signs requests that verify for that tenant only."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from services.gateway.api_keys.repository import ApiKeyRepository
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.producer_keys import ProducerKey, SignatureError, verify
from shared.storage.database import create_pool
from tests.integration.conftest import DEV_TENANT, PRODUCER_SIGNING_KEY, assert_problem, auth

pytestmark = pytest.mark.integration

PATH = "/api/v1/producer-keys"
SENDER_KEY = "sender-key-0123456789abcdef"


async def add_sender(database_url: str) -> None:
    pool = await create_pool(database_url, size=1)
    try:
        await ApiKeyRepository(pool).create_key(DEV_TENANT, "a sender", SENDER_KEY, role="sender")
    finally:
        await pool.close()


def test_an_admin_creates_a_key_whose_credential_signs_for_its_tenant_only(client: TestClient) -> None:
    created = client.post(PATH, json={"name": "billing service"}, headers=auth())
    assert created.status_code == 201, created.text
    body = created.json()
    key = ProducerKey.parse(body["credential"])
    assert key.key_id == body["id"]
    master = PRODUCER_SIGNING_KEY.encode()
    assert verify(master, DEV_TENANT, key.sign(b"value"), b"value") == body["id"]
    with pytest.raises(SignatureError):
        verify(master, "another-tenant", key.sign(b"value"), b"value")

    listed = client.get(PATH, headers=auth()).json()
    assert [(item["id"], item["revoked_at"]) for item in listed] == [(body["id"], None)]
    assert "credential" not in listed[0]

    assert client.delete(f"{PATH}/{body['id']}", headers=auth()).status_code == 204
    assert client.get(PATH, headers=auth()).json()[0]["revoked_at"] is not None
    assert_problem(client.delete(f"{PATH}/{body['id']}", headers=auth()), 404)


def test_only_an_admin_manages_producer_keys(client: TestClient, database_url: str) -> None:
    asyncio.run(add_sender(database_url))
    for method, path in (("POST", PATH), ("GET", PATH), ("DELETE", f"{PATH}/pkAny")):
        response = client.request(
            method, path, json={"name": "x"} if method == "POST" else None, headers=auth(SENDER_KEY)
        )
        assert_problem(response, 403)


def test_without_a_master_key_creating_a_key_is_503(gateway_settings: GatewaySettings) -> None:
    unsigned = gateway_settings.model_copy(update={"producer_signing_key": None, "require_signed_requests": False})
    with TestClient(create_app(unsigned)) as client:
        problem = assert_problem(client.post(PATH, json={"name": "x"}, headers=auth()), 503)
    assert "HERALD_PRODUCER_SIGNING_KEY" in problem["detail"]
