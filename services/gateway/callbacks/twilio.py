"""Twilio's message status callbacks: the signature check and what each MessageStatus means.

The sender puts Herald's ids in the callback URL's query (``services/sender_sms/twilio_sms.py``:
``n`` notification, ``d`` delivery, ``t`` tenant); Twilio signs that URL with the form fields, so the
ids cannot be changed without breaking the signature.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import SIGNATURE_HEADER, RequestValidator

from services.gateway.callbacks.events import NOT_MOBILE, OPTED_OUT, Herald, ProviderEvent
from shared import status
from shared.errors import DeadLetterReason

__all__ = ["SIGNATURE_HEADER", "interpret", "public_url", "verify"]

PROVIDER = "twilio"
# The sender's query parameters naming Herald's ids.
NOTIFICATION, DELIVERY, TENANT = "n", "d", "t"
# Error codes of undelivered messages (https://www.twilio.com/docs/api/errors) that say more than "failed",
# and whether the number is suppressed for them.
_REASONS: dict[str, tuple[DeadLetterReason, str | None]] = {
    "21610": (DeadLetterReason.RECIPIENT_OPTED_OUT, OPTED_OUT),  # the recipient replied STOP
    "30004": (DeadLetterReason.RECIPIENT_OPTED_OUT, None),  # blocked (by the recipient, or their carrier)
    "30005": (DeadLetterReason.INVALID_ADDRESS, None),  # unknown destination handset
    "30006": (DeadLetterReason.INVALID_ADDRESS, NOT_MOBILE),  # a landline, or a carrier that cannot take SMS
    "30007": (DeadLetterReason.REJECTED_CONTENT, None),  # filtered by the carrier as spam
}


def public_url(base_url: str | None, received: str, path: str, query: str) -> str:
    """The URL as Twilio called it: ``base_url`` (the gateway's public URL, behind a proxy) with the
    request's path and query, else the URL the request arrived at."""
    if base_url is None:
        return received
    return base_url.rstrip("/") + path + (f"?{query}" if query else "")


def verify(auth_token: str, url: str, form: Mapping[str, str], signature: str) -> bool:
    """Whether ``X-Twilio-Signature`` signs this URL and form with the account's auth token (SDK's check)."""
    return bool(signature) and bool(RequestValidator(auth_token).validate(url, form, signature))


def interpret(form: Mapping[str, str], query: Mapping[str, str]) -> ProviderEvent | None:
    """The event of a status callback, or None when it says nothing new (queued, sent: the sender already
    reported ``sent``) or names no Herald message."""
    ids = Herald.of(query.get(NOTIFICATION), query.get(DELIVERY), query.get(TENANT))
    message_status = form.get("MessageStatus", "")
    if ids is None:
        return None
    sid = form.get("MessageSid", "")
    if message_status in ("delivered", "read"):
        return ProviderEvent(ids, "sms", PROVIDER, status.DELIVERED, detail=sid)
    if message_status not in ("undelivered", "failed"):
        return None
    code = form.get("ErrorCode", "")
    reason, suppress_reason = _REASONS.get(code, (DeadLetterReason.PROVIDER_REJECTED, None))
    return ProviderEvent(
        ids,
        "sms",
        PROVIDER,
        status.FAILED,
        reason=reason.value,
        detail=f"Twilio error {code or 'unknown'}: {message_status} ({sid})",
        suppress=(form.get("To", ""),) if suppress_reason else (),
        suppress_reason=suppress_reason or OPTED_OUT,
    )
