"""SendGrid's Event Webhook: the signed-webhook check and what each event means.

SendGrid signs the timestamp header followed by the raw body with ECDSA P-256 (SHA-256); the official
library's :class:`EventWebhook` verifies it. Each event carries the mail's ``custom_args`` as top-level
fields (``notification_id``, ``delivery_id``, ``tenant_id``: set by ``services/sender_email/sendgrid.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook

from services.gateway.callbacks.events import COMPLAINED, RECIPIENT_COMPLAINED, Herald, ProviderEvent
from shared import status
from shared.errors import DeadLetterReason

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SignedEvents:
    """Verifies Event Webhook requests with the account's verification key (base64, as SendGrid shows it)."""

    def __init__(self, public_key: str) -> None:
        self._webhook = EventWebhook(public_key)

    def verify(self, body: bytes, signature: str, timestamp: str) -> bool:
        """Whether ``signature`` signs ``timestamp`` + ``body``; a malformed signature or body is False."""
        if not signature or not timestamp:
            return False
        try:
            return bool(self._webhook.verify_signature(body.decode("utf-8"), signature, timestamp))
        except ValueError:  # not base64, not UTF-8
            return False


def interpret(events: object) -> list[ProviderEvent]:
    """The events of one webhook request (a JSON array) that Herald records; others are skipped."""
    if not isinstance(events, list):
        return []
    return [found for event in events if isinstance(event, dict) and (found := _event(event)) is not None]


def _event(event: Mapping[str, Any]) -> ProviderEvent | None:
    ids = Herald.of(event.get("notification_id"), event.get("delivery_id"), event.get("tenant_id"))
    if ids is None:
        return None
    kind = event.get("event")
    address = str(event.get("email") or "")
    detail = str(event.get("reason") or event.get("response") or event.get("status") or kind)
    if kind == "delivered":
        return ProviderEvent(ids, "email", PROVIDER, status.DELIVERED, detail=str(event.get("sg_message_id") or ""))
    if kind == "bounce":
        # "blocked" is the receiving server refusing this mail for now (reputation, content): not the address.
        if event.get("type") == "blocked":
            return ProviderEvent(ids, "email", PROVIDER, status.FAILED, DeadLetterReason.PROVIDER_REJECTED, detail)
        reason = DeadLetterReason.INVALID_ADDRESS
        return ProviderEvent(ids, "email", PROVIDER, status.FAILED, reason, detail, suppress=(address,))
    if kind == "dropped":
        return ProviderEvent(ids, "email", PROVIDER, status.FAILED, DeadLetterReason.PROVIDER_REJECTED, detail)
    if kind == "spamreport":
        return ProviderEvent(
            ids,
            "email",
            PROVIDER,
            status.FAILED,
            RECIPIENT_COMPLAINED,
            "the recipient reported the mail as spam",
            suppress=(address,),
            suppress_reason=COMPLAINED,
        )
    # Apple Mail Privacy Protection fetches every image: its "opens" are not the recipient's.
    if kind == "open" and not event.get("sg_machine_open"):
        return ProviderEvent(ids, "email", PROVIDER, status.OPENED)
    if kind == "click" and isinstance(url := event.get("url"), str):
        return ProviderEvent(ids, "email", PROVIDER, status.CLICKED, detail=url, distinct_by=url)
    return None
