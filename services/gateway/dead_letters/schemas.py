"""The dead-letters API's request and response bodies."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.http.pagination import PageLinks
from services.gateway.http.schemas import Channel, Instant, Links
from shared.storage.dead_letters import DeadLetterEntry
from shared.storage.replays import Replay

PATH = "/api/v1/dead-letters"


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


def entry_fields(entry: DeadLetterEntry) -> dict[str, Any]:
    """The fields of :class:`DeadLetterOut` for ``entry``."""
    return asdict(entry) | {"links": Links(self=f"{PATH}/{entry.id}")}


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    links: PageLinks


class Purged(BaseModel):
    deleted: int


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
            links=Links(self=f"{PATH}/replays/{replay.id}"),
        )
