"""Router's handler: choose the channel, render the content, hand it to that channel's sender."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import orjson

from services.router.routing import choose_channel
from services.router.templates import TemplateRenderer
from shared import status
from shared.errors import DeadLetterReason, InvalidRequest
from shared.kafka.records import TRACEPARENT, Consumed, Output, Produce, headers_for
from shared.messages import EMAIL_DELIVERY, SMS_DELIVERY, WEBHOOK_DELIVERY, RoutableNotification
from shared.observability.tracing import span
from shared.phone import normalize_e164
from shared.status_events import StatusReporter
from shared.topics import Topics

DELIVERY_NAMESPACE = uuid.UUID("8a3e5d1c-2b7f-4f0a-9c6e-1d2b3a4c5e6f")


def delivery_id_for(notification_id: str, channel: str) -> str:
    """Stable across attempts, so the sender recognises a delivery it has already made."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{notification_id}:{channel}"))


class RouterHandler:
    """Turns one routable notification into a rendered delivery for its channel."""

    def __init__(self, *, renderer: TemplateRenderer, reporter: StatusReporter, topics: Topics) -> None:
        self._renderer = renderer
        self._reporter = reporter
        self._topics = topics
        self._renderers = {"email": self._render_email, "sms": self._render_sms, "webhook": self._render_webhook}

    async def __call__(self, message: Consumed[RoutableNotification]) -> Sequence[Output]:
        notification = message.value
        with span("router.route", message.header(TRACEPARENT)) as traceparent:
            try:
                channel, address = choose_channel(notification["channels"], notification["recipient"])
                delivery = self._renderers[channel](notification, address)
            except InvalidRequest as error:
                return self._reporter.give_up(
                    message,
                    status=status.FAILED,
                    reason=DeadLetterReason.INVALID_PAYLOAD,
                    detail=str(error),
                    traceparent=traceparent,
                )
        return [
            Produce(
                self._topics.send(channel),
                delivery,
                key=message.key,
                headers=headers_for(notification["tenant_id"], f"delivery.{channel}", traceparent),
            ),
            self._reporter.event(
                notification_id=notification["notification_id"],
                tenant_id=notification["tenant_id"],
                status=status.ROUTED,
                key=message.key,
                traceparent=traceparent,
                channel=channel,
            ),
        ]

    def _render_email(self, notification: RoutableNotification, address: str) -> bytes:
        variables = orjson.loads(notification["variables_json"])
        content = notification["content"]
        render = self._renderer.render
        subject = render("content/subject", content["subject"] or "", variables)
        if "\n" in subject or "\r" in subject:
            # A line break in a header would let a variable inject headers (Bcc: ...).
            raise InvalidRequest("content/subject", "the rendered subject must be a single line")
        return EMAIL_DELIVERY.encode(
            {
                "delivery_id": delivery_id_for(notification["notification_id"], "email"),
                "notification_id": notification["notification_id"],
                "tenant_id": notification["tenant_id"],
                "attempt": 1,
                "priority": notification["priority"],
                "to": address,
                "subject": subject,
                "text": render("content/text", content["text"], variables) if content["text"] else None,
                "html": render("content/html", content["html"], variables, html=True) if content["html"] else None,
                "metadata": notification["metadata"],
            }
        )

    def _render_sms(self, notification: RoutableNotification, address: str) -> bytes:
        variables = orjson.loads(notification["variables_json"])
        return SMS_DELIVERY.encode(
            {
                "delivery_id": delivery_id_for(notification["notification_id"], "sms"),
                "notification_id": notification["notification_id"],
                "tenant_id": notification["tenant_id"],
                "attempt": 1,
                "priority": notification["priority"],
                "to": normalize_e164(address),
                "body": self._renderer.render("content/text", notification["content"]["text"] or "", variables),
                "metadata": notification["metadata"],
            }
        )

    def _render_webhook(self, notification: RoutableNotification, address: str) -> bytes:
        variables = orjson.loads(notification["variables_json"])
        content = notification["content"]
        render = self._renderer.render
        payload = {
            "type": "notification",
            "notification_id": notification["notification_id"],
            "tenant_id": notification["tenant_id"],
            "subject": render("content/subject", content["subject"], variables) if content["subject"] else None,
            "text": render("content/text", content["text"], variables) if content["text"] else None,
            "html": render("content/html", content["html"], variables, html=True) if content["html"] else None,
            "data": variables,
            "metadata": notification["metadata"],
        }
        return WEBHOOK_DELIVERY.encode(
            {
                "delivery_id": delivery_id_for(notification["notification_id"], "webhook"),
                "notification_id": notification["notification_id"],
                "tenant_id": notification["tenant_id"],
                "attempt": 1,
                "priority": notification["priority"],
                "url": address,
                "payload_json": orjson.dumps(payload).decode(),
                "metadata": notification["metadata"],
            }
        )
