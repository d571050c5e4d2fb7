"""Router's handler: choose the channel, render the content, hand it to that channel's sender.

A push goes to every active device of its user, one delivery each (the sender disables dead tokens)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Sequence

import orjson

from services.router.routing import ADDRESS_FIELD, choose_route
from services.router.templates import TemplateRenderer
from services.router.tracking import EmailTracking, tracked_html
from shared import status
from shared.errors import DeadLetterReason, InvalidRequest
from shared.kafka.handlers import bind_context
from shared.kafka.records import TRACEPARENT, Consumed, Handler, Output, Produce, headers_for
from shared.messages import EMAIL_DELIVERY, PUSH_DELIVERY, SMS_DELIVERY, WEBHOOK_DELIVERY, RoutableNotification
from shared.observability.tracing import span
from shared.phone import normalize_e164
from shared.status_events import StatusReporter
from shared.storage.devices import Device, DeviceRepository
from shared.storage.suppressions import CHANNELS, SuppressionRepository, Target, normalise
from shared.topics import Topics

DELIVERY_NAMESPACE = uuid.UUID("8a3e5d1c-2b7f-4f0a-9c6e-1d2b3a4c5e6f")


def delivery_id_for(notification_id: str, channel: str, device_id: str | None = None) -> str:
    """Stable across attempts, so the sender recognises a delivery it has already made."""
    target = f"{notification_id}:{channel}:{device_id}" if device_id else f"{notification_id}:{channel}"
    return str(uuid.uuid5(DELIVERY_NAMESPACE, target))


class RouterHandler:
    """Turns one routable notification into rendered deliveries for its channel (one per push device)."""

    def __init__(
        self,
        *,
        renderer: TemplateRenderer,
        reporter: StatusReporter,
        topics: Topics,
        tracking: EmailTracking | None = None,
    ) -> None:
        """``tracking`` adds open pixels and tracked links to emails that ask for them (None: off)."""
        self._renderer = renderer
        self._reporter = reporter
        self._topics = topics
        self._tracking = tracking
        self._renderers = {"email": self._render_email, "sms": self._render_sms, "webhook": self._render_webhook}

    async def __call__(
        self,
        message: Consumed[RoutableNotification],
        devices: Sequence[Device] = (),
        suppressed: Collection[Target] = (),
    ) -> Sequence[Output]:
        """Route ``message``; ``devices`` are its recipient's active push devices and ``suppressed`` the
        suppressed addresses among the batch's recipients (both looked up per batch)."""
        notification = message.value
        with span("router.route", message.header(TRACEPARENT)) as traceparent:
            try:
                route = choose_route(notification["channels"], notification["recipient"], devices)
                if _target(notification["tenant_id"], route.channel, route.address) in suppressed:
                    return self._reporter.give_up(
                        message,
                        status=status.FAILED,
                        reason=DeadLetterReason.RECIPIENT_SUPPRESSED,
                        detail=f"the recipient's {route.channel} address is suppressed (it bounced or complained)",
                        traceparent=traceparent,
                        channel=route.channel,
                    )
                if route.channel == "push":
                    deliveries = self._render_push(notification, route.devices)
                else:
                    deliveries = [self._renderers[route.channel](notification, route.address)]
            except InvalidRequest as error:
                return self._reporter.give_up(
                    message,
                    status=status.FAILED,
                    reason=DeadLetterReason.INVALID_PAYLOAD,
                    detail=str(error),
                    traceparent=traceparent,
                )
        headers = headers_for(notification["tenant_id"], f"delivery.{route.channel}", traceparent)
        topic = self._topics.send(route.channel)
        return [
            *(Produce(topic, delivery, key=message.key, headers=headers) for delivery in deliveries),
            self._reporter.event(
                notification_id=notification["notification_id"],
                tenant_id=notification["tenant_id"],
                status=status.ROUTED,
                key=message.key,
                traceparent=traceparent,
                channel=route.channel,
                deliveries=len(deliveries),
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
                "html": tracked_html(
                    render("content/html", content["html"], variables, html=True) if content["html"] else None,
                    notification,
                    self._tracking,
                ),
                "metadata": notification["metadata"],
                # URL attachments are fetched by the sender, when it sends.
                "attachments": content["attachments"],
                "provider_templates": content["provider_templates"],
                "template_data_json": notification["variables_json"],
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

    def _render_push(self, notification: RoutableNotification, devices: Sequence[Device]) -> list[bytes]:
        variables = orjson.loads(notification["variables_json"])
        content = notification["content"]
        render = self._renderer.render
        title = render("content/subject", content["subject"], variables) if content["subject"] else None
        body = render("content/text", content["text"] or "", variables)
        return [
            PUSH_DELIVERY.encode(
                {
                    "delivery_id": delivery_id_for(notification["notification_id"], "push", device.id),
                    "notification_id": notification["notification_id"],
                    "tenant_id": notification["tenant_id"],
                    "attempt": 1,
                    "priority": notification["priority"],
                    "platform": device.platform,
                    "token": device.token,
                    "title": title,
                    "body": body,
                    # The app finds the notification (and its status) by this id.
                    "data": {"notification_id": notification["notification_id"]},
                    "ttl_s": None,
                    "collapse_key": None,
                    "metadata": notification["metadata"],
                    "deliveries": len(devices),
                }
            )
            for device in devices
        ]


def with_devices(
    handler: RouterHandler, devices: DeviceRepository, suppressions: SuppressionRepository | None = None
) -> Handler[RoutableNotification]:
    """The router's batch handler: one query for the push devices of the whole batch and one for its
    suppressed addresses, then each message."""

    async def handle(batch: Sequence[Consumed[RoutableNotification]]) -> list[Output]:
        users = {
            (message.value["tenant_id"], user_id)
            for message in batch
            if "push" in message.value["channels"] and (user_id := message.value["recipient"]["user_id"])
        }
        # Two independent lookups, so one round trip's wait rather than two.
        found, suppressed = await asyncio.gather(
            devices.active_for_users(users),
            suppressions.suppressed(_addresses(batch)) if suppressions is not None else _nothing(),
        )
        outputs: list[Output] = []
        for message in batch:
            bind_context(message)
            user = (message.value["tenant_id"], message.value["recipient"]["user_id"] or "")
            outputs.extend(await handler(message, found.get(user, ()), suppressed))
        return outputs

    return handle


async def _nothing() -> set[Target]:
    return set()


def _target(tenant_id: str, channel: str, address: str) -> Target | None:
    return (tenant_id, channel, normalise(channel, address)) if channel in CHANNELS and address else None


def _addresses(batch: Sequence[Consumed[RoutableNotification]]) -> set[Target]:
    """Every suppressible address the batch's notifications may be routed to."""
    targets = {
        _target(message.value["tenant_id"], channel, str(message.value["recipient"].get(ADDRESS_FIELD[channel]) or ""))
        for message in batch
        for channel in message.value["channels"]
        if channel in CHANNELS
    }
    return {target for target in targets if target is not None}
