"""Amazon SES's bounce, complaint and delivery notifications (the ``Message`` of an SNS notification).

Both SES forms are read: identity notifications (``notificationType``) and configuration-set event
publishing (``eventType``). Herald's ids come back in ``mail.tags`` (the ``EmailTags`` set by
``services/sender_email/ses.py``); a mail without them was not sent by Herald and is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.gateway.callbacks.events import BOUNCED, COMPLAINED, RECIPIENT_COMPLAINED, Herald, ProviderEvent
from shared import status
from shared.errors import DeadLetterReason

PROVIDER = "ses"


def interpret(notification: object) -> list[ProviderEvent]:
    """What one SES notification means; a transient bounce (SES retries it) means nothing yet."""
    if not isinstance(notification, dict):
        return []
    ids = _ids(notification.get("mail"))
    if ids is None:
        return []
    kind = notification.get("notificationType") or notification.get("eventType")
    if kind == "Delivery":
        return [ProviderEvent(ids, "email", PROVIDER, status.DELIVERED, detail=_text(notification, "delivery"))]
    if kind == "Bounce":
        bounce = _object(notification, "bounce")
        if bounce.get("bounceType") != "Permanent":
            return []
        recipients = _list(bounce, "bouncedRecipients")
        detail = "; ".join(
            str(r.get("diagnosticCode") or r.get("status") or "") for r in recipients if isinstance(r, dict)
        )
        detail = detail or f"permanent bounce ({bounce.get('bounceSubType')})"
        return [_failed(ids, DeadLetterReason.INVALID_ADDRESS, detail, _addresses(recipients), BOUNCED)]
    if kind == "Complaint":
        complaint = _object(notification, "complaint")
        detail = f"the recipient complained ({complaint.get('complaintFeedbackType') or 'complaint'})"
        recipients = _list(complaint, "complainedRecipients")
        return [_failed(ids, RECIPIENT_COMPLAINED, detail, _addresses(recipients), COMPLAINED)]
    return []


def _failed(ids: Herald, reason: str, detail: str, addresses: tuple[str, ...], why: str) -> ProviderEvent:
    """The mail failed, and its addresses are suppressed for ``why``."""
    return ProviderEvent(ids, "email", PROVIDER, status.FAILED, reason, detail, suppress=addresses, suppress_reason=why)


def _ids(mail: object) -> Herald | None:
    tags = mail.get("tags") if isinstance(mail, dict) else None
    if not isinstance(tags, dict):
        return None

    def tag(name: str) -> object:
        values = tags.get(name)
        return values[0] if isinstance(values, list) and values else None

    return Herald.of(tag("notification_id"), tag("delivery_id"), tag("tenant_id"))


def _object(parent: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _list(parent: Mapping[str, Any], name: str) -> list[Any]:
    value = parent.get(name)
    return value if isinstance(value, list) else []


def _text(parent: Mapping[str, Any], name: str) -> str | None:
    smtp = _object(parent, name).get("smtpResponse")
    return str(smtp) if smtp else None


def _addresses(recipients: list[Any]) -> tuple[str, ...]:
    return tuple(str(r["emailAddress"]) for r in recipients if isinstance(r, dict) and r.get("emailAddress"))
