"""Dead letters: showing an original message, and sending a failed delivery again (the queries are in
:mod:`shared.storage.dead_letters`)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson

from services.gateway.dead_letters.schemas import DeadLetterDetailOut, PayloadOut, Requeued, entry_fields
from services.gateway.http.problems import Problem
from shared.codec import decode_known
from shared.kafka.producer import MessageProducer
from shared.requeue import NotRequeueable, requeue
from shared.status_events import StatusReporter
from shared.storage.dead_letters import DeadLetterDetail, DeadLetterRepository, OriginalMessage
from shared.topics import Topics


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


def detail(found: DeadLetterDetail) -> DeadLetterDetailOut:
    """A dead letter with its original message readable: key and headers as text, the payload decoded."""
    original = found.original
    return DeadLetterDetailOut(
        **entry_fields(found.entry),
        original_key=None if original.key is None else _text(original.key),
        original_headers={name: _text(value) for name, value in original.headers},
        original_payload=describe_payload(original.payload),
    )


def not_found(dead_letter_id: str) -> Problem:
    """The 404 of a dead letter."""
    return Problem(404, "Not found", f"no dead letter {dead_letter_id}")


@dataclass(frozen=True)
class Requeuer:
    """Sends a dead-lettered delivery again, by hand: the dead-letters route, and a notification's retry."""

    dead_letters: DeadLetterRepository
    producer: MessageProducer
    topics: Topics
    reporter: StatusReporter

    async def send_again(self, tenant: str, dead_letter_id: str) -> Requeued:
        """Send one dead-lettered delivery again, once (404: no such entry; 409: sent again already, or not a
        delivery)."""

        async def send(original: OriginalMessage) -> None:
            try:
                again = requeue(original, self.topics, self.reporter)
            except NotRequeueable as error:
                raise Problem(409, "Conflict", str(error)) from error
            await self.producer.produce([again.status])
            await self.producer.produce([again.delivery])

        sent = await self.dead_letters.requeue_one(tenant, dead_letter_id, send)
        if sent is None:
            raise not_found(dead_letter_id)
        if not sent:
            raise Problem(409, "Conflict", f"dead letter {dead_letter_id} was already sent again")
        return Requeued(dead_letter_id=dead_letter_id)
