"""The chart's first-admin-key Job (``python -m services.gateway.api_keys.first_admin_key``) on a real Postgres:
the key it stores works at the gateway, storing it again changes nothing, a revoked key stays revoked."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.integration.conftest import auth

pytestmark = pytest.mark.integration

MODULE = "services.gateway.api_keys.first_admin_key"


def store_first_admin_key(database_url: str, tenant: str, key: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "HERALD_DATABASE_URL": database_url,
        "HERALD_FIRST_ADMIN_TENANT": tenant,
        "HERALD_FIRST_ADMIN_KEY": key,
    }
    return subprocess.run([sys.executable, "-m", MODULE], env=environment, capture_output=True, text=True, timeout=60)


def test_the_stored_key_is_an_admin_of_its_tenant_once_and_stays_revoked(
    database_url: str, gateway_settings: GatewaySettings
) -> None:
    tenant, key = f"tenant-{uuid.uuid4().hex[:8]}", f"hk_live_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    stored = store_first_admin_key(database_url, tenant, key)
    assert stored.returncode == 0, stored.stderr
    assert key not in stored.stdout + stored.stderr, "the key is never printed: the Secret is its one copy"
    again = store_first_admin_key(database_url, tenant, key)
    assert (again.returncode, "already stored" in again.stdout) == (0, True)

    with TestClient(create_app(gateway_settings)) as client:
        listed = client.get("/api/v1/api-keys", headers=auth(key))
        assert listed.status_code == 200, listed.text
        (only,) = listed.json()
        assert only["role"] == "admin"
        assert client.delete(f"/api/v1/api-keys/{only['id']}", headers=auth(key)).status_code == 204

    assert store_first_admin_key(database_url, tenant, key).returncode == 0
    with TestClient(create_app(gateway_settings)) as client:
        assert client.get("/api/v1/api-keys", headers=auth(key)).status_code == 401, "a revoked key stays revoked"


def test_a_short_key_or_no_tenant_is_refused(database_url: str) -> None:
    assert store_first_admin_key(database_url, "acme", "too-short").returncode == 2
    assert store_first_admin_key(database_url, "", "x" * 40).returncode == 2
