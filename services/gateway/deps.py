"""The gateway's collaborators, built once at start-up, and the typed dependencies routes take them by.

:class:`Gateway` holds every long-lived object a route may use (repositories, the Kafka producer, the
Redis-backed stores, verifiers built from the settings). The app's lifespan builds it and :func:`attach`
stores it on the app; a route names what it needs as a parameter typed with one of the aliases below
(``producer: ProducerDep``), so mypy checks every use; a test swaps one by attaching a copy of the running
:class:`Gateway` with it replaced (``dataclasses.replace``). This module is the only one that touches
``app.state``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Request

from services.gateway.api_keys.repository import ApiKeyRepository
from services.gateway.callbacks.service import CallbackVerifiers
from services.gateway.dead_letters.service import Requeuer
from services.gateway.http.credentials import ApiKeyAuthenticator, JwtVerifier
from services.gateway.http.idempotency_store import IdempotencyStore
from services.gateway.http.ratelimit import RequestLimiter
from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.gateway.notifications.service import Intake
from services.gateway.settings import GatewaySettings
from services.gateway.templates.service import KnownTemplates
from shared.batching import GroupWriter
from shared.kafka.producer import MessageProducer
from shared.ssrf import OutboundGuard
from shared.status_events import StatusReporter
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

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Gateway:
    """Everything the routes use, for as long as the app runs."""

    settings: GatewaySettings
    producer: MessageProducer
    topics: Topics
    # The gateway's own status events: cancellations, opens and clicks, provider callbacks, requeues.
    status: StatusReporter
    notifications: NotificationRepository
    # Concurrent POSTs share one INSERT: a round trip per batch, not per request.
    accepted: GroupWriter[AcceptedNotification]
    recipient_index: RecipientIndex
    templates: TemplateRepository
    known_templates: KnownTemplates
    recipients: RecipientRepository
    devices: DeviceRepository
    dead_letters: DeadLetterRepository
    replays: ReplayStore
    suppressions: SuppressionRepository
    webhook_endpoints: WebhookEndpointRepository
    eraser: RecipientEraser
    api_keys: ApiKeyRepository
    producer_keys: ProducerKeyRepository
    authenticator: ApiKeyAuthenticator
    jwt: JwtVerifier
    idempotency: IdempotencyStore
    rate_limiter: RequestLimiter
    # URLs others give Herald, refused at registration when they point inside (SSRF).
    webhook_guard: OutboundGuard
    webpush_guard: OutboundGuard
    # None: tracking links are not configured, every token is unknown.
    tracking_tokens: TrackingTokens | None
    callbacks: CallbackVerifiers

    # Built once, not per request: each collaborator a route depends on is a dependency FastAPI resolves anew
    # for every request (dependency resolution was a third of the gateway's CPU).
    @cached_property
    def intake(self) -> Intake:
        """What accepts notifications."""
        return Intake(
            self.producer,
            self.topics,
            self.recipient_index,
            self.known_templates,
            self.accepted,
            self.notifications,
            timedelta(seconds=self.settings.recurrence_min_interval_s),
            self.settings.request_signing_key(),
        )

    @cached_property
    def requeuer(self) -> Requeuer:
        """What sends a dead letter again."""
        return Requeuer(self.dead_letters, self.producer, self.topics, self.status)


def attach(app: FastAPI, gateway: Gateway) -> None:
    """Make ``gateway`` what the routes of ``app`` get (the lifespan calls it once everything is open)."""
    app.state.gateway = gateway


def attached(app: FastAPI) -> Gateway:
    """The collaborators of a running ``app``."""
    gateway = getattr(app.state, "gateway", None)
    if not isinstance(gateway, Gateway):
        raise RuntimeError("the gateway is not started: its lifespan builds the collaborators")
    return gateway


# The dependencies are coroutines though they never wait: FastAPI runs a plain function's dependency in its
# thread pool, a hand-off per dependency and request that was a fifth of the gateway's CPU under make bench.


async def get_gateway(request: Request) -> Gateway:
    """FastAPI dependency: the running app's collaborators."""
    return attached(request.app)


def _part(read: Callable[[Gateway], T]) -> Callable[[Gateway], Coroutine[Any, Any, T]]:
    """A dependency giving one collaborator out of :class:`Gateway`."""

    async def dependency(gateway: Annotated[Gateway, Depends(get_gateway)]) -> T:
        return read(gateway)

    return dependency


get_settings = _part(lambda gateway: gateway.settings)
get_producer = _part(lambda gateway: gateway.producer)
get_topics = _part(lambda gateway: gateway.topics)
get_status = _part(lambda gateway: gateway.status)
get_notifications = _part(lambda gateway: gateway.notifications)
get_accepted = _part(lambda gateway: gateway.accepted)
get_recipient_index = _part(lambda gateway: gateway.recipient_index)
get_templates = _part(lambda gateway: gateway.templates)
get_known_templates = _part(lambda gateway: gateway.known_templates)
get_recipients = _part(lambda gateway: gateway.recipients)
get_devices = _part(lambda gateway: gateway.devices)
get_dead_letters = _part(lambda gateway: gateway.dead_letters)
get_replays = _part(lambda gateway: gateway.replays)
get_suppressions = _part(lambda gateway: gateway.suppressions)
get_webhook_endpoints = _part(lambda gateway: gateway.webhook_endpoints)
get_eraser = _part(lambda gateway: gateway.eraser)
get_api_keys = _part(lambda gateway: gateway.api_keys)
get_producer_keys = _part(lambda gateway: gateway.producer_keys)
get_authenticator = _part(lambda gateway: gateway.authenticator)
get_idempotency = _part(lambda gateway: gateway.idempotency)
get_webhook_guard = _part(lambda gateway: gateway.webhook_guard)
get_webpush_guard = _part(lambda gateway: gateway.webpush_guard)
get_tracking_tokens = _part(lambda gateway: gateway.tracking_tokens)
get_callbacks = _part(lambda gateway: gateway.callbacks)

GatewayDep = Annotated[Gateway, Depends(get_gateway)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
ProducerDep = Annotated[MessageProducer, Depends(get_producer)]
TopicsDep = Annotated[Topics, Depends(get_topics)]
StatusDep = Annotated[StatusReporter, Depends(get_status)]
NotificationsDep = Annotated[NotificationRepository, Depends(get_notifications)]
AcceptedDep = Annotated[GroupWriter[AcceptedNotification], Depends(get_accepted)]
RecipientIndexDep = Annotated[RecipientIndex, Depends(get_recipient_index)]
TemplatesDep = Annotated[TemplateRepository, Depends(get_templates)]
KnownTemplatesDep = Annotated[KnownTemplates, Depends(get_known_templates)]
RecipientsDep = Annotated[RecipientRepository, Depends(get_recipients)]
DevicesDep = Annotated[DeviceRepository, Depends(get_devices)]
DeadLettersDep = Annotated[DeadLetterRepository, Depends(get_dead_letters)]
ReplaysDep = Annotated[ReplayStore, Depends(get_replays)]
SuppressionsDep = Annotated[SuppressionRepository, Depends(get_suppressions)]
WebhookEndpointsDep = Annotated[WebhookEndpointRepository, Depends(get_webhook_endpoints)]
EraserDep = Annotated[RecipientEraser, Depends(get_eraser)]
ApiKeysDep = Annotated[ApiKeyRepository, Depends(get_api_keys)]
ProducerKeysDep = Annotated[ProducerKeyRepository, Depends(get_producer_keys)]
AuthenticatorDep = Annotated[ApiKeyAuthenticator, Depends(get_authenticator)]
IdempotencyDep = Annotated[IdempotencyStore, Depends(get_idempotency)]
WebhookGuardDep = Annotated[OutboundGuard, Depends(get_webhook_guard)]
WebPushGuardDep = Annotated[OutboundGuard, Depends(get_webpush_guard)]
TrackingTokensDep = Annotated[TrackingTokens | None, Depends(get_tracking_tokens)]
CallbacksDep = Annotated[CallbackVerifiers, Depends(get_callbacks)]


get_intake = _part(lambda gateway: gateway.intake)
get_requeuer = _part(lambda gateway: gateway.requeuer)

IntakeDep = Annotated[Intake, Depends(get_intake)]
RequeuerDep = Annotated[Requeuer, Depends(get_requeuer)]
