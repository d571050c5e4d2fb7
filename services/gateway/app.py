"""Builds the gateway's FastAPI app: its collaborators (:class:`~services.gateway.deps.Gateway`, built in the
lifespan), routes, error handling and middleware."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from services.gateway import deps
from services.gateway.api_keys import routes as api_keys
from services.gateway.api_keys.repository import ApiKeyRepository
from services.gateway.callbacks import routes as callbacks
from services.gateway.callbacks.service import CallbackVerifiers
from services.gateway.dead_letters import routes as dead_letters
from services.gateway.devices import routes as devices
from services.gateway.erasures import routes as erasures
from services.gateway.http import idempotency, openapi, problems
from services.gateway.http.credentials import ApiKeyAuthenticator, JwtVerifier
from services.gateway.http.idempotency_store import IdempotencyStore
from services.gateway.http.middleware import BodySizeLimit, NulCharacters, RequestMetrics
from services.gateway.http.ratelimit import RateLimitHeaders, RequestLimiter
from services.gateway.notifications import routes as notifications
from services.gateway.notifications.repository import NotificationRepository
from services.gateway.notifications.schemas import BULK_PATH
from services.gateway.preferences import routes as preferences
from services.gateway.producer_keys import routes as producer_keys
from services.gateway.recipients import routes as recipients
from services.gateway.settings import GatewaySettings
from services.gateway.suppressions import routes as suppressions
from services.gateway.templates import routes as templates
from services.gateway.templates.service import KnownTemplates
from services.gateway.tracking import routes as tracking
from services.gateway.webhook_endpoints import routes as webhook_endpoints
from shared.batching import GroupWriter
from shared.crypto import Encryptor
from shared.kafka.producer import MessageProducer
from shared.kafka.startup import KafkaStartup
from shared.observability import tracing
from shared.observability.ops import Check, health_routes
from shared.redis import create_redis, key
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter
from shared.storage.database import check, create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.devices import DeviceRepository
from shared.storage.erasure import RecipientEraser
from shared.storage.producer_keys import ProducerKeyRepository
from shared.storage.recipient_index import RecipientIndex
from shared.storage.recipients import RecipientRepository
from shared.storage.replays import ReplayStore
from shared.storage.suppressions import SuppressionRepository
from shared.storage.templates import TemplateRepository
from shared.storage.webhook_endpoints import WebhookEndpointRepository
from shared.topics import Topics
from shared.tracking import TrackingTokens

SERVICE = "gateway"
# The API's resources, each a module with a ``router``. Tracking (mail clients call it) and callbacks (providers
# sign them) take no API key: the token's signature and the provider's authenticate them.
RESOURCES = (
    notifications,
    devices,
    erasures,
    recipients,
    preferences,
    dead_letters,
    suppressions,
    templates,
    api_keys,
    producer_keys,
    webhook_endpoints,
    tracking,
    callbacks,
)
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
    degraded: dict[str, Check] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything opens: without the keys the gateway refuses to start (it stores personal data).
        encryptor = Encryptor.from_settings(settings)
        settings.check_request_signing()
        pool = await create_pool(settings.database_url, settings.database_pool_size)
        producer = MessageProducer(settings, client_id=SERVICE)
        # Started in the background: while the cluster refuses the gateway or is away, it serves (reads,
        # 503 for sends) and is not ready, rather than exit and be restarted into the same refusal.
        kafka = KafkaStartup(settings, [producer.start])
        stopping = asyncio.Event()
        starting = asyncio.create_task(kafka.run(stopping))
        await kafka.tried.wait()
        redis = create_redis(settings)
        keys = ApiKeyRepository(pool)
        if settings.dev_api_key is not None:
            await keys.ensure_tenant(settings.dev_tenant, "Local development")
            await keys.create_key(settings.dev_tenant, "dev key", settings.dev_api_key.get_secret_value())
        topics = Topics(settings.topic_prefix)
        notification_store = NotificationRepository(pool, encryptor)
        template_store = TemplateRepository(pool)
        signing_key = settings.tracking_signing_key
        deps.attach(
            app,
            deps.Gateway(
                settings=settings,
                producer=producer,
                topics=topics,
                status=StatusReporter(topics.status, SERVICE),
                notifications=notification_store,
                accepted=GroupWriter(notification_store.record_accepted),
                recipient_index=RecipientIndex(encryptor),
                templates=template_store,
                known_templates=KnownTemplates(template_store),
                recipients=RecipientRepository(pool, encryptor),
                devices=DeviceRepository(pool, encryptor),
                dead_letters=DeadLetterRepository(pool, encryptor),
                replays=ReplayStore(pool),
                suppressions=SuppressionRepository(pool, encryptor),
                webhook_endpoints=WebhookEndpointRepository(pool, encryptor),
                eraser=RecipientEraser(pool, encryptor),
                api_keys=keys,
                producer_keys=ProducerKeyRepository(pool),
                authenticator=ApiKeyAuthenticator(keys, settings.auth_cache_ttl_s),
                jwt=JwtVerifier(settings),
                idempotency=IdempotencyStore(
                    redis,
                    encryptor,
                    prefix=key(settings, "http-idempotency"),
                    ttl_s=settings.idempotency_ttl_s,
                    lock_ttl_s=settings.idempotency_lock_ttl_s,
                ),
                rate_limiter=RequestLimiter(redis, prefix=key(settings, "http-ratelimit"), settings=settings),
                webhook_guard=OutboundGuard(allow_private_networks=settings.webhook_allow_private_networks),
                webpush_guard=OutboundGuard(allow_private_networks=settings.webpush_allow_private_networks),
                tracking_tokens=TrackingTokens(signing_key.get_secret_value().encode()) if signing_key else None,
                callbacks=CallbackVerifiers.from_settings(settings),
            ),
        )
        checks.update({"kafka": kafka.readiness(producer.check), "postgres": lambda: check(pool)})
        # Without Redis the gateway still accepts (the rate limiter fails open; only keyed requests get a
        # 503): reported, not a reason to take it out of its Service.
        degraded["redis"] = redis.ping
        try:
            yield
        finally:
            stopping.set()
            await starting
            await producer.stop()
            await pool.close()
            await redis.aclose()

    app = FastAPI(
        title="Herald",
        version="1",
        summary="Send notifications and follow their delivery.",
        lifespan=lifespan,
        # FastAPI's own request spans stay off: OpenTelemetry's instrumentation makes them, only when spans are
        # exported (shared.observability.tracing.instrument_app); FastAPI's would cost 80 us a request regardless.
        telemetry={"tracing": False},
    )
    problems.install(app)
    openapi.install(app)
    tracing.instrument_app(app)
    # Before the other middleware: innermost, it keeps exactly what the routes answered.
    idempotency.install(app)
    # Outside it: a replayed answer gets this request's rate-limit headers, not the stored ones.
    app.add_middleware(RateLimitHeaders)
    # The resources' own routes rather than include_router's: FastAPI 0.165 analyses the dependencies of every
    # included route again for each app it is included in (about 0.1 s of CPU a gateway), and each test builds
    # an app of its own. Each router carries its prefix, tags and responses, so the API is the same.
    for resource in RESOURCES:
        app.router.routes.extend(resource.router.routes)
    app.router.routes.extend(health_routes(checks, reported=degraded))
    app.add_middleware(NulCharacters)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, per_path={BULK_PATH: settings.bulk_max_body_bytes}
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
