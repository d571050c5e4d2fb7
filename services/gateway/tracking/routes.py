"""``/t/``: the open pixel and tracked links that the router puts in emails.

``GET /t/o/<token>.gif`` records ``opened`` and answers a 1x1 GIF; ``GET /t/c/<token>`` records ``clicked``
(detail: the URL) and redirects to the URL the token was signed for. Without an API key: the token's
signature authenticates the request (:mod:`.service`).
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from services.gateway.deps import ProducerDep, StatusDep, TrackingTokensDep
from services.gateway.http.problems import Problem
from services.gateway.tracking import service
from shared import status
from shared.tracking import CLICK, OPEN, is_web_url

# A transparent 1x1 GIF.
PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Each open and click must reach the gateway, not a cache on the way.
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown, tampered with, or tracking not configured (problem+json)"}
}

router = APIRouter(prefix="/t", tags=["tracking"])


@router.get("/o/{token}.gif", response_class=Response, responses=NOT_FOUND)
async def track_open(token: str, tokens: TrackingTokensDep, producer: ProducerDep, reporter: StatusDep) -> Response:
    """Record that the mail was opened (once per notification); a transparent 1x1 GIF."""
    tracked = service.verified(tokens, token, OPEN)
    await service.record(producer, reporter, tracked, status.OPENED)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token}", response_class=RedirectResponse, status_code=302, responses=NOT_FOUND)
async def track_click(
    token: str, tokens: TrackingTokensDep, producer: ProducerDep, reporter: StatusDep
) -> RedirectResponse:
    """Record a click on a link (once per notification and URL) and redirect to it."""
    tracked = service.verified(tokens, token, CLICK)
    # Only http(s) links are ever signed; checked again so no other scheme can come out of here.
    if tracked.url is None or not is_web_url(tracked.url):
        raise Problem(404, "Not found", "unknown tracking link")
    await service.record(producer, reporter, tracked, status.CLICKED)
    return RedirectResponse(tracked.url, status_code=302, headers=NO_STORE)
