"""Twilio provider: sends each SMS with the official SDK's Messages API, on its asyncio HTTP client."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import SmsDelivery
from shared.providers.base import ProviderConfigError

# Twilio splits a longer body into segments and reassembles it on the phone, up to this many characters.
MAX_BODY_CHARS = 1600

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# 4xx codes that pass with time: 20429 too many requests, 21611 the sender's outgoing queue is full.
_RATE_LIMITED_CODES = frozenset({20429, 21611})
# Twilio's error codes (https://www.twilio.com/docs/api/errors) that say more than "refused".
_REJECTION_REASONS = {
    21211: DeadLetterReason.INVALID_ADDRESS,  # invalid 'To' number
    21217: DeadLetterReason.INVALID_ADDRESS,  # the number does not appear to be valid
    21614: DeadLetterReason.INVALID_ADDRESS,  # not a mobile number
    21610: DeadLetterReason.RECIPIENT_OPTED_OUT,  # the recipient replied STOP
    21617: DeadLetterReason.REJECTED_CONTENT,  # the body is over the concatenated message limit
    30007: DeadLetterReason.REJECTED_CONTENT,  # filtered by the carrier as spam
}


@dataclass(frozen=True)
class TwilioConfig:
    """A Twilio account and the sender its messages come from."""

    account_sid: str
    auth_token: str = field(repr=False)
    # A Twilio number (E.164), short code or alphanumeric sender ID; or a messaging service; or both.
    from_number: str | None = None
    messaging_service_sid: str | None = None
    # Where Twilio posts delivery receipts (queued, sent, delivered, undelivered); None for none.
    status_callback_url: str | None = None
    # Another API host (a stand-in in tests); None for Twilio's own.
    base_url: str | None = None
    # Bound on each call to Twilio: waiting for a connection, connecting, sending and the answer.
    timeout_s: float = 10.0
    # Open HTTP connections to Twilio at most; also the number of requests in flight at once.
    max_connections: int = 16


class TwilioSmsProvider:
    """Delivers :class:`SmsDelivery` records through Twilio Programmable Messaging."""

    name = "twilio"

    def __init__(self, config: TwilioConfig) -> None:
        self._config = config
        # Created on first use: its aiohttp session must be made inside the running event loop.
        self._client: Any = None

    async def send(self, delivery: SmsDelivery) -> Outcome:
        """Send one SMS; 429, 5xx and connection problems are retryable, other rejections are not."""
        body = delivery["body"]
        if len(body) > MAX_BODY_CHARS:
            return Failed(
                self.name,
                f"body is {len(body)} characters; Twilio sends at most {MAX_BODY_CHARS} as one message",
                DeadLetterReason.INVALID_PAYLOAD,
            )
        config = self._config
        optional = {
            "from_": config.from_number,
            "messaging_service_sid": config.messaging_service_sid,
            "status_callback": _status_callback(config.status_callback_url, delivery),
        }
        try:
            async with asyncio.timeout(config.timeout_s):
                message = await self._account().messages.create_async(
                    to=delivery["to"], body=body, **{key: value for key, value in optional.items() if value}
                )
        except (TwilioRestException, TwilioServiceException) as error:
            return _classify(error)
        except (aiohttp.ClientError, TimeoutError) as error:
            return Retry(self.name, f"cannot reach Twilio: {error!r}")
        return Delivered(self.name, str(message.sid))

    def validate_config(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        config = self._config
        if not _ACCOUNT_SID.fullmatch(config.account_sid):
            raise ProviderConfigError(
                f"HERALD_TWILIO_ACCOUNT_SID: not an account SID (AC + 32 hex): {config.account_sid!r}"
            )
        if not config.auth_token:
            raise ProviderConfigError("HERALD_TWILIO_AUTH_TOKEN: required for the twilio provider")
        if not config.from_number and not config.messaging_service_sid:
            raise ProviderConfigError(
                "HERALD_TWILIO_FROM_NUMBER or HERALD_TWILIO_MESSAGING_SERVICE_SID: give at least one"
            )
        if config.messaging_service_sid and not _MESSAGING_SERVICE_SID.fullmatch(config.messaging_service_sid):
            raise ProviderConfigError(
                f"HERALD_TWILIO_MESSAGING_SERVICE_SID: not a messaging service SID (MG + 32 hex): "
                f"{config.messaging_service_sid!r}"
            )
        if config.base_url is not None and not _is_http_url(config.base_url):
            raise ProviderConfigError(f"HERALD_TWILIO_BASE_URL: not an http(s) URL: {config.base_url!r}")
        callback = config.status_callback_url
        # Twilio refuses callback hosts with underscores: every message would be rejected.
        if callback is not None and (not _is_http_url(callback) or "_" in (urlsplit(callback).hostname or "")):
            raise ProviderConfigError(
                f"HERALD_TWILIO_STATUS_CALLBACK_URL: not an http(s) URL Twilio takes: {callback!r}"
            )
        if config.timeout_s <= 0:
            raise ProviderConfigError("HERALD_PROVIDER_TIMEOUT_S: must be positive")
        if config.max_connections < 1:
            raise ProviderConfigError("HERALD_TWILIO_MAX_CONNECTIONS: at least 1")

    async def health(self) -> None:
        """Readiness: Twilio answers an authenticated fetch of the account."""
        async with asyncio.timeout(self._config.timeout_s):
            await self._account().fetch_async()

    async def close(self) -> None:
        """Close the HTTP connections (the client is made again if the provider is used after)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.http_client.close()

    def _account(self) -> Any:
        if self._client is None:
            config = self._config
            http_client = AsyncTwilioHttpClient(pool_connections=False)
            # The SDK's own session would open connections without limit. (A session timeout would be
            # lost: the SDK passes timeout=None on every request, so calls are bounded with asyncio.)
            http_client.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=config.max_connections))
            # An empty environment: TWILIO_REGION or TWILIO_EDGE there would rewrite base_url's host.
            client = Client(config.account_sid, config.auth_token, http_client=http_client, environment={})
            if config.base_url is not None:
                client.api.base_url = config.base_url.rstrip("/")
            self._client = client
        return self._client.api.v2010.accounts(self._config.account_sid)


def _status_callback(url: str | None, delivery: SmsDelivery) -> str | None:
    """The callback URL with Herald's ids in its query (read by services/gateway/callbacks/twilio.py):
    Twilio's callback names only its own MessageSid, and it signs the URL with the query."""
    if url is None:
        return None
    parts = urlsplit(url)
    ids = urlencode({"n": delivery["notification_id"], "d": delivery["delivery_id"], "t": delivery["tenant_id"]})
    return urlunsplit(parts._replace(query=f"{parts.query}&{ids}" if parts.query else ids))


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _classify(error: TwilioRestException | TwilioServiceException) -> Outcome:
    status: int = error.status
    code: int | None = error.code
    # The 2010 API answers {"code", "message"} (TwilioRestException); newer ones RFC 9457 problems.
    message = error.msg if isinstance(error, TwilioRestException) else (error.detail or error.title)
    detail = f"HTTP {status}, Twilio error {code}: {message}"
    if status == 429 or code in _RATE_LIMITED_CODES:
        return Retry(TwilioSmsProvider.name, detail, reason="rate_limited")
    if status >= 500 or status in (401, 403):
        # 401/403 (a wrong token, a suspended account) are the account's problem, not the message's:
        # fail over and let the breaker open instead of dead-lettering every SMS.
        return Retry(TwilioSmsProvider.name, detail)
    # 21211 invalid To, 21614 not a mobile number, 21610 unsubscribed (STOP), 21408 region not enabled...
    return Failed(TwilioSmsProvider.name, detail, _REJECTION_REASONS.get(code or 0, DeadLetterReason.PROVIDER_REJECTED))
