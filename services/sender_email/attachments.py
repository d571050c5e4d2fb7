"""Attachments given by URL: fetched when the mail is sent, once per attempt whichever provider sends it.

:class:`WithAttachments` stands in front of the provider chain. It fetches a delivery's URL
attachments and hands the chain a copy of the delivery in which every attachment is inline, so SMTP,
SendGrid and SES only ever see inline attachments and a failover does not fetch again. A failed
fetch is about the file, not a provider: its outcome is returned as it is, outside the providers'
timeouts and circuit breakers (a dead file server must not open the circuit of every provider).
"""

from __future__ import annotations

import asyncio
import base64
from typing import cast
from urllib.parse import urljoin, urlsplit

import httpx

from shared.delivery import Failed, Outcome, Retry
from shared.errors import DeadLetterReason
from shared.messages import Attachment, EmailDelivery
from shared.providers.base import Provider, ProviderSet
from shared.ssrf import NonPublicAddress, OutboundGuard, status_line
from shared.tracking import is_web_url

NAME = "attachments"
USER_AGENT = "Herald-Attachments/1"
MAX_REDIRECTS = 5
# Worth another try later: timeouts, throttling and the server's own failures.
RETRYABLE_STATUS = frozenset({408, 425, 429})


class _Unavailable(Exception):
    """One attachment could not be fetched; ``outcome`` says whether trying later may help."""

    def __init__(self, outcome: Retry | Failed) -> None:
        super().__init__(outcome.detail)
        self.outcome = outcome


class AttachmentFetcher:
    """Fetches URL attachments over one pooled HTTP client, within a size and a time budget per mail."""

    def __init__(self, *, max_bytes: int, timeout_s: float, guard: OutboundGuard) -> None:
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        # Every connection, each redirect hop's included, goes only to an address the guard checked.
        self._client = guard.client(timeout=timeout_s, headers={"user-agent": USER_AGENT})

    async def inline(self, delivery: EmailDelivery) -> EmailDelivery | Retry | Failed:
        """``delivery`` with every URL attachment fetched and made inline, or why that failed."""
        if all(attachment["url"] is None for attachment in delivery["attachments"]):
            return delivery
        budget = self._max_bytes
        inlined: list[Attachment] = []
        try:
            async with asyncio.timeout(self._timeout_s):
                for attachment in delivery["attachments"]:
                    if attachment["url"] is not None:
                        data = await self._fetch(attachment, budget)
                        budget -= len(data)
                        attachment = {**attachment, "url": None, "content_base64": base64.b64encode(data).decode()}
                    inlined.append(attachment)
        except _Unavailable as unavailable:
            return unavailable.outcome
        except TimeoutError:
            return Retry(NAME, f"attachments not fetched within {self._timeout_s:g} s", "attachment_unavailable")
        return cast(EmailDelivery, {**delivery, "attachments": inlined})

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _fetch(self, attachment: Attachment, budget: int) -> bytes:
        name = attachment["filename"]
        url = attachment["url"] or ""
        for _ in range(MAX_REDIRECTS + 1):
            host = urlsplit(url).hostname
            try:
                async with self._client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers["location"])
                        if not is_web_url(url):
                            raise _Unavailable(_failed(f"attachment {name!r} redirects to a non-http(s) URL"))
                        continue
                    _check_status(name, response)
                    return await _read(name, response, budget)
            except NonPublicAddress as error:
                detail = f"attachment {name!r} refused: {error}"
                raise _Unavailable(Failed(NAME, detail, DeadLetterReason.INVALID_PAYLOAD)) from None
            except httpx.TimeoutException:
                raise _Unavailable(_retry(f"attachment {name!r}: no answer from {host}")) from None
            except httpx.HTTPError as error:
                raise _Unavailable(_retry(f"attachment {name!r}: cannot fetch from {host}: {error!r}")) from None
        raise _Unavailable(_failed(f"attachment {name!r}: more than {MAX_REDIRECTS} redirects"))


def _check_status(name: str, response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    # The URL itself stays out of the detail: it may be signed (a pre-signed storage URL is a credential).
    detail = f"attachment {name!r} unavailable: {status_line(response)}"
    if status in RETRYABLE_STATUS or status >= 500:
        raise _Unavailable(_retry(detail))
    # 404 and 410 (gone), 401 and 403 (not ours to take), other 4xx and 3xx without a Location.
    raise _Unavailable(_failed(detail))


async def _read(name: str, response: httpx.Response, budget: int) -> bytes:
    too_large = f"attachment {name!r}: over what a mail's URL attachments may total (HERALD_ATTACHMENT_MAX_BYTES)"
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget:
        raise _Unavailable(_failed(too_large))
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > budget:
            raise _Unavailable(_failed(too_large))
    return bytes(body)


def _retry(detail: str) -> Retry:
    return Retry(NAME, detail, "attachment_unavailable")


def _failed(detail: str) -> Failed:
    return Failed(NAME, detail, DeadLetterReason.PERMANENT_FAILURE)


class WithAttachments:
    """The email provider chain, behind the fetching of URL attachments (see the module docstring)."""

    def __init__(self, chain: ProviderSet[EmailDelivery], fetcher: AttachmentFetcher) -> None:
        self._chain = chain
        self._fetcher = fetcher

    @property
    def name(self) -> str:
        return self._chain.name

    @property
    def providers(self) -> list[Provider[EmailDelivery]]:
        return self._chain.providers

    def validate_config(self) -> None:
        self._chain.validate_config()

    async def health(self) -> None:
        await self._chain.health()

    async def send(self, delivery: EmailDelivery) -> Outcome:
        """Fetch the URL attachments, then send through the chain with all of them inline."""
        ready = await self._fetcher.inline(delivery)
        if isinstance(ready, Retry | Failed):
            return ready
        return await self._chain.send(ready)

    async def close(self) -> None:
        await self._chain.close()
        await self._fetcher.aclose()
