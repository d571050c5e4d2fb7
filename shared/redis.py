"""The Redis client every service uses, with keys namespaced by ``HERALD_REDIS_NAMESPACE``."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.config import HeraldSettings


def create_redis(settings: HeraldSettings) -> Redis:
    """A pooled client; commands time out instead of hanging when Redis is gone."""
    return Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=15)


def key(settings: HeraldSettings, *parts: str) -> str:
    """``<namespace>:<part>:<part>...``"""
    return ":".join((settings.redis_namespace, *parts))
