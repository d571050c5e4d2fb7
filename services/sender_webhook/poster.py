"""The webhook provider: a signed HTTP POST to the customer's URL, with outcomes by status code."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from services.sender_webhook.signing import signed_headers
from shared.delivery import Delivered, Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import WebhookDelivery
from shared.providers.base import ProviderConfigError
from shared.ssrf import NonPublicAddress, OutboundGuard, status_line
from shared.webhook_secrets import endpoint_secret, tenant_secret

NAME = "http"
USER_AGENT = "Herald-Webhooks/1"
# Worth another try: timeouts and throttling, and the server's own failures.
RETRYABLE_STATUS = frozenset({408, 425, 429})


class WebhookProvider:
    """POSTs :class:`WebhookDelivery` payloads, signed with the tenant's secret, or a registered
    endpoint's (each version the delivery names: two while a rotation's grace period lasts)."""

    name = NAME

    def __init__(self, signing_key: bytes | None, *, timeout_s: float, concurrency: int, guard: OutboundGuard) -> None:
        self._signing_key = signing_key or b""
        # Customer URLs: only public addresses (unless the guard allows private ones), no redirects.
        self._client = guard.client(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def validate_config(self) -> None:
        if len(self._signing_key) < 32:
            raise ProviderConfigError("HERALD_WEBHOOK_SIGNING_KEY: required, at least 32 characters")

    async def send(self, delivery: WebhookDelivery) -> Outcome:
        """POST once; 2xx delivered, 408/425/429/5xx and network failures retried, other 4xx refused."""
        url = delivery["url"]
        body = delivery["payload_json"]
        headers = signed_headers(self._secrets(delivery), delivery["delivery_id"], datetime.now(UTC), body)
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            response = await self._client.post(url, content=body.encode(), headers=headers)
        except NonPublicAddress as error:
            return Failed(NAME, f"refused: {error}", DeadLetterReason.INVALID_PAYLOAD)
        except httpx.TimeoutException as error:
            return Retry(NAME, f"no answer from {url}: {error!r}", "provider_timeout")
        except httpx.HTTPError as error:
            return Retry(NAME, f"cannot reach {url}: {error!r}")
        return _by_status(response)

    def destination(self, delivery: WebhookDelivery) -> str:
        """The URL's ``host:port``: each has its own circuit breaker, so one dead endpoint stops only its deliveries."""
        url = urlsplit(delivery["url"])
        try:
            port = url.port
        except ValueError:  # not a port: the POST fails on its own; the host still keeps it apart
            port = None
        return f"{url.hostname or ''}:{port or (443 if url.scheme == 'https' else 80)}"

    def _secrets(self, delivery: WebhookDelivery) -> list[str]:
        endpoint_id = delivery.get("endpoint_id")
        tenant_id = delivery["tenant_id"]
        if endpoint_id is None:
            return [tenant_secret(self._signing_key, tenant_id)]
        return [
            endpoint_secret(self._signing_key, tenant_id, endpoint_id, version)
            for version in delivery.get("secret_versions", [])
        ]

    async def health(self) -> None:
        """Every customer's endpoint is different: there is no one service to check."""

    async def close(self) -> None:
        await self._client.aclose()


def _by_status(response: httpx.Response) -> Outcome:
    status = response.status_code
    detail = status_line(response)
    if 200 <= status < 300:
        return Delivered(NAME, detail)
    if status in RETRYABLE_STATUS or status >= 500:
        wait = response.headers.get("retry-after", "")
        return Retry(
            NAME,
            detail,
            "rate_limited" if status == 429 else "endpoint_unavailable",
            after_s=float(wait) if wait.isdigit() else None,
        )
    return Failed(NAME, detail, DeadLetterReason.PROVIDER_REJECTED)
