"""Builds the gateway's FastAPI app: its dependencies, routes, error handling and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.gateway import dead_letters, devices, idempotency, notifications, problems, tracking
from services.gateway.auth import ApiKeyAuthenticator
from services.gateway.middleware import BodySizeLimit, RequestMetrics
from services.gateway.repository import ApiKeyRepository, NotificationRepository
from services.gateway.settings import GatewaySettings
from shared.batching import GroupWriter
from shared.kafka.producer import MessageProducer
from shared.observability.ops import Check, health_routes
from shared.redis import create_redis, key
from shared.storage.database import check, create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.devices import DeviceRepository
from shared.storage.replays import ReplayStore
from shared.topics import Topics

SERVICE = "gateway"


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app; its Kafka producer and Postgres pool live as long as the app does."""
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.database_url, settings.database_pool_size)
        producer = MessageProducer(settings, client_id=SERVICE)
        await producer.start()
        redis = create_redis(settings)
        keys = ApiKeyRepository(pool)
        if settings.dev_api_key is not None:
            await keys.ensure_tenant(settings.dev_tenant, "Local development")
            await keys.create_key(settings.dev_tenant, "dev key", settings.dev_api_key.get_secret_value())
        app.state.producer = producer
        app.state.topics = Topics(settings.topic_prefix)
        app.state.notifications = NotificationRepository(pool)
        app.state.devices = DeviceRepository(pool)
        app.state.dead_letters = DeadLetterRepository(pool)
        app.state.replays = ReplayStore(pool)
        # Concurrent POSTs share one INSERT: a round trip per batch, not per request.
        app.state.accepted = GroupWriter(app.state.notifications.record_accepted)
        app.state.authenticator = ApiKeyAuthenticator(keys, settings.auth_cache_ttl_s)
        app.state.idempotency = idempotency.IdempotencyStore(
            redis,
            prefix=key(settings, "http-idempotency"),
            ttl_s=settings.idempotency_ttl_s,
            lock_ttl_s=settings.idempotency_lock_ttl_s,
        )
        checks.update({"kafka": producer.check, "postgres": lambda: check(pool), "redis": redis.ping})
        try:
            yield
        finally:
            await producer.stop()
            await pool.close()
            await redis.aclose()

    app = FastAPI(
        title="Herald",
        version="1",
        summary="Send notifications and follow their delivery.",
        lifespan=lifespan,
    )
    problems.install(app)
    # Before the other middleware: innermost, it keeps exactly what the routes answered.
    idempotency.install(app)
    app.include_router(notifications.router)
    app.include_router(devices.router)
    app.include_router(dead_letters.router)
    # Without an API key: mail clients call these, and the token's signature authenticates them.
    app.include_router(tracking.routes(settings.tracking_signing_key))
    app.router.routes.extend(health_routes(checks))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)
    return app
