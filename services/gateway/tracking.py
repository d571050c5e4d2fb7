"""``/t/``: the open pixel and tracked links that the router puts in emails.

Mail clients call these without an API key: the token's HMAC is what authenticates them (see
:mod:`shared.tracking`). ``GET /t/o/<token>.gif`` records ``opened`` and answers a 1x1 GIF;
``GET /t/c/<token>`` records ``clicked`` (detail: the URL) and redirects to the URL the token was
signed for. A token that does not verify is a 404, so the click route cannot be made to redirect
anywhere Herald did not sign.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import SecretStr

from services.gateway.problems import Problem
from shared import status
from shared.kafka.records import Produce, message_key
from shared.status_events import StatusReporter
from shared.tracking import CLICK, OPEN, InvalidToken, Tracked, TrackingTokens, is_web_url

log = structlog.get_logger(__name__)

SERVICE = "gateway"
# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Each open and click must reach the gateway, not a cache on the way.
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
# A reader waits for the image or the redirect: past this, the event is given up, not the answer.
RECORD_TIMEOUT_S = 2.0
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown, tampered with, or tracking not configured (problem+json)"}
}


def routes(signing_key: SecretStr | None) -> APIRouter:
    """The tracking routes, verifying tokens with ``signing_key`` (None: every token is unknown)."""
    tokens = TrackingTokens(signing_key.get_secret_value().encode()) if signing_key else None
    router = APIRouter(prefix="/t", tags=["tracking"])

    def verified(token: str, kind: str) -> Tracked:
        # One answer for every refusal (no key, bad token, wrong route): nothing to learn by probing.
        unknown = Problem(404, "Not found", "unknown tracking link")
        if tokens is None:
            raise unknown
        try:
            tracked = tokens.verify(token)
        except InvalidToken:
            raise unknown from None
        if tracked.kind != kind:
            raise unknown
        return tracked

    @router.get("/o/{token}.gif", response_class=Response, responses=NOT_FOUND)
    async def track_open(token: str, request: Request) -> Response:
        """Record that the mail was opened (once per notification); a transparent 1x1 GIF."""
        tracked = verified(token, OPEN)
        await _record(request, tracked, status.OPENED)
        return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)

    @router.get("/c/{token}", response_class=RedirectResponse, status_code=302, responses=NOT_FOUND)
    async def track_click(token: str, request: Request) -> RedirectResponse:
        """Record a click on a link (once per notification and URL) and redirect to it."""
        tracked = verified(token, CLICK)
        # Only http(s) links are ever signed; checked again so no other scheme can come out of here.
        if tracked.url is None or not is_web_url(tracked.url):
            raise Problem(404, "Not found", "unknown tracking link")
        await _record(request, tracked, status.CLICKED)
        return RedirectResponse(tracked.url, status_code=302, headers=NO_STORE)

    return router


def engagement_event(reporter: StatusReporter, tracked: Tracked, event_status: str) -> Produce:
    """The status event of an open or a click: one per notification, and for clicks one per URL."""
    return reporter.event(
        notification_id=tracked.notification_id,
        tenant_id=tracked.tenant_id,
        status=event_status,
        key=message_key(tracked.tenant_id, tracked.notification_id),
        channel="email",
        detail=tracked.url,
        distinct_by=tracked.url,
    )


async def _record(request: Request, tracked: Tracked, event_status: str) -> None:
    state = request.app.state
    record = engagement_event(StatusReporter(state.topics.status, SERVICE), tracked, event_status)
    try:
        async with asyncio.timeout(RECORD_TIMEOUT_S):
            await state.producer.produce([record])
    except Exception as error:
        # The reader still gets the image or the link; only the statistic is lost.
        log.warning(
            "tracking_event_lost", notification_id=tracked.notification_id, status=event_status, error=repr(error)
        )
