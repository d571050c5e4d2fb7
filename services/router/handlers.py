"""Router's handler: choose the channel, render the content, hand it to that channel's sender.

A push goes to every active device of its user, one delivery each (the sender disables dead tokens)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection, Mapping, Sequence

import orjson

from services.router.preferences import opted_out, wanted_channels, with_profile
from services.router.routing import ADDRESS_FIELD, choose_route
from services.router.tracking import EmailTracking, tracked_html
from shared import status
from shared.errors import DeadLetterReason, InvalidRequest
from shared.kafka.handlers import bind_context
from shared.kafka.records import ACCEPTED_AT, TRACEPARENT, Consumed, Handler, Output, Produce, headers_for
from shared.messages import EMAIL_DELIVERY, PUSH_DELIVERY, SMS_DELIVERY, WEBHOOK_DELIVERY, RoutableNotification
from shared.observability.tracing import span
from shared.phone import normalize_e164
from shared.status_events import StatusReporter
from shared.storage.devices import Device, DeviceRepository
from shared.storage.recipients import RecipientRepository, StoredRecipient
from shared.storage.suppressions import CHANNELS, SuppressionRepository, Target, normalise
from shared.storage.templates import TemplateRef, TemplateRepository, TemplateVersion
from shared.templates import TemplateRenderer, localised
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
        mandatory_categories: Collection[str] = (),
    ) -> None:
        """``tracking`` adds open pixels and tracked links to emails that ask for them (None: off);
        notifications of the ``mandatory_categories`` ignore their recipients' preferences."""
        self._renderer = renderer
        self._mandatory = frozenset(mandatory_categories)
        self._reporter = reporter
        self._topics = topics
        self._tracking = tracking
        self._renderers = {"email": self._render_email, "sms": self._render_sms, "webhook": self._render_webhook}

    async def __call__(
        self,
        message: Consumed[RoutableNotification],
        devices: Sequence[Device] = (),
        suppressed: Collection[Target] = (),
        stored: StoredRecipient | None = None,
        templates: Mapping[TemplateRef, TemplateVersion] | None = None,
    ) -> Sequence[Output]:
        """Route ``message``; ``devices`` are its recipient's active push devices, ``suppressed`` the
        suppressed addresses among the batch's recipients, ``stored`` its user's profile and
        preferences and ``templates`` the stored templates the batch names (all looked up per batch)."""
        notification = with_profile(message.value, stored.profile if stored else None)
        with span("router.route", message.header(TRACEPARENT)) as traceparent:
            try:
                channels = wanted_channels(notification, stored.preferences if stored else (), self._mandatory)
                if not channels:
                    return self._fail(
                        message, traceparent, DeadLetterReason.RECIPIENT_OPTED_OUT, opted_out(notification)
                    )
                route = choose_route(channels, notification["recipient"], devices)
                if _target(notification["tenant_id"], route.channel, route.address) in suppressed:
                    detail = f"the recipient's {route.channel} address is suppressed (it bounced or complained)"
                    reason = DeadLetterReason.RECIPIENT_SUPPRESSED
                    return self._fail(message, traceparent, reason, detail, channel=route.channel)
                notification = _templated(notification, route.channel, templates or {})
                if route.channel == "push":
                    deliveries = self._render_push(notification, route.devices)
                else:
                    deliveries = [self._renderers[route.channel](notification, route.address)]
            except InvalidRequest as error:
                return self._fail(message, traceparent, DeadLetterReason.INVALID_PAYLOAD, str(error))
        headers = headers_for(
            notification["tenant_id"], f"delivery.{route.channel}", traceparent, message.header(ACCEPTED_AT)
        )
        topic = self._topics.send_for(route.channel, notification["priority"])
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

    def _fail(
        self,
        message: Consumed[RoutableNotification],
        traceparent: bytes | None,
        reason: DeadLetterReason,
        detail: str,
        **event: str,
    ) -> list[Output]:
        """The notification can never be sent as it is: to the DLQ, and marked failed saying why."""
        return self._reporter.give_up(
            message, status=status.FAILED, reason=reason, detail=detail, traceparent=traceparent, **event
        )

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


def with_batch_lookups(
    handler: RouterHandler,
    devices: DeviceRepository,
    suppressions: SuppressionRepository | None = None,
    recipients: RecipientRepository | None = None,
    templates: TemplateRepository | None = None,
) -> Handler[RoutableNotification]:
    """The router's batch handler: one query each for the whole batch's push devices, stored
    recipients, stored templates and suppressed addresses, then each message."""

    async def handle(batch: Sequence[Consumed[RoutableNotification]]) -> list[Output]:
        users = {
            (message.value["tenant_id"], user_id)
            for message in batch
            if "push" in message.value["channels"] and (user_id := message.value["recipient"]["user_id"])
        }
        people = {(m.value["tenant_id"], user_id) for m in batch if (user_id := m.value["recipient"]["user_id"])}
        refs = {(m.value["tenant_id"], t["id"], t["version"]) for m in batch if (t := m.value["content"]["template"])}
        # Independent lookups, so one round trip's wait rather than one each.
        found, stored, versions = await asyncio.gather(
            devices.active_for_users(users),
            recipients.for_routing(people) if recipients is not None else _no_recipients(),
            templates.versions_for(refs) if templates is not None else _no_templates(),
        )
        # Then the suppressions: an address a stored profile completes is checked too.
        suppressed = await suppressions.suppressed(_addresses(batch, stored)) if suppressions is not None else set()
        outputs: list[Output] = []
        for message in batch:
            bind_context(message)
            user = (message.value["tenant_id"], message.value["recipient"]["user_id"] or "")
            outputs.extend(await handler(message, found.get(user, ()), suppressed, stored.get(user), versions))
        return outputs

    return handle


async def _no_recipients() -> dict[tuple[str, str], StoredRecipient]:
    return {}


async def _no_templates() -> dict[TemplateRef, TemplateVersion]:
    return {}


def _templated(
    notification: RoutableNotification, channel: str, templates: Mapping[TemplateRef, TemplateVersion]
) -> RoutableNotification:
    """``notification`` with its stored template's content for ``channel`` (if it names one), in the variant
    for its recipient's locale, in place of its inline subject, text and html: the ``_render_*`` methods
    render either alike."""
    template = notification["content"]["template"]
    if template is None:
        return notification
    found = templates.get((notification["tenant_id"], template["id"], template["version"]))
    pinned = "" if template["version"] is None else f" version {template['version']}"
    if found is None:
        raise InvalidRequest("content/template", f"template {template['id']!r}{pinned} does not exist or was deleted")
    chosen = localised(found.channels, found.locales, notification["recipient"]["locale"], channel)
    if chosen is None:
        detail = f"version {found.version} of template {template['id']!r} has no {channel} content"
        raise InvalidRequest("content/template", detail)
    _, sources = chosen
    content = notification["content"].copy()
    content["subject"], content["text"], content["html"] = (sources.get(k) for k in ("subject", "text", "html"))
    templated = notification.copy()
    templated["content"] = content
    return templated


def _target(tenant_id: str, channel: str, address: str) -> Target | None:
    return (tenant_id, channel, normalise(channel, address)) if channel in CHANNELS and address else None


def _addresses(
    batch: Sequence[Consumed[RoutableNotification]], stored: Mapping[tuple[str, str], StoredRecipient]
) -> set[Target]:
    """Every suppressible address the batch's notifications may be routed to, stored ones included."""
    targets: set[Target | None] = set()
    for message in batch:
        tenant_id = message.value["tenant_id"]
        found = stored.get((tenant_id, message.value["recipient"]["user_id"] or ""))
        recipient = with_profile(message.value, found.profile if found else None)["recipient"]
        targets.update(
            _target(tenant_id, channel, str(recipient.get(ADDRESS_FIELD[channel]) or ""))
            for channel in message.value["channels"]
            if channel in CHANNELS
        )
    return {target for target in targets if target is not None}
