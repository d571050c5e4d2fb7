"""Fixtures for integration tests: a migrated Postgres database of its own per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from redis.asyncio import Redis

from infra.standins.aws import MotoServer
from services.gateway.app import create_app
from services.gateway.settings import MAX_PER_MINUTE, GatewaySettings
from shared.config import HeraldSettings
from shared.redis import create_redis
from shared.storage.database import Pool, create_pool
from tests.databases import MigratedDatabases, throwaway_database, with_database
from tests.session_datastores import DATABASE_VARIABLE, DEFAULT_DATABASE_URL

API_KEY = "test-key-0123456789abcdef"
# The master key of producer keys (shared.producer_keys) the gateway signs its requests with.
PRODUCER_SIGNING_KEY = "test-producer-signing-key-0123456789abcdef"
DEV_TENANT = "dev"
MAX_BODY_BYTES = 4096
PROBLEM_JSON = "application/problem+json"
# Read once tests/conftest.py's pytest_configure has named a private server if the configured one did not answer.
BASE_DATABASE_URL = os.environ.get(DATABASE_VARIABLE, DEFAULT_DATABASE_URL)

# The name other test modules import it by.
_with_database = with_database


@pytest.fixture(scope="session")
def migrated_databases() -> Iterator[MigratedDatabases]:
    """This session's (this xdist worker's) migrated test databases, dropped at its end."""
    databases = MigratedDatabases(BASE_DATABASE_URL)
    try:
        yield databases
    finally:
        asyncio.run(databases.drop_all())


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    """The DSN of a fresh, empty ``herald_test_<hex>`` database, dropped afterwards."""
    async with throwaway_database(BASE_DATABASE_URL) as url:
        yield url


@pytest.fixture
async def database_url(migrated_databases: MigratedDatabases) -> AsyncIterator[str]:
    """The DSN of a test database with every migration applied and nothing in it (see tests/databases.py)."""
    async with migrated_databases.database() as url:
        yield url


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[Pool]:
    """A small connection pool on the test database."""
    pool = await create_pool(database_url, size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def redis(settings: HeraldSettings) -> AsyncIterator[Redis]:
    """A client on the test Redis; every key under the test's namespace is deleted afterwards."""
    client = create_redis(settings)
    try:
        yield client
    finally:
        stale = [k async for k in client.scan_iter(match=f"{settings.redis_namespace}:*", count=10_000)]
        if stale:
            await client.delete(*stale)
        await client.aclose()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto in server mode: the AWS APIs (SES, SNS) over real HTTP, for the test session (each xdist worker's:
    a module's tests are shared out over the workers, so a module-scoped one started about 25 times)."""
    with MotoServer(line_sink=None) as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoServer) -> MotoServer:
    """The moto server, emptied: no identities, nothing sent yet."""
    moto_server.reset()
    return moto_server


@pytest.fixture
def gateway_settings(settings: HeraldSettings, database_url: str) -> GatewaySettings:
    return GatewaySettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        kafka_idempotent_producer=False,
        database_url=database_url,
        database_pool_size=2,
        redis_url=settings.redis_url,
        redis_namespace=settings.redis_namespace,
        dev_api_key=API_KEY,  # type: ignore[arg-type]
        dev_tenant=DEV_TENANT,
        producer_signing_key=PRODUCER_SIGNING_KEY,  # type: ignore[arg-type]
        max_body_bytes=MAX_BODY_BYTES,
        # Far above what any test sends; tests/integration/test_gateway_limits.py sets small ones.
        rate_limit_per_key=MAX_PER_MINUTE,
        rate_limit_per_tenant=MAX_PER_MINUTE,
    )


@pytest.fixture
def client(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    with TestClient(create_app(gateway_settings)) as running:
        yield running


def auth(secret: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"].startswith("https://")
    return problem
