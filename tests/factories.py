"""Builders of valid records, and scripted doubles of Herald's own interfaces, for tests."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import SecretStr

from services.sender_email.ses import SesConfig
from services.sender_email.settings import EmailSenderSettings
from services.sender_sms.sns import SnsConfig
from shared.codec import Contract
from shared.config import HeraldSettings
from shared.delivery import Delivered, Outcome
from shared.kafka.records import KIND, TENANT, TRACEPARENT, Consumed
from shared.messages import Attachment, EmailDelivery, PushDelivery, SmsDelivery, StatusEvent
from shared.topics import Topics

DeliveryT = TypeVar("DeliveryT", bound=Mapping[str, Any])


def delivery_fields() -> dict[str, Any]:
    """The fields every channel's delivery record shares, with fresh ids."""
    return {
        "delivery_id": str(uuid.uuid4()),
        "notification_id": str(uuid.uuid4()),
        "tenant_id": "acme",
        "attempt": 1,
        "priority": "normal",
        "metadata": {},
    }


def send_message(
    value: DeliveryT,
    contract: Contract[DeliveryT],
    topics: Topics,
    channel: str,
    recipient: str,
    offset: int = 0,
    traceparent: bytes | None = None,
) -> Consumed[DeliveryT]:
    """``value`` as the consumer loop hands it to ``channel``'s sender, keyed ``tenant:recipient``."""
    headers = ((TENANT, value["tenant_id"].encode()), (KIND, f"delivery.{channel}".encode()))
    return Consumed(
        topic=topics.send(channel),
        partition=0,
        offset=offset,
        key=f"{value['tenant_id']}:{recipient}".encode(),
        value=value,
        raw=contract.encode(value),
        headers=headers + (((TRACEPARENT, traceparent),) if traceparent else ()),
    )


def push_delivery(**overrides: Any) -> PushDelivery:
    """A valid push delivery (android unless overridden) with fresh ids."""
    value = delivery_fields() | {
        "priority": "high",
        "platform": "android",
        "token": "device-token",
        "title": "Your order shipped",
        "body": "It is on its way.",
        "data": {"order_id": "42"},
        "ttl_s": 3600,
        "collapse_key": "order-42",
        "deliveries": 1,
    }
    value.update(overrides)
    return value  # type: ignore[return-value]


def sms_delivery(**overrides: Any) -> SmsDelivery:
    """A valid text message with fresh ids; ``overrides`` replace any field."""
    value = delivery_fields() | {"to": "+14155550123", "body": "Your code is 123456"}
    value.update(overrides)
    return value  # type: ignore[return-value]


def inline_attachment(filename: str, data: bytes, content_type: str = "application/octet-stream") -> Attachment:
    """An attachment given inline, as base64."""
    return {
        "filename": filename,
        "content_type": content_type,
        "url": None,
        "content_base64": base64.b64encode(data).decode(),
    }


def email_delivery(**overrides: Any) -> EmailDelivery:
    """A valid delivery with fresh ids; ``overrides`` replace any field."""
    value = delivery_fields() | {
        "to": "ada@example.com",
        "subject": "Your order shipped",
        "text": "It is on its way.",
        "html": "<p>It is on its way.</p>",
        "attachments": [],
        "provider_templates": {},
        "template_data_json": "{}",
    }
    value.update(overrides)
    return value  # type: ignore[return-value]


DELIVERY: Mapping[str, Any] = {"delivery_id": "d1"}


class ScriptedProvider:
    """Answers with the outcomes it was given, in order (the last one forever); counts its calls."""

    def __init__(self, name: str, outcomes: Iterable[Outcome | float]) -> None:
        self.name = name
        self._script: deque[Outcome | float] = deque(outcomes)
        self.calls = 0

    def validate_config(self) -> None:
        return None

    async def health(self) -> None:
        return None

    async def send(self, delivery: Mapping[str, Any]) -> Outcome:
        self.calls += 1
        step = self._script[0] if len(self._script) == 1 else self._script.popleft()
        if isinstance(step, float):
            await asyncio.sleep(step)  # a provider that hangs this long
            return Delivered(self.name)
        return step


class DestinationScriptedProvider(ScriptedProvider):
    """A :class:`ScriptedProvider` that calls wherever a delivery's ``url`` says: breakers per destination."""

    def destination(self, delivery: Mapping[str, Any]) -> str:
        return str(delivery["url"])


def smtp_settings(settings: HeraldSettings, port: int) -> EmailSenderSettings:
    return EmailSenderSettings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix,
        redis_url=settings.redis_url,
        redis_namespace=settings.redis_namespace,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="Herald Tests <noreply@herald.test>",
        smtp_timeout_s=10.0,
        smtp_pool_size=2,
    )


SENDER = "Herald Tests <noreply@herald.test>"
REGION = "us-east-1"


def _aws_client(endpoint_url: str) -> dict[str, Any]:
    """What every AWS provider's config takes to reach moto: region, dummy credentials, endpoint, bounds."""
    return {
        "region": REGION,
        "access_key_id": "testing",
        "secret_access_key": SecretStr("testing"),
        "endpoint_url": endpoint_url,
        "timeout_s": 5.0,
        "max_concurrency": 4,
    }


def ses_config(endpoint_url: str, **overrides: Any) -> SesConfig:
    return SesConfig(**{**_aws_client(endpoint_url), "sender": SENDER, **overrides})


def sns_config(endpoint_url: str, **overrides: Any) -> SnsConfig:
    return SnsConfig(**{**_aws_client(endpoint_url), **overrides})


def status_event(
    notification_id: str,
    status_name: str,
    at: datetime,
    *,
    tenant_id: str = "acme",
    channel: str | None = None,
    attempt: int | None = None,
    reason: str | None = None,
    detail: str | None = None,
    delivery_id: str | None = None,
    deliveries: int | None = None,
) -> StatusEvent:
    """A status event of ``notification_id`` as a service reports it."""
    return StatusEvent(
        event_id=str(uuid.uuid4()),
        notification_id=notification_id,
        tenant_id=tenant_id,
        status=status_name,
        occurred_at=at,
        service="test",
        channel=channel,
        attempt=attempt,
        provider=None,
        reason=reason,
        detail=detail,
        delivery_id=delivery_id,
        deliveries=deliveries,
    )
