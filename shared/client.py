"""The client library upstream services use to send notifications straight to Kafka.

Example::

    from shared.client import NotificationClient

    credential = os.environ["HERALD_PRODUCER_KEY"]  # hpk.<key id>.<secret>, from /api/v1/producer-keys
    async with NotificationClient("kafka:9092", tenant_id="shop", producer_key=credential) as herald:
        notification_id = await herald.send(
            channels=["email"],
            recipient={"email": "ada@example.com"},
            content={"subject": "Your order {{ order }}", "text": "It ships today."},
            variables={"order": "A-1001"},
            idempotency_key="order-A-1001-shipped",
        )

``send`` returns once the request is durable in Kafka (``acks=all``); the status is then readable
through the gateway under that id. The same idempotency key always yields the same id and one delivery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer

from shared.kafka.connection import KafkaConnectionSettings, client_options
from shared.kafka.metadata import METADATA_MAX_AGE_MS
from shared.messages import Priority
from shared.observability.tracing import current_traceparent
from shared.producer_keys import ProducerKey
from shared.requests import build_request, request_record, validate_request
from shared.topics import Topics


class NotificationClient:
    """Produces :class:`~shared.messages.NotificationRequest` records for one tenant."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        tenant_id: str,
        topic_prefix: str = "herald",
        idempotent_producer: bool = True,
        connection: KafkaConnectionSettings | None = None,
        producer_key: str | None = None,
    ) -> None:
        """``connection``: TLS and SASL for a secured cluster (``KafkaConnectionSettings()`` reads them from
        ``HERALD_KAFKA_*``); its bootstrap servers give way to ``bootstrap_servers``. ``producer_key``: the
        tenant's ``hpk.<key id>.<secret>`` credential every request is signed with (ingest dead-letters an
        unsigned request unless the installation takes them)."""
        self._tenant_id = tenant_id
        self._signer = ProducerKey.parse(producer_key) if producer_key is not None else None
        self._topics = Topics(topic_prefix)
        options = client_options(connection) if connection is not None else {}
        self._producer = AIOKafkaProducer(
            **(options | {"bootstrap_servers": bootstrap_servers}),
            acks="all",
            enable_idempotence=idempotent_producer,
            linger_ms=5,
            # Stops writing to a requests topic the broker lost within this (see shared.kafka.metadata).
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
        )

    async def __aenter__(self) -> Self:
        await self._producer.start()
        return self

    async def __aexit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self._producer.stop()

    async def send(
        self,
        *,
        channels: Sequence[str],
        recipient: Mapping[str, str | None],
        content: Mapping[str, Any],
        variables: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        priority: Priority = "normal",
        metadata: Mapping[str, str] | None = None,
        tracking: Mapping[str, bool] | None = None,
        dedup: Mapping[str, Any] | None = None,
    ) -> str:
        """Validate and produce one request; returns its notification id once Kafka acknowledged it.

        ``content`` may list email ``attachments`` (``filename``, ``content_type``, and ``url`` or
        ``content_base64``); ``tracking={"opens": True, "clicks": True}`` asks for Herald's open pixel
        and tracked links in the html part. ``dedup={"window_s": 300}`` drops a repeat of the
        idempotency key for that long, ``{"bypass": True}`` never (urgent).

        Raises:
            shared.errors.InvalidRequest: the request can never be delivered (names the field).
        """
        request = build_request(
            tenant_id=self._tenant_id,
            channels=channels,
            recipient=recipient,
            content=content,
            variables=variables,
            idempotency_key=idempotency_key,
            priority=priority,
            metadata=metadata,
            tracking=tracking,
            dedup=dedup,
        )
        validate_request(request)
        topic = self._topics.requests_for(priority)
        record = request_record(request, topic, current_traceparent(), self._signer)
        await self._producer.send_and_wait(record.topic, record.value, key=record.key, headers=list(record.headers))
        return request["notification_id"]
