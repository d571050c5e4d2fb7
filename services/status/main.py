"""Wires the status service: status topic -> StatusRepository (Postgres), a batch per transaction."""

from __future__ import annotations

from collections.abc import Sequence

from services.status.repository import StatusRepository
from services.status.settings import StatusSettings
from services.status.webhooks import EndpointFanOut
from shared import service, status
from shared.config import load_settings
from shared.crypto import Encryptor
from shared.errors import DeadLetterReason
from shared.kafka.consumer import service_consumer
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Consumed, Output, Reject
from shared.messages import STATUS_EVENT, StatusEvent
from shared.observability import metrics
from shared.storage.database import Pool, check, create_pool
from shared.storage.webhook_endpoints import WebhookEndpointRepository
from shared.topics import Topics

SERVICE = "status"


class StatusWriter:
    """The consumer loop's handler: one transaction per batch of status events, then the batch's status
    changes to the tenants' webhook endpoints."""

    def __init__(
        self, repository: StatusRepository, endpoints: WebhookEndpointRepository, fan_out: EndpointFanOut
    ) -> None:
        self._repository = repository
        self._endpoints = endpoints
        self._fan_out = fan_out

    async def __call__(self, batch: Sequence[Consumed[StatusEvent]]) -> list[Output]:
        known = [message.value for message in batch if message.value["status"] in status.RANKS]
        # Reports of deliveries to webhook endpoints: logged for the endpoint, never a notification's status.
        endpoint_reports = [event for event in known if event.get("endpoint_id")]
        events = [event for event in known if not event.get("endpoint_id")]
        duplicates = [message.value for message in batch if message.value["status"] == status.DUPLICATE]
        subscriptions = await self._fan_out.subscriptions({event["tenant_id"] for event in events})
        await self._repository.apply(
            events,
            watched=subscriptions.keys(),
            on_changes=lambda connection, changes: self._fan_out.plan(connection, changes, subscriptions),
        )
        await self._repository.record_duplicates(duplicates)
        await self._endpoints.record_outcomes(endpoint_reports)
        metrics.STATUS_EVENTS_STORED.inc(len(known) + len(duplicates))
        await self._observe_delivery_times(events)
        outputs: list[Output] = [
            Reject(message, DeadLetterReason.INVALID_PAYLOAD, f"unknown status {message.value['status']!r}")
            for message in batch
            if message.value["status"] not in status.RANKS and message.value["status"] != status.DUPLICATE
        ]
        watched = [event["event_id"] for event in events if event["tenant_id"] in subscriptions]
        return outputs + await self._fan_out.deliveries(watched)

    async def _observe_delivery_times(self, events: Sequence[StatusEvent]) -> None:
        """accepted->delivered per channel, for the provider reports of delivery in the batch (a redelivered
        batch observes them again: a histogram is no ledger)."""
        delivered = [event for event in events if event["status"] == status.DELIVERED and event["channel"]]
        if not delivered:
            return
        accepted = await self._repository.accepted_at({event["notification_id"] for event in delivered})
        for event in delivered:
            if (since := accepted.get(event["notification_id"])) is not None:
                waited = max(0.0, (event["occurred_at"] - since).total_seconds())
                metrics.ACCEPTED_TO_DELIVERED.labels(channel=event["channel"]).observe(waited)


def status_writer(pool: Pool, encryptor: Encryptor, topics: Topics, endpoints_cache_s: float) -> StatusWriter:
    """The status service's handler on ``pool``, fanning status changes out to ``topics``' send.webhook."""
    endpoints = WebhookEndpointRepository(pool, encryptor)
    fan_out = EndpointFanOut(endpoints, topics.send("webhook"), endpoints_cache_s)
    return StatusWriter(StatusRepository(pool, encryptor), endpoints, fan_out)


async def serve() -> None:
    settings = load_settings(StatusSettings)
    service.setup(SERVICE, settings)
    topics = Topics(settings.topic_prefix)
    # Before anything opens: status details and webhook endpoints' URLs are sealed, and the service refuses
    # to start without keys.
    encryptor = Encryptor.from_settings(settings)
    pool = await create_pool(settings.database_url, settings.database_pool_size)
    producer = MessageProducer(settings, client_id=SERVICE)
    consumer = service_consumer(
        settings,
        service=SERVICE,
        topics=[topics.status],
        contract=STATUS_EVENT,
        handler=status_writer(pool, encryptor, topics, settings.webhook_endpoints_cache_s),
        producer=producer,
        max_batch=settings.max_batch,
    )
    try:
        await service.serve_consumers(settings, [consumer], checks={"postgres": lambda: check(pool)}, producer=producer)
    finally:
        await producer.stop()
        await pool.close()


def main() -> None:
    service.run(serve)
