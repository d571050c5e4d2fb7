"""Customer webhooks on status change: each stored change of a notification's status, sent to the
webhook endpoints its tenant registered (through sender-webhook, signed with the endpoint's secret).

In the transaction that stores a batch, each new event that changed its notification's status is
logged ``pending`` for every live endpoint subscribed to it; after the commit the batch's pending
deliveries are produced to ``send.webhook``. A batch redelivered after a crash changes nothing
(its events are stored already), but produces its still-pending deliveries again with the same
delivery ids, which sender-webhook sends once. Sender-webhook's reports of these deliveries carry
``endpoint_id``: the status service logs them and never fans them out, so there is no loop.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import orjson

from services.status.repository import Change
from shared.kafka.records import Headers, Produce, headers_for, message_key
from shared.messages import WEBHOOK_DELIVERY
from shared.storage.webhook_endpoints import (
    PendingDelivery,
    PlannedDelivery,
    PooledConnection,
    Subscription,
    WebhookEndpointRepository,
    delivery_id,
)

EVENT_PREFIX = "notification."


def planned(changes: Sequence[Change], subscriptions: dict[str, list[Subscription]]) -> list[PlannedDelivery]:
    """Each step of each change, once per notification and status, for every endpoint that wants it."""
    seen: set[tuple[str, str]] = set()
    found = []
    for change in changes:
        if not change.is_step or (change.notification_id, change.status) in seen:
            continue  # a status lost to a better one, or a second delivery's same status (push devices)
        seen.add((change.notification_id, change.status))
        for subscription in subscriptions.get(change.tenant_id, []):
            if subscription.wants(change.status):
                found.append(
                    PlannedDelivery(
                        id=delivery_id(subscription.endpoint_id, change.event_id),
                        endpoint_id=subscription.endpoint_id,
                        tenant_id=change.tenant_id,
                        event_id=change.event_id,
                        notification_id=change.notification_id,
                        status=change.status,
                        channel=change.channel,
                        reason=change.reason,
                        occurred_at=change.occurred_at,
                    )
                )
    return found


def payload(delivery: PendingDelivery) -> str:
    """The JSON body the endpoint receives: what happened, never to whom (no personal data)."""
    return orjson.dumps(
        {
            "type": EVENT_PREFIX + delivery.status,
            "event_id": delivery.event_id,
            "notification_id": delivery.notification_id,
            "status": delivery.status,
            "channel": delivery.channel,
            "reason": delivery.reason,
            "occurred_at": delivery.occurred_at.isoformat(),
        }
    ).decode()


class EndpointFanOut:
    """Plans and produces the deliveries of a batch's status changes to the tenants' endpoints."""

    def __init__(self, endpoints: WebhookEndpointRepository, topic: str, cache_ttl_s: float) -> None:
        self._endpoints = endpoints
        self._topic = topic
        self._ttl_s = cache_ttl_s
        # tenant -> (its live endpoints, when they were read): a batch asks Postgres only for the others.
        self._cache: dict[str, tuple[list[Subscription], float]] = {}

    async def subscriptions(self, tenants: Collection[str]) -> dict[str, list[Subscription]]:
        """The live endpoints of those of ``tenants`` that have any (read at most ``cache_ttl_s`` ago)."""
        now = time.monotonic()
        stale = [tenant for tenant in tenants if tenant not in self._cache or self._cache[tenant][1] <= now]
        if stale:
            fetched = await self._endpoints.subscriptions(stale)
            self._cache.update((tenant, (found, now + self._ttl_s)) for tenant, found in fetched.items())
        return {tenant: self._cache[tenant][0] for tenant in tenants if self._cache[tenant][0]}

    async def plan(
        self, connection: PooledConnection, changes: Sequence[Change], subscriptions: dict[str, list[Subscription]]
    ) -> None:
        """Log the deliveries of ``changes`` as pending, in the transaction that stores them."""
        await self._endpoints.plan(connection, planned(changes, subscriptions))

    async def deliveries(self, event_ids: Collection[str]) -> list[Produce]:
        """The records that send these events' pending deliveries (after their batch committed)."""
        return [self._record(delivery) for delivery in await self._endpoints.pending(event_ids)]

    def _record(self, delivery: PendingDelivery) -> Produce:
        value = WEBHOOK_DELIVERY.encode(
            {
                "delivery_id": delivery.id,
                "notification_id": delivery.notification_id,
                "tenant_id": delivery.tenant_id,
                "attempt": 1,
                "priority": "normal",
                "url": delivery.url,
                "payload_json": payload(delivery),
                "metadata": {},
                "endpoint_id": delivery.endpoint_id,
                "secret_versions": delivery.secret_versions,
            }
        )
        headers: Headers = headers_for(delivery.tenant_id, "webhook_delivery", None)
        # Keyed by endpoint: one endpoint's events stay in order.
        return Produce(self._topic, value, key=message_key(delivery.tenant_id, delivery.endpoint_id), headers=headers)
