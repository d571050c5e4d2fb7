"""``/api/v1/dead-letters``: list, read and purge the tenant's dead letters.

The route functions only translate HTTP; the queries are in :mod:`shared.storage.dead_letters`.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import pages
from services.gateway.auth import Tenant
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.pages import Cursor, Limit, PageLinks
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.schemas import Channel, Instant, Links
from shared.codec import decode_known
from shared.requeue import NotRequeueable, requeue
from shared.status_events import StatusReporter
from shared.storage.dead_letters import (
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterRepository,
    OriginalMessage,
)
from shared.storage.replays import Replay

router = APIRouter(prefix="/api/v1/dead-letters", tags=["dead letters"])
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such dead letter (problem+json)"}}


@dataclass(frozen=True, kw_only=True)
class DeadLetterOut(DeadLetterEntry):
    """A dead letter; ``links.self`` shows it with its original message."""

    links: Links


class PayloadOut(BaseModel):
    """The original message: JSON when a known contract wrote it, else its bytes in base64."""

    encoding: Literal["json", "base64"]
    contract: str | None
    value: Any


@dataclass(frozen=True, kw_only=True)
class DeadLetterDetailOut(DeadLetterOut):
    """A dead letter with its original message (key and headers as text)."""

    original_key: str | None
    original_headers: dict[str, str]
    original_payload: PayloadOut


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    links: PageLinks


class Purged(BaseModel):
    deleted: int


def _fields(entry: DeadLetterEntry) -> dict[str, Any]:
    return asdict(entry) | {"links": Links(self=f"{router.prefix}/{entry.id}")}


def _text(value: bytes) -> str:
    return value.decode(errors="replace")


def _base64(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def describe_payload(payload: bytes) -> PayloadOut:
    """The payload decoded with whichever Herald contract wrote it (bytes inside it in base64), else base64."""
    known = decode_known(payload)
    if known is None:
        return PayloadOut(encoding="base64", contract=None, value=base64.b64encode(payload).decode())
    contract, record = known
    return PayloadOut(encoding="json", contract=contract, value=orjson.loads(orjson.dumps(record, default=_base64)))


def _repository(request: Request) -> DeadLetterRepository:
    repository: DeadLetterRepository = request.app.state.dead_letters
    return repository


def _filter(
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
    where: Filter, request: Request, limit: Limit = 50, cursor: Cursor = None
) -> DeadLetterPage:
    """The tenant's dead letters, newest first; follow `links.next` for the next page."""
    entries, links = pages.page(request, await _repository(request).page(where, limit + 1, pages.after(cursor)), limit)
    return DeadLetterPage(items=[DeadLetterOut(**_fields(entry)) for entry in entries], links=links)


class Requeued(BaseModel):
    dead_letter_id: str
    status: Literal["requeued"] = "requeued"


class ReplayCreate(BaseModel):
    """Which dead letters to send again (the listing's filters; none: every one not sent again yet)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=64)
    original_topic: str | None = Field(default=None, max_length=255)
    channel: Channel | None = None
    notification_id: str | None = Field(default=None, max_length=64)
    created_after: Instant | None = None
    created_before: Instant | None = None


class ReplayOut(BaseModel):
    id: str
    status: Literal["pending", "running", "done"]
    requeued: int = Field(description="Deliveries sent again so far.")
    skipped: int = Field(description="Dead letters that are not deliveries (a failed request): marked, not sent.")
    up_to: datetime = Field(description="Only what was dead-lettered before the replay was asked for.")
    created_at: datetime
    finished_at: datetime | None
    links: Links

    @classmethod
    def of(cls, replay: Replay) -> ReplayOut:
        return cls(
            id=replay.id,
            status=replay.status,
            requeued=replay.requeued,
            skipped=replay.skipped,
            up_to=replay.up_to,
            created_at=replay.created_at,
            finished_at=replay.finished_at,
            links=Links(self=f"{router.prefix}/replays/{replay.id}"),
        )


async def send_again(tenant: str, dead_letter_id: str, request: Request) -> Requeued:
    """Send one dead-lettered delivery again, once (404: no such entry; 409: sent again already, or not a delivery)."""
    state = request.app.state

    async def send(original: OriginalMessage) -> None:
        try:
            again = requeue(original, state.topics, StatusReporter(state.topics.status, "gateway"))
        except NotRequeueable as error:
            raise Problem(409, "Conflict", str(error)) from error
        await state.producer.produce([again.status])
        await state.producer.produce([again.delivery])

    sent = await _repository(request).requeue_one(tenant, dead_letter_id, send)
    if sent is None:
        raise Problem(404, "Not found", f"no dead letter {dead_letter_id}")
    if not sent:
        raise Problem(409, "Conflict", f"dead letter {dead_letter_id} was already sent again")
    return Requeued(dead_letter_id=dead_letter_id)


@router.post(
    "/replays",
    status_code=202,
    response_model=ReplayOut,
    responses=PROBLEM_RESPONSES,
    dependencies=[IDEMPOTENT],
)
async def replay_dead_letters(body: ReplayCreate, tenant: Tenant, request: Request, response: Response) -> ReplayOut:
    """Send every matching failed delivery again, in the background; follow `links.self` for progress."""
    where = DeadLetterFilter(tenant, **body.model_dump())
    replay = ReplayOut.of(await request.app.state.replays.create(where))
    response.headers["Location"] = replay.links.self
    return replay


@router.get("/replays/{replay_id}", response_model=ReplayOut, responses=NOT_FOUND)
async def get_replay(replay_id: str, tenant: Tenant, request: Request) -> ReplayOut:
    """A replay's progress."""
    replay = await request.app.state.replays.get(tenant, replay_id)
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
async def retry_dead_letter(dead_letter_id: str, tenant: Tenant, request: Request) -> Requeued:
    """Send this failed delivery again (one attempt further on); its status becomes `requeued`."""
    return await send_again(tenant, dead_letter_id, request)


@router.get("/{dead_letter_id}", response_model=DeadLetterDetailOut, responses=NOT_FOUND)
async def get_dead_letter(dead_letter_id: str, tenant: Tenant, request: Request) -> DeadLetterDetailOut:
    """One dead letter with the original message: its key, headers and payload."""
    found = await _repository(request).get(tenant, dead_letter_id)
    if found is None:
        raise Problem(404, "Not found", f"no dead letter {dead_letter_id}")
    original = found.original
    return DeadLetterDetailOut(
        **_fields(found.entry),
        original_key=None if original.key is None else _text(original.key),
        original_headers={name: _text(value) for name, value in original.headers},
        original_payload=describe_payload(original.payload),
    )


@router.delete("/{dead_letter_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_dead_letter(dead_letter_id: str, tenant: Tenant, request: Request) -> Response:
    """Delete one dead letter: hidden from the API at once, kept until the DLQ retention removes it."""
    if not await _repository(request).delete(tenant, dead_letter_id):
        raise Problem(404, "Not found", f"no dead letter {dead_letter_id}")
    return Response(status_code=204)


@router.delete("", response_model=Purged, dependencies=[IDEMPOTENT])
async def purge_dead_letters(where: Filter, request: Request) -> Purged:
    """Delete every dead letter matching the filters (at least one: `created_before=<now>` for all); soft, as
    one deleted by id."""
    if where == DeadLetterFilter(where.tenant_id):
        detail = "name at least one filter (reason, created_before, ...); created_before=<now> purges all"
        raise Problem(422, "Invalid request", detail)
    return Purged(deleted=await _repository(request).purge(where, soft=True))
