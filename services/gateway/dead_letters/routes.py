"""``/api/v1/dead-letters``: list, read, purge and send again the tenant's dead letters.

The route functions only translate HTTP; the domain logic is in :mod:`.service`, the queries in
:mod:`shared.storage.dead_letters`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.gateway.dead_letters import service
from services.gateway.dead_letters.schemas import (
    PATH,
    DeadLetterDetailOut,
    DeadLetterOut,
    DeadLetterPage,
    Purged,
    ReplayCreate,
    ReplayOut,
    Requeued,
    entry_fields,
)
from services.gateway.deps import DeadLettersDep, ReplaysDep, RequeuerDep
from services.gateway.http import pagination
from services.gateway.http.auth import Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.pagination import Cursor, Limit
from services.gateway.http.problems import PROBLEM_RESPONSES, Problem
from services.gateway.http.schemas import Channel, Instant
from shared.storage.dead_letters import DeadLetterFilter

router = APIRouter(prefix=PATH, tags=["dead letters"])
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such dead letter (problem+json)"}}


async def _filter(
    tenant: Tenant,
    reason: Annotated[str | None, Query(max_length=64, examples=["invalid_payload"])] = None,
    original_topic: Annotated[str | None, Query(max_length=255, description="The topic it failed on.")] = None,
    channel: Annotated[Channel | None, Query(description="The channel it was on its way to, where known.")] = None,
    notification_id: Annotated[str | None, Query(max_length=64)] = None,
    created_after: Annotated[Instant | None, Query(description="Dead-lettered after this.")] = None,
    created_before: Annotated[Instant | None, Query(description="Dead-lettered before this.")] = None,
) -> DeadLetterFilter:
    return DeadLetterFilter(tenant, reason, original_topic, channel, notification_id, created_after, created_before)


Filter = Annotated[DeadLetterFilter, Depends(_filter)]


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    where: Filter, request: Request, dead_letters: DeadLettersDep, limit: Limit = 50, cursor: Cursor = None
) -> DeadLetterPage:
    """The tenant's dead letters, newest first; follow `links.next` for the next page."""
    rows = await dead_letters.page(where, limit + 1, pagination.after(cursor))
    entries, links = pagination.page(request, rows, limit)
    return DeadLetterPage(items=[DeadLetterOut(**entry_fields(entry)) for entry in entries], links=links)


@router.post(
    "/replays",
    status_code=202,
    response_model=ReplayOut,
    responses=PROBLEM_RESPONSES,
    dependencies=[IDEMPOTENT],
)
async def replay_dead_letters(body: ReplayCreate, tenant: Tenant, response: Response, replays: ReplaysDep) -> ReplayOut:
    """Send every matching failed delivery again, in the background; follow `links.self` for progress."""
    where = DeadLetterFilter(tenant, **body.model_dump())
    replay = ReplayOut.of(await replays.create(where))
    response.headers["Location"] = replay.links.self
    return replay


@router.get("/replays/{replay_id}", response_model=ReplayOut, responses=NOT_FOUND)
async def get_replay(replay_id: str, tenant: Tenant, replays: ReplaysDep) -> ReplayOut:
    """A replay's progress."""
    replay = await replays.get(tenant, replay_id)
    if replay is None:
        raise Problem(404, "Not found", f"no replay {replay_id}")
    return ReplayOut.of(replay)


@router.post(
    "/{dead_letter_id}/retry",
    status_code=202,
    response_model=Requeued,
    responses={**NOT_FOUND, 409: {"description": "Sent again already, or not a delivery (problem+json)"}},
    dependencies=[IDEMPOTENT],
)
async def retry_dead_letter(dead_letter_id: str, tenant: Tenant, requeuer: RequeuerDep) -> Requeued:
    """Send this failed delivery again (one attempt further on); its status becomes `requeued`."""
    return await requeuer.send_again(tenant, dead_letter_id)


@router.get("/{dead_letter_id}", response_model=DeadLetterDetailOut, responses=NOT_FOUND)
async def get_dead_letter(dead_letter_id: str, tenant: Tenant, dead_letters: DeadLettersDep) -> DeadLetterDetailOut:
    """One dead letter with the original message: its key, headers and payload."""
    found = await dead_letters.get(tenant, dead_letter_id)
    if found is None:
        raise service.not_found(dead_letter_id)
    return service.detail(found)


@router.delete("/{dead_letter_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_dead_letter(dead_letter_id: str, tenant: Tenant, dead_letters: DeadLettersDep) -> Response:
    """Delete one dead letter: hidden from the API at once, kept until the DLQ retention removes it."""
    if not await dead_letters.delete(tenant, dead_letter_id):
        raise service.not_found(dead_letter_id)
    return Response(status_code=204)


@router.delete("", response_model=Purged, dependencies=[IDEMPOTENT])
async def purge_dead_letters(where: Filter, dead_letters: DeadLettersDep) -> Purged:
    """Delete every dead letter matching the filters (at least one: `created_before=<now>` for all); soft, as
    one deleted by id."""
    if where == DeadLetterFilter(where.tenant_id):
        detail = "name at least one filter (reason, created_before, ...); created_before=<now> purges all"
        raise Problem(422, "Invalid request", detail)
    return Purged(deleted=await dead_letters.purge(where, soft=True))
