"""SendGrid provider: sends through the v3 Mail Send API with the official client and classifies every answer."""

from __future__ import annotations

import asyncio
import functools
import http.client
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import EmailDelivery
from shared.providers.base import ProviderConfigError

NAME = "sendgrid"
# The official contract allows categories of up to 255 characters.
MAX_CATEGORY = 255


@dataclass(frozen=True)
class SendGridConfig:
    """What the SendGrid provider needs, independent of how it is configured."""

    api_key: str = field(repr=False)
    # The sender, as an address or ``Name <address>``; SendGrid only sends from verified senders.
    from_address: str
    base_url: str = "https://api.sendgrid.com"
    # Bound on each socket wait of a request (seconds); the whole send is bounded by the caller.
    timeout_s: float = 10.0
    # Requests in flight at once, each on a thread of the provider's own.
    max_concurrency: int = 8
    open_tracking: bool = False
    click_tracking: bool = False


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class SendGridProvider:
    """Delivers :class:`EmailDelivery` records through SendGrid's ``POST /v3/mail/send``."""

    name = NAME

    def __init__(self, config: SendGridConfig) -> None:
        self._config = config
        sender_name, sender_address = parseaddr(config.from_address)
        self._from = {"email": sender_address, "name": sender_name} if sender_name else {"email": sender_address}
        self._tracking = {
            "open_tracking": {"enable": config.open_tracking},
            "click_tracking": {"enable": config.click_tracking},
        }
        # Shared by the threads: each call builds its own urllib request, and the client's one shared
        # state, its default headers, only ever gains the same Content-Type.
        self._client = SendGridAPIClient(config.api_key, host=config.base_url.rstrip("/"))
        # The client is synchronous. Threads of its own bound the calls in flight, even those whose
        # caller timed out, and keep them off the default executor (where DNS lookups run).
        self._threads = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="sendgrid")

    async def send(self, delivery: EmailDelivery) -> Outcome:
        """Send one email: 2xx is delivered, 429/5xx/network trouble retryable, other 4xx permanent."""
        body = self._mail_body(delivery)
        if body is None:
            reason = DeadLetterReason.INVALID_PAYLOAD
            return Failed(self.name, "SendGrid needs a subject, a text or html body and inline attachments", reason)
        post = functools.partial(self._client.client.mail.send.post, request_body=body, timeout=self._config.timeout_s)
        try:
            answer = await self._call(post)
        except (OSError, http.client.HTTPException) as error:
            # Refused or reset connections, DNS failures and socket timeouts (TimeoutError is an OSError).
            return Retry(self.name, f"cannot reach SendGrid: {error!r}")
        return _by_status(answer)

    def _mail_body(self, delivery: EmailDelivery) -> dict[str, Any] | None:
        """The v3 Mail Send request body, or None if it cannot be made (no subject or body, a URL attachment).

        With a SendGrid template in ``provider_templates`` the mail is that template, rendered by SendGrid.
        """
        content = [
            {"type": f"text/{subtype}", "value": value}
            # SendGrid wants text/plain first when both are given.
            for subtype, value in (("plain", delivery["text"]), ("html", delivery["html"]))
            if value
        ]
        if not content or not delivery["subject"] or any(a["content_base64"] is None for a in delivery["attachments"]):
            return None
        body: dict[str, Any] = {
            "personalizations": [
                {
                    "to": [{"email": delivery["to"]}],
                    # SendGrid's events (webhooks) carry these back. It has no idempotency key, so a retry
                    # after a lost 202 sends again: the delivery_id is what reveals such a duplicate.
                    # Set per personalization: the contract types the top-level custom_args as a string.
                    "custom_args": {
                        "notification_id": delivery["notification_id"],
                        "delivery_id": delivery["delivery_id"],
                        "tenant_id": delivery["tenant_id"],
                    },
                }
            ],
            "from": self._from,
            "subject": delivery["subject"],
            "content": content,
            "tracking_settings": self._tracking,
        }
        if delivery["attachments"]:
            # Inline by now: URL attachments are fetched before any provider sees the mail.
            body["attachments"] = [
                {
                    "content": attachment["content_base64"],
                    "filename": attachment["filename"],
                    "type": attachment["content_type"],
                    "disposition": "attachment",
                }
                for attachment in delivery["attachments"]
            ]
        if template_id := delivery["provider_templates"].get(NAME):
            # SendGrid renders its stored (dynamic) template with the request's variables. The template's
            # subject and body override Herald's rendered ones, which the contract still requires and
            # which every other provider sends.
            body["template_id"] = template_id
            body["personalizations"][0]["dynamic_template_data"] = json.loads(delivery["template_data_json"])
        if category := delivery["metadata"].get("category"):
            # Truncated rather than refused: a mail is not worth losing over its statistics label.
            body["categories"] = [category[:MAX_CATEGORY]]
        return body

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        if not config.api_key:
            raise ProviderConfigError("HERALD_SENDGRID_API_KEY: required for the sendgrid provider")
        if "@" not in self._from["email"] or any(c in config.from_address for c in "\r\n"):
            raise ProviderConfigError(f"HERALD_SENDGRID_FROM: not an address: {config.from_address!r}")
        url = urlsplit(config.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ProviderConfigError(f"HERALD_SENDGRID_BASE_URL: not an http(s) URL: {config.base_url!r}")

    async def health(self) -> None:
        """Readiness: SendGrid accepts the API key and the key may send mail (``GET /v3/scopes``)."""
        answer = await self._call(functools.partial(self._client.client.scopes.get, timeout=self._config.timeout_s))
        if answer.status != 200:
            raise ConnectionError(f"GET /v3/scopes: {_failure_detail(answer)}")
        if "mail.send" not in json.loads(answer.body).get("scopes", []):
            raise PermissionError("the SendGrid API key lacks the mail.send scope (HERALD_SENDGRID_API_KEY)")

    def close(self) -> None:
        """Stop the provider's threads; a request in flight ends on its own timeout."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _call(self, request: Callable[[], Any]) -> _Answer:
        return await asyncio.get_running_loop().run_in_executor(self._threads, _answer, request)


def _answer(request: Callable[[], Any]) -> _Answer:
    """Run one request of the official client (blocking); an error status is an answer too."""
    try:
        response = request()
    except HTTPError as error:  # raised for every status from 400 up
        return _Answer(error.status_code, error.headers, error.body)
    return _Answer(response.status_code, response.headers, response.body)


def _by_status(answer: _Answer) -> Outcome:
    status = answer.status
    if 200 <= status < 300:
        return Delivered(NAME, answer.headers.get("X-Message-Id"))
    detail = _failure_detail(answer)
    if status == 429:
        return Retry(NAME, detail, reason="rate_limited", after_s=_rate_limit_wait_s(answer.headers))
    if status >= 500:
        return Retry(NAME, detail)
    if status == 401:
        # The account's key, not the message: another provider can still send it, so fail over.
        return Retry(NAME, detail, reason="provider_account")
    # 400 (a bad request), 403 (e.g. an unverified sender), 413 (too large): retrying will not help.
    if status == 413:
        return Failed(NAME, detail, DeadLetterReason.REJECTED_CONTENT)
    if status == 400 and _names_recipient(answer):
        return Failed(NAME, detail, DeadLetterReason.INVALID_ADDRESS)
    return Failed(NAME, detail)


def _names_recipient(answer: _Answer) -> bool:
    """Whether SendGrid's 400 is about a recipient's address (an error whose field is personalizations…to…)."""
    try:
        errors = json.loads(answer.body)["errors"]
    except (ValueError, LookupError, TypeError):
        return False
    fields = [e.get("field") or "" for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
    return any(f.startswith("personalizations") and ".to" in f for f in fields)


def _failure_detail(answer: _Answer) -> str:
    if answer.status == 401:
        return f"401 invalid API key (HERALD_SENDGRID_API_KEY): {_error_message(answer.body)}"
    return f"{answer.status} {_error_message(answer.body)}"


def _error_message(body: bytes) -> str:
    """SendGrid's messages from ``{"errors": [{"message", "field"}]}``, else the start of the body."""
    try:
        errors = json.loads(body)["errors"]
        return "; ".join(f"{e['message']} ({e['field']})" if e.get("field") else str(e["message"]) for e in errors)
    except (ValueError, LookupError, TypeError, AttributeError):
        return body[:300].decode("utf-8", "replace")


def _rate_limit_wait_s(headers: http.client.HTTPMessage) -> float | None:
    """Seconds to wait: ``Retry-After`` (seconds or a date), else until ``X-RateLimit-Reset`` (Unix time)."""
    retry_after = headers.get("Retry-After", "").strip()
    reset = headers.get("X-RateLimit-Reset", "").strip()
    try:
        if retry_after.isdigit():
            return float(retry_after)
        if retry_after:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - time.time())
        if reset:
            return max(0.0, float(reset) - time.time())
    except ValueError:  # a header we cannot read gives no hint
        return None
    return None
