"""Builds the gateway's FastAPI app: its dependencies, routes, error handling and middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from services.gateway import (
    api_keys,
    bulk,
    callbacks,
    dead_letters,
    devices,
    erasures,
    idempotency,
    listing,
    notifications,
    openapi,
    problems,
    recipients,
    suppressions,
    templates,
    tracking,
    webhook_endpoints,
)
from services.gateway.auth import ApiKeyAuthenticator, JwtVerifier
from services.gateway.middleware import BodySizeLimit, NulCharacters, RequestMetrics
from services.gateway.ratelimit import RateLimitHeaders, RequestLimiter
from services.gateway.repository import ApiKeyRepository, NotificationRepository
from services.gateway.settings import GatewaySettings
from shared.batching import GroupWriter
from shared.crypto import Encryptor
from shared.kafka.producer import MessageProducer
from shared.observability.ops import Check, health_routes
from shared.redis import create_redis, key
from shared.storage.database import check, create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.devices import DeviceRepository
from shared.storage.erasure import RecipientEraser
from shared.storage.recipient_index import RecipientIndex
from shared.storage.recipients import RecipientRepository
from shared.storage.replays import ReplayStore
from shared.storage.suppressions import SuppressionRepository
from shared.storage.templates import TemplateRepository
from shared.storage.webhook_endpoints import WebhookEndpointRepository
from shared.topics import Topics

SERVICE = "gateway"
# The response headers a browser's script may read.
CORS_EXPOSED_HEADERS = [
    "Location",
    "Retry-After",
    "Idempotent-Replayed",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
]


def create_app(settings: GatewaySettings) -> FastAPI:
    """The gateway app; its Kafka producer and Postgres pool live as long as the app does."""
    checks: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything opens: without the keys the gateway refuses to start (it stores personal data).
        encryptor = Encryptor.from_settings(settings)
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
        app.state.min_recurrence_interval = timedelta(seconds=settings.recurrence_min_interval_s)
        app.state.notifications = NotificationRepository(pool, encryptor)
        app.state.devices = DeviceRepository(pool, encryptor)
        app.state.recipients = RecipientRepository(pool, encryptor)
        app.state.dead_letters = DeadLetterRepository(pool, encryptor)
        app.state.replays = ReplayStore(pool)
        app.state.suppressions = SuppressionRepository(pool, encryptor)
        app.state.webhook_endpoints = WebhookEndpointRepository(pool, encryptor)
        app.state.eraser = RecipientEraser(pool, encryptor)
        app.state.recipient_index = RecipientIndex(encryptor)
        app.state.templates = TemplateRepository(pool)
        app.state.known_templates = templates.KnownTemplates(app.state.templates)
        # Concurrent POSTs share one INSERT: a round trip per batch, not per request.
        app.state.accepted = GroupWriter(app.state.notifications.record_accepted)
        app.state.authenticator = ApiKeyAuthenticator(keys, settings.auth_cache_ttl_s)
        app.state.api_keys = keys
        app.state.api_key_env = settings.api_key_env
        app.state.jwt = JwtVerifier(settings)
        app.state.idempotency = idempotency.IdempotencyStore(
            redis,
            encryptor,
            prefix=key(settings, "http-idempotency"),
            ttl_s=settings.idempotency_ttl_s,
            lock_ttl_s=settings.idempotency_lock_ttl_s,
        )
        app.state.rate_limiter = RequestLimiter(redis, prefix=key(settings, "http-ratelimit"), settings=settings)
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
    openapi.install(app)
    # Before the other middleware: innermost, it keeps exactly what the routes answered.
    idempotency.install(app)
    # Outside it: a replayed answer gets this request's rate-limit headers, not the stored ones.
    app.add_middleware(RateLimitHeaders)
    app.include_router(notifications.router)
    app.include_router(listing.router)
    app.include_router(bulk.routes(settings.bulk_max_items))
    app.include_router(devices.routes(settings))
    app.include_router(erasures.router)
    app.include_router(recipients.router)
    app.include_router(dead_letters.router)
    app.include_router(suppressions.router)
    app.include_router(templates.router)
    app.include_router(api_keys.router)
    app.include_router(webhook_endpoints.routes(settings))
    # Without an API key: mail clients call these, and the token's signature authenticates them.
    app.include_router(tracking.routes(settings.tracking_signing_key))
    # Without an API key too: providers sign their callbacks.
    app.include_router(callbacks.routes(settings))
    app.router.routes.extend(health_routes(checks))
    app.add_middleware(NulCharacters)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, per_path={bulk.PATH: settings.bulk_max_body_bytes}
    )
    if settings.cors_origins:
        # Outside the others: preflights are answered here, and every answer (413, 429) gets CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "traceparent"],
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    app.add_middleware(RequestMetrics)
    return app
