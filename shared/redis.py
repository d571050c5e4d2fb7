"""The Redis client every service uses, with keys namespaced by ``HERALD_REDIS_NAMESPACE``."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from shared.config import HeraldSettings


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
